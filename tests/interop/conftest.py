"""Fixtures for the interop tests: chat_app server processes of each kind,
and ``_node``, which skips a test where Node.js is missing.

``cable_server`` is one server per kind for the whole session (tests use
their own rooms, so they do not see each other); ``fresh_server`` is a
server of each kind for one test alone, for tests that kill and restart it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The chat app is imported as tests.apps.chat_app, by the server processes
# (their cwd is the repo root) and by the in-process tests (from here).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.interop.nodeclient import skip_unless_node  # noqa: E402
from tests.interop.servers import SERVER_KINDS, ServerKind, ServerProcess  # noqa: E402


@pytest.fixture
def _node() -> None:
    """Skips the test unless Node.js and js/'s npm packages are here; the
    modules that drive a Node client name it in their ``pytestmark``."""
    skip_unless_node()


@pytest.fixture(scope="session", params=SERVER_KINDS)
def _session_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    kind: ServerKind = request.param
    with ServerProcess(kind, tmp_path_factory.mktemp(f"{kind}-logs")) as server:
        yield server


@pytest.fixture
def cable_server(_session_server: ServerProcess) -> ServerProcess:
    """A running chat_app server (Hypercorn, or serve_cable on one of its
    transports), shared by tests."""
    if not _session_server.alive():
        pytest.fail(f"{_session_server} died earlier\n{_session_server.log_tail()}")
    return _session_server


@pytest.fixture(params=SERVER_KINDS)
def fresh_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServerProcess]:
    """A chat_app server of its own (it may be killed and restarted)."""
    with ServerProcess(request.param, tmp_path) as server:
        yield server
