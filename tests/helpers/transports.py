"""The socket transports the behaviour suite runs on (see the ``transport``
fixture in ``tests/conftest.py``)."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["TRANSPORTS", "Transport"]

#: What ``serve_cable(transport=...)`` accepts.
Transport = Literal["direct", "trio-websocket"]

#: Every socket transport of serve_cable, the default first.
TRANSPORTS: Final[tuple[Transport, ...]] = ("direct", "trio-websocket")
