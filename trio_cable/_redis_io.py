"""redis-py in trio: clients, blocking calls in threads owned by tasks,
and which errors mean "the connection broke" (the bridge, the history
kept in Redis and the session store share them).

redis-py blocks, so each call runs in a worker thread that the task
waiting for it owns (:func:`in_thread`): cancellation first closes the
call's socket (``stop``), so the thread returns at once, and the task
still waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

from ._errors import CableError
from ._util import leaves

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "Lost",
    "import_redis",
    "in_thread",
    "is_connection_failure",
    "redis_client",
]

T = TypeVar("T")


class Lost(Exception):
    """The Redis connection broke; reconnect."""


def import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise CableError(
            "a Redis cable needs the redis package: pip install 'trio-cable[redis]'"
        ) from None
    return redis


def redis_client(url: str, **options: Any) -> Redis:
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client: Redis = redis.Redis.from_url(
        url,
        # the bridge reconnects by itself, with its own backoff
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=0.5,
        socket_keepalive=True,
        client_name="trio_cable",
        **options,
    )
    return client


async def in_thread(fn: Callable[..., T], *args: Any, stop: Callable[[], None]) -> T:
    """Run a blocking call in a worker thread and wait for it.

    On cancellation ``stop()`` closes the call's socket so the thread ends
    at once, and this still waits for it: no thread outlives its task. A
    call that completed is reported even if cancellation came meanwhile
    (the cancellation then strikes at the next checkpoint), so no
    publish is ever mistaken for a failed one.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    stopped = False

    def deliver(result: outcome.Outcome[T]) -> None:
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    def abort(_: object) -> trio.lowlevel.Abort:
        nonlocal stopped
        stopped = True
        stop()
        return trio.lowlevel.Abort.FAILED  # the thread's end reschedules us

    trio.lowlevel.start_thread_soon(partial(fn, *args), deliver)
    try:
        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    except Exception:
        if stopped:  # the error is only the socket stop() closed
            await trio.lowlevel.checkpoint()
        raise
    return result


def is_connection_failure(exc: BaseException) -> bool:
    redis = import_redis()
    kinds = (Lost, OSError, redis.RedisError)
    return all(isinstance(leaf, kinds) for leaf in leaves(exc))
