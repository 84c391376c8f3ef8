"""``trio_cable.run``: SIGINT or SIGTERM to a program serving a cable is a
clean shutdown (clients told ``server_restart``, every ``unsubscribed()``
run) and one line on stderr, not a ``KeyboardInterrupt`` traceback. The
program runs as a real process, as users run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from tests.helpers import LOSS_BOUND, RawClient

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import trio
import trio_cable
from trio_cable import Cable, Channel, serve_cable

cable = Cable()


@cable.channel
class FeedChannel(Channel):
    async def subscribed(self):
        self.stream_from("feed")

    async def unsubscribed(self):
        print("unsubscribed", flush=True)


async def main():
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_cable, cable, "127.0.0.1", 0)
        print(port, flush=True)


print("run returned", trio_cable.run(main), flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_shuts_a_served_cable_down_cleanly(
    tmp_path: Path, signum: signal.Signals
) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(program)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out = b""
    try:
        with trio.fail_after(LOSS_BOUND):
            while b"\n" not in out:
                chunk = await process.stdout.receive_some()
                assert chunk, "the program exited before serving"
                out += chunk
            port = int(out.split(b"\n")[0])
            client = await RawClient.connect(port, welcome=True)
            await client.subscribe(json.dumps({"channel": "FeedChannel"}))
            process.send_signal(signum)
            frames = await client.read_to_end()
            await client.aclose()
            await process.wait()
            while chunk := await process.stdout.receive_some():
                out += chunk
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()
        await process.stderr.aclose()
    assert frames[-1] == {
        "type": "disconnect",
        "reason": "server_restart",
        "reconnect": True,
    }
    assert process.returncode == 0
    assert out.decode().splitlines()[1:] == ["unsubscribed", "run returned None"]
    assert err.decode() == f"{signum.name}: shutting down\n"  # no traceback


def test_run_returns_the_result_and_raises_errors_as_themselves() -> None:
    import trio_cable

    async def answer(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    assert trio_cable.run(answer, 21) == 42

    async def broken() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        trio_cable.run(broken)
