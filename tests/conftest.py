"""Shared fixtures.

The tests are grouped by what they specify: ``protocol/`` (the sans-I/O
cores, no sockets), ``server/`` (channels, limits, hostile input, auth,
Turbo, ASGI, shutdown, slow clients, Redis), ``transports/``, ``client/``,
``cli/``, ``interop/`` (the official JS client), ``browser/``, ``fuzz/``
(the socket fuzz and the churn soak), and ``package/`` (layers, exports,
dependencies, docs, demo, and this layout). What several of them share is
in ``helpers/``, one of each; no test module imports another.

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
