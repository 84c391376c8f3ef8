"""Remote disconnect across workers: two real server processes (Hypercorn,
and ``serve_cable`` on the direct transport) sharing a real redis-server.

``POST /disconnect?user=NAME`` on one worker runs chat_app's ``await
cable.disconnect(user, reconnect=False)``; every connection of that user,
on either worker, gets the disconnect frame and is closed, and every other
connection carries on. ``redis_disconnect`` does the same from a
program with no cable.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import trio

from tests.helpers import LOSS_BOUND, RawClient, RedisServer, command, wait_until
from tests.interop.servers import ServerProcess
from trio_cable import redis_disconnect

CONTROL = "trio_cable:_trio_cable:disconnect"  # prefix + the cable's stream
REMOTE = {"type": "disconnect", "reason": "remote", "reconnect": False}


async def connect(stack: AsyncExitStack, server: ServerProcess, user: str) -> RawClient:
    client = await RawClient.connect(server.port, f"/cable?user={user}", welcome=True)
    stack.push_async_callback(client.aclose)
    return client


async def test_remote_disconnect_closes_the_user_on_every_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"TRIO_CABLE_REDIS_URL": redis_server.url}
    room = '{"channel":"ChatChannel","room":"remote"}'
    with (
        ServerProcess("direct", tmp_path, env) as a,
        ServerProcess("hypercorn", tmp_path, env) as b,
    ):
        # Both workers listen for remote disconnects before they serve.
        def listeners() -> int:
            with redis_server.client() as client:
                return int(dict(client.pubsub_numsub(CONTROL)).get(CONTROL.encode(), 0))

        await wait_until(lambda: listeners() == 2)
        async with AsyncExitStack() as stack:
            ann_a = await connect(stack, a, "ann")
            ann_b = await connect(stack, b, "ann")
            bob_b = await connect(stack, b, "bob")
            for client in (ann_a, ann_b, bob_b):
                await client.subscribe(room)
            assert (await b.stats())["connections"] == 2

            status, body = await a.http("POST", "/disconnect?user=ann")
            assert (status, body) == (200, {"closed": 1})  # ann's on worker a
            with trio.fail_after(LOSS_BOUND):
                for client in (ann_a, ann_b):
                    frames = await client.read_to_end()
                    assert [f for f in frames if f.get("type") == "disconnect"] == [
                        REMOTE
                    ]
            ident = f"unsubscribed {room}"
            await a.wait_for_event_count(ident, 1)
            await b.wait_for_event_count(ident, 1)

            # bob, on the worker that did not run the command, carries on.
            await bob_b.send_text(
                command("message", room, action="speak", message="hi")
            )
            with trio.fail_after(LOSS_BOUND):
                frame = await bob_b.receive()
            assert frame == {
                "identifier": room,
                "message": {"message": "hi", "room": "remote"},
            }
            assert (await b.stats())["connections"] == 1
            assert (await a.stats())["connections"] == 0

            # From a script with no cable of its own: straight through Redis.
            received = await trio.to_thread.run_sync(
                partial(redis_disconnect, redis_server.url, "bob", reason="bye")
            )
            assert received == 2  # both workers heard it
            with trio.fail_after(LOSS_BOUND):
                frames = await bob_b.read_to_end()
            assert [f for f in frames if f.get("type") == "disconnect"] == [
                {"type": "disconnect", "reason": "bye", "reconnect": True}
            ]
            await wait_until_closed(b)


async def wait_until_closed(server: ServerProcess) -> None:
    with trio.fail_after(LOSS_BOUND):
        while (await server.stats())["connections"]:
            await trio.sleep(0.02)  # polling another process
