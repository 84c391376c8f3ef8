"""Server sides for the recovery tests, as server processes: one behind a
proxy the test cuts, or two on one Redis (the client's worker restarted,
or its reconnect landing on the other worker).

:func:`server_side` gives any of them as a
:class:`~tests.helpers.recovery.ServerSide`, so a client's recovery test
takes ``(kind, drop)`` as a parameter and stays one test:

* ``"cut"``: one process behind a :class:`~tests.helpers.tcp_proxy.TcpProxy`
  the test cuts midway (the server is untouched; history in its memory);
* ``"restart"``: two processes on one test-started redis-server; the
  client's worker is killed midway and started again on the same port
  while the broadcasts go on through the other one (history in Redis);
* ``"other-worker"``: two processes on one redis-server; midway the
  proxy is pointed at the other worker and the client's connection cut,
  so its reconnect lands there (broadcasts go on through the first).

The processes are ``tests/apps/chat_app.py`` (:class:`ServerProcess`, of
any kind: the ``feed:*`` streams keep history, sessions live in Redis
when it is configured). A side's ``stats`` counts the events of every
process that served, the killed one included (read just before the kill),
so a test can count ``subscribed()`` across a worker's restart. A killed
worker never wrote the session of the client it held, so that side does
not keep it (``keeps_session`` false): the client subscribes again.

Import it by its module name: it builds on ``tests.interop.servers``,
which imports this package, so ``tests.helpers`` does not re-export it.

Resource handling: leaving a side's block stops the proxy and kills every
process it started, also on error or cancellation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pytest
import trio

from tests.helpers.recovery import ProxyCut, ServerSide, cut_between
from tests.helpers.redis_server import RedisServer
from tests.helpers.tcp_proxy import tcp_proxy
from tests.interop.servers import ServerKind, ServerProcess

__all__ = [
    "DROPS",
    "REDIS_DROPS",
    "Drop",
    "ToTheOtherWorker",
    "WorkerRestart",
    "server_side",
    "side_fixture",
    "side_for_param",
    "two_workers",
]

#: What drops the client midway: see the module's docstring.
Drop = Literal["cut", "restart", "other-worker"]
DROPS: Final[tuple[Drop, ...]] = ("cut", "restart", "other-worker")
#: The drops that need a redis-server (two workers sharing it).
REDIS_DROPS: Final[tuple[Drop, ...]] = ("restart", "other-worker")


@contextmanager
def two_workers(
    redis_server: RedisServer, log_dir: Path, kind: ServerKind = "direct"
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two chat_app processes of ``kind`` on ``redis_server``, both ready."""
    env = {"TRIO_CABLE_REDIS_URL": redis_server.url}
    one = ServerProcess(kind, log_dir, env=env)
    two = ServerProcess(kind, log_dir, env=env)
    try:
        one.start()
        two.start()  # both start up at once
        one.wait_ready_sync()
        two.wait_ready_sync()
        yield one, two
    finally:
        one.stop()
        two.stop()


@dataclass
class WorkerRestart(ProxyCut):
    """The client's worker is killed and started again (it comes up while
    the broadcasts go on through the other worker)."""

    worker: ServerProcess
    #: The events the killed processes had counted (their last ``/stats``).
    gone: Counter[str] = field(default_factory=Counter)

    async def disrupt(self) -> None:
        self.gone.update((await self.worker.stats())["events"])
        self.worker.kill()
        self.worker.start()

    async def verify(self) -> None:
        assert self.proxy.cuts == 0, "the worker's death dropped the client"
        self.assert_back()
        assert self.worker.starts == 2, self.worker.starts
        connections = (await self.worker.stats())["connections"]
        assert connections == 1, f"{connections} connections on the restarted worker"


@dataclass
class ToTheOtherWorker(ProxyCut):
    """The client's connection is cut and its reconnect lands on the other
    worker (a load balancer's choice)."""

    other: ServerProcess

    async def disrupt(self) -> None:
        await trio.lowlevel.checkpoint()
        self.proxy.upstream = self.other.port
        self.proxy.cut()

    async def verify(self) -> None:
        await super().verify()
        assert self.proxy.upstream == self.other.port
        connections = (await self.other.stats())["connections"]
        assert connections == 1, f"{connections} connections on the other worker"


async def _events(workers: Sequence[ServerProcess], gone: Counter[str]) -> Any:
    """``/stats`` of the side: the events of every process that served,
    and each live worker's own stats under ``workers``."""
    events = Counter(gone)
    own = []
    for worker in workers:
        if worker.alive():
            stats = await worker.stats()
            events.update(stats["events"])
            own.append(stats)
    return {"events": dict(events), "workers": own}


@asynccontextmanager
async def server_side(
    kind: ServerKind,
    drop: Drop,
    log_dir: Path,
    redis_server: RedisServer | None = None,
) -> AsyncIterator[ServerSide]:
    """The server side ``drop`` names, of processes of ``kind`` (each ready
    before it is yielded); the Redis drops need ``redis_server``."""
    if drop == "cut":
        with ServerProcess(kind, log_dir) as server:
            async with cut_between(server) as side:
                yield side
        return
    assert redis_server is not None, f"the {drop!r} side needs a redis-server"
    with two_workers(redis_server, log_dir, kind) as (mine, other):
        async with tcp_proxy(mine.port) as proxy:
            host = f"127.0.0.1:{proxy.port}"
            gone: Counter[str] = Counter()
            keeps_session = drop != "restart"
            if drop == "restart":
                disruption: ProxyCut = WorkerRestart(proxy, mine, gone)
                broadcaster = other  # mine is down for a while
            else:
                disruption = ToTheOtherWorker(proxy, other)
                broadcaster = mine  # the client ends up on the other one

            async def stats() -> Any:
                return await _events((mine, other), gone)

            yield ServerSide(
                url=f"ws://{host}/cable",
                http_url=f"http://{host}",
                broadcast=broadcaster.broadcast,
                disruption=disruption,
                stats=stats,
                keeps_session=keeps_session,
            )


def side_fixture(
    sides: list[tuple[ServerKind, Drop]], *, check: Callable[[], None] | None = None
) -> Any:
    """A test module's ``side`` fixture: one :func:`server_side` per
    ``(kind, drop)`` in ``sides`` (ids ``kind-drop``), ``check`` called
    first (a skip unless the module's tools are there)."""

    @pytest.fixture(params=sides, ids=[f"{kind}-{drop}" for kind, drop in sides])
    async def side(
        request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[ServerSide]:
        if check is not None:
            check()
        async with side_for_param(request, tmp_path) as chosen:
            yield chosen

    return side


@asynccontextmanager
async def side_for_param(request: Any, log_dir: Path) -> AsyncIterator[ServerSide]:
    """The :func:`server_side` a parametrized fixture asks for with
    ``(kind, drop)``, with the test's ``redis_server`` when the drop
    needs Redis."""
    kind, drop = request.param
    redis = request.getfixturevalue("redis_server") if drop in REDIS_DROPS else None
    async with server_side(kind, drop, log_dir, redis) as chosen:
        yield chosen
