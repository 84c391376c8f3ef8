"""Shared fixtures.

``transport``: every behaviour test that serves a cable over real sockets
takes it, so it runs once per socket transport of :func:`serve_cable`
(the direct one, the default, and trio-websocket). The test stays one
test; only the server under it changes.
"""

from __future__ import annotations

import pytest

from tests.helpers import TRANSPORTS, Transport, redis_server

__all__ = ["redis_server", "transport"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """The ``transport=`` to pass to :func:`trio_cable.serve_cable`."""
    name: Transport = request.param
    return name
