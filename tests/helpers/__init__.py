"""Helpers shared by the test modules: one of each, so that no test module
imports another's.

- :mod:`.wsclient`: the raw RFC 6455 client (:class:`RawClient`) and
  :func:`ws_frame`, which writes any frame at all;
- :mod:`.serving`: :func:`served`, a cable on a free port
  (:func:`served_on`: on Hypercorn too);
- :mod:`.canary`: the hostile-client suite's canary and feed;
- :mod:`.transports`: the socket transports the behaviour suite runs on;
- :mod:`.waiting`: :func:`wait_until` and its loss bound;
- :mod:`.tasks`: the task-tree walker;
- :mod:`.ports`: :func:`free_port`, for servers in another process;
- :mod:`.redis_server`: a real redis-server per test, killed under a
  running cable (:func:`redis_killed`), and the check that a stopped cable
  left nothing in it (:func:`assert_nothing_left`);
- :mod:`.tcp_proxy`: :func:`tcp_proxy`, a network a test can cut;
- :mod:`.recovery`: numbered broadcasts across a dropped connection, each
  received once, in order, for any client (:func:`all_once_across_a_drop`);
- :mod:`.workers`: the recovery tests' server sides as processes (one
  behind a proxy cut, two on one Redis: a worker restarted, a reconnect
  to the other worker); imported by its module name, not from here (it
  builds on ``tests.interop.servers``, which imports this package);
- :mod:`.fuzzing`: the cable, commands and measures the fuzz and the
  churn soak share;
- :mod:`.docs`: the docs' Python blocks, run as modules.
"""

from tests.helpers.docs import code_blocks, doc_tests, load_doc
from tests.helpers.fuzzing import (
    CONNECT_TIMEOUT,
    ROOM,
    FrameCaches,
    cmd,
    drop_stale_deadlines,
    fuzz_cable,
    memory_growth,
    read_broadcasts,
    settle,
    subscribers,
    traced,
)
from tests.helpers.ports import free_port
from tests.helpers.recovery import (
    Disruption,
    ProxyCut,
    ServerSide,
    all_once_across_a_drop,
    broadcast_numbered,
    cut_between,
)
from tests.helpers.redis_server import (
    RedisServer,
    assert_nothing_left,
    redis_available,
    redis_killed,
    redis_server,
    redis_threads,
)
from tests.helpers.serving import (
    GC_THRESHOLD_CASES,
    SERVERS,
    Server,
    served,
    served_on,
)
from tests.helpers.tasks import all_tasks, task_count
from tests.helpers.tcp_proxy import TcpProxy, tcp_proxy
from tests.helpers.transports import TRANSPORTS, Transport
from tests.helpers.waiting import LOSS_BOUND, wait_until
from tests.helpers.wire import ProtocolWire
from tests.helpers.wsclient import (
    PROTOCOL,
    RawClient,
    WireFrame,
    command,
    raw_connect,
    ws_frame,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "GC_THRESHOLD_CASES",
    "LOSS_BOUND",
    "PROTOCOL",
    "ROOM",
    "SERVERS",
    "TRANSPORTS",
    "Disruption",
    "FrameCaches",
    "ProtocolWire",
    "ProxyCut",
    "RawClient",
    "RedisServer",
    "Server",
    "ServerSide",
    "TcpProxy",
    "Transport",
    "WireFrame",
    "all_once_across_a_drop",
    "all_tasks",
    "assert_nothing_left",
    "broadcast_numbered",
    "cmd",
    "code_blocks",
    "command",
    "cut_between",
    "doc_tests",
    "drop_stale_deadlines",
    "free_port",
    "fuzz_cable",
    "load_doc",
    "memory_growth",
    "raw_connect",
    "read_broadcasts",
    "redis_available",
    "redis_killed",
    "redis_server",
    "redis_threads",
    "served",
    "served_on",
    "settle",
    "subscribers",
    "task_count",
    "tcp_proxy",
    "traced",
    "wait_until",
    "ws_frame",
]
