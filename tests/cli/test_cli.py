"""Every ``trio-cable`` command as a subprocess against a live server.

The server is docs/cli.md's example app (its first Python block, written
to a temporary ``myapp.py``) run by ``trio-cable serve``, so the CLI
reference's examples run against exactly what it shows. Its ``console``
blocks run here too, and must print what they show.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers import RedisServer, free_port
from tests.interop.servers import ServerError, ServerProcess
from trio_cable.client import Disconnected, open_cable_client

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"
CLI = [sys.executable, "-m", "trio_cable"]
#: The CLI as a terminal starts it, with Ctrl-C (SIGINT) armed. A process
#: started in the background by a non-interactive shell inherits SIGINT
#: ignored, Python and trio keep it ignored, and so would a CLI run by a
#: test under such a shell: the interrupt tests would hang.
CLI_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " runpy.run_module('trio_cable', run_name='__main__', alter_sys=True)",
]
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
ENV.pop("FORCE_COLOR", None)
ENV.pop("TRIO_CABLE_REDIS_URL", None)


def doc_app_source() -> str:
    match = re.search(r"```python\n(.*?)```", CLI_DOC.read_text(), re.DOTALL)
    assert match, "docs/cli.md shows its example app first"
    return match.group(1)


def console_examples() -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the ``console`` blocks, with the output shown."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", CLI_DOC.read_text(), re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif line.strip():
                examples[-1][1].append(line)
    return examples


class CliServer(ServerProcess):
    """``trio-cable serve myapp:app`` in ``app_dir``, readiness through the
    app's stats endpoint."""

    def __init__(self, app_dir: Path, *extra: str, target: str = "myapp:app") -> None:
        super().__init__("hypercorn", app_dir)
        self.app_dir = app_dir
        self.extra = extra
        self.target = target

    def command(self) -> list[str]:
        port = str(self.port)
        app_dir = str(self.app_dir)
        return [
            *CLI,
            "serve",
            self.target,
            "--port",
            port,
            "--app-dir",
            app_dir,
            *self.extra,
        ]

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cable/stats"

    def get_stats_sync(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(
                b"GET /cable/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
        head, _, body = raw.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise ValueError(head)
        stats: dict[str, Any] = json.loads(body)
        return stats

    async def stats(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self.get_stats_sync)


#: Beside myapp.py: a CableApp wrapping an HTTP app, a plain ASGI app, a
#: module that fails to import.
WEBSITE = """
from myapp import cable
from trio_cable.asgi import CableApp


async def pages(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a page"})


app = CableApp(cable, pages)
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_app")
    (path / "myapp.py").write_text(doc_app_source())
    (path / "website.py").write_text(WEBSITE)
    (path / "broken.py").write_text("import no_such_dependency\n")
    return path


@pytest.fixture(scope="module")
def server(app_dir: Path) -> Iterator[CliServer]:
    server = CliServer(app_dir, "--log-level", "warning")
    with server:
        yield server


@pytest.fixture
def url(server: CliServer) -> str:
    return server.url


async def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 15
) -> subprocess.CompletedProcess[bytes]:
    """Run ``trio-cable ARGS`` to the end."""
    with trio.fail_after(timeout):
        return await trio.run_process(
            [*CLI, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env or ENV,
        )


def lines(output: bytes) -> list[Any]:
    return [json.loads(line) for line in output.decode().splitlines()]


class Running:
    """A CLI command running in the background, read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffers: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}

    async def line(self, which: str = "out") -> str:
        stream = self.process.stdout if which == "out" else self.process.stderr
        assert stream is not None
        buffer = self._buffers[which]
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            assert chunk, f"std{which} ended; so far: {bytes(buffer)!r}"
            buffer += chunk
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line.decode()


@pytest.fixture
async def background(nursery: trio.Nursery) -> AsyncIterator[Any]:
    started: list[trio.Process] = []

    async def start(*args: str, ctrl_c: bool = False) -> Running:
        process = await trio.lowlevel.open_process(
            [*(CLI_FROM_A_TERMINAL if ctrl_c else CLI), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        started.append(process)
        return Running(process)

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        await process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


# -- help, version, colour -------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["serve", "demo", "listen", "perform", "broadcast", "stats"]
)
async def test_help_documents_every_command(command: str) -> None:
    result = await cli(command, "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "example:\n  trio-cable " + command in text
    assert "exit codes:" in text
    assert "--json" in text


async def test_main_help_and_version() -> None:
    result = await cli("--help")
    assert result.returncode == 0
    for command in ("serve", "demo", "listen", "perform", "broadcast", "stats"):
        assert command in result.stdout.decode()
    assert (await cli("--version")).stdout.decode().startswith("trio-cable ")
    assert (await cli()).returncode == 2  # a command is required


async def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "trio-cable"
    with trio.fail_after(15):
        result = await trio.run_process(
            [str(script), "--version"], capture_stdout=True, env=ENV
        )
    assert result.stdout.decode().startswith("trio-cable ")


async def test_errors_are_one_red_line_on_a_terminal() -> None:
    port = free_port()
    env = {**ENV, "FORCE_COLOR": "1"}
    del env["NO_COLOR"]
    result = await cli("listen", f"ws://127.0.0.1:{port}/cable", "X", env=env)
    assert result.returncode == 3
    assert result.stderr.decode().startswith("trio-cable: \033[31merror: ")
    assert result.stderr.decode().count("\n") == 1


# -- the docs' console examples ---------------------------------------------------


@pytest.mark.parametrize(("command", "expected"), console_examples())
async def test_cli_doc_examples(
    server: CliServer, command: str, expected: list[str]
) -> None:
    args = shlex.split(command.replace("8000", str(server.port)))
    assert args[0] == "trio-cable"
    result = await cli(*args[1:])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == expected


# -- perform -------------------------------------------------------------------------


async def test_perform_prints_what_comes_back(url: str) -> None:
    result = await cli(
        "perform", url + "?user=ana", "ChatChannel", "speak",
        '{"message": "hi"}', "-p", "room=general", "--count", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{"user": "ana", "message": "hi"}]


async def test_perform_without_count_waits_and_prints_everything(url: str) -> None:
    start = time.monotonic()
    result = await cli(
        "perform", url, "ChatChannel", "whoami", "-p", "room=random", "--wait", "0.3"
    )
    assert result.returncode == 0
    assert lines(result.stdout) == [{"user": "guest"}]
    assert time.monotonic() - start >= 0.3


async def test_perform_reply_prints_the_return_value_only(url: str) -> None:
    result = await cli(
        "perform", url, "ChatChannel", "shout", '{"message": "hey"}',
        "-p", "room=general", "--reply",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["HEY"]
    # whoami transmits and returns None: the reply is null, the transmit
    # (a message, not the reply) is not printed
    result = await cli(
        "perform", url, "ChatChannel", "whoami", "-p", "room=general", "--reply"
    )
    assert lines(result.stdout) == [None]
    failed = await cli(
        "perform", url, "ChatChannel", "fly", "-p", "room=general", "--reply"
    )
    assert failed.returncode == 1
    assert "unknown_action: ChatChannel has no action 'fly'" in failed.stderr.decode()
    broken = await cli(
        "perform", url, "ChatChannel", "shout", "{}", "-p", "room=general", "--reply"
    )
    assert broken.returncode == 1
    assert "server_error: action 'shout' failed" in broken.stderr.decode()


async def test_perform_unknown_action_fails(url: str) -> None:
    result = await cli("perform", url, "ChatChannel", "speek", "-p", "room=general")
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()  # one line, with the hint
    assert "unknown_action: ChatChannel has no action 'speek'" in line
    assert "did you mean 'speak'?" in line


async def test_perform_too_few_replies_fails(url: str) -> None:
    result = await cli(
        "perform", url, "ChatChannel", "whoami", "-p", "room=general",
        "--count", "2", "--wait", "0.2",
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 of 2 replies" in result.stderr.decode()


@pytest.mark.parametrize("data", ["{bad", "[1, 2]"])
async def test_perform_bad_json_is_a_usage_error(url: str, data: str) -> None:
    result = await cli("perform", url, "ChatChannel", "speak", data)
    assert result.returncode == 2
    assert "JSON" in result.stderr.decode()
    assert result.stdout == b""


async def test_perform_rejected_and_unauthorized(url: str) -> None:
    rejected = await cli("perform", url, "ChatChannel", "speak", "-p", "room=vip")
    assert rejected.returncode == 1
    assert "subscription rejected" in rejected.stderr.decode()
    denied = await cli("perform", url + "?token=bad", "ChatChannel", "whoami")
    assert denied.returncode == 4
    assert "unauthorized" in denied.stderr.decode()


async def test_json_errors_for_scripts() -> None:
    port = free_port()
    result = await cli("perform", f"ws://127.0.0.1:{port}/cable", "C", "a", "--json")
    assert result.returncode == 3
    error = json.loads(result.stderr)
    assert error["exit_code"] == 3
    assert "refused" in error["error"]


# -- listen ---------------------------------------------------------------------------


async def test_listen_prints_json_lines(url: str, background: Any) -> None:
    with trio.fail_after(15):
        listener = await background(
            "listen", url, "ChatChannel", "--param", "room=general", "--count", "2"
        )
        assert "subscribed" in await listener.line("err")
        for text in ("one", "two"):
            await cli(
                "perform", url, "ChatChannel", "speak", json.dumps({"message": text}),
                "-p", "room=general", "--count", "1",
            )  # fmt: skip
        assert json.loads(await listener.line()) == {"user": "guest", "message": "one"}
        assert json.loads(await listener.line()) == {"user": "guest", "message": "two"}
        assert await listener.process.wait() == 0


async def test_listen_until_interrupted(url: str, background: Any) -> None:
    with trio.fail_after(15):
        listener = await background(
            "listen", url, "ChatChannel", "-p", "room=random", ctrl_c=True
        )
        assert "subscribed" in await listener.line("err")
        listener.process.send_signal(signal.SIGINT)
        assert await listener.process.wait() == 0  # its normal way to end
        listener = await background("listen", url, "ChatChannel", "-p", "room=random")
        assert "subscribed" in await listener.line("err")
        listener.process.send_signal(signal.SIGTERM)
        assert await listener.process.wait() == 0


async def test_listen_reconnects_by_itself(
    app_dir: Path, background: Any, tmp_path: Path
) -> None:
    with CliServer(app_dir, "--log-level", "warning") as server, trio.fail_after(20):
        listener = await background(
            "listen", server.url, "ChatChannel", "-p", "room=general", "--json"
        )
        assert json.loads(await listener.line())["event"] == "subscribed"
        await cli(
            "perform", server.url, "ChatChannel", "speak", '{"message": "before"}',
            "-p", "room=general", "--count", "1",
        )  # fmt: skip
        assert json.loads(await listener.line())["data"]["message"] == "before"
        server.kill()
        event = json.loads(await listener.line())
        assert event["event"] == "disconnected"
        server.start()
        await server.wait_ready()
        assert json.loads(await listener.line())["event"] == "resubscribed"
        # A new server process: the room's history (and its epoch) is gone.
        assert json.loads(await listener.line())["event"] == "history_lost"
        await cli(
            "perform", server.url, "ChatChannel", "speak", '{"message": "back"}',
            "-p", "room=general", "--count", "1",
        )  # fmt: skip
        assert json.loads(await listener.line()) == {
            "event": "message",
            "data": {"user": "guest", "message": "back"},
        }


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["-p", "room=vip"], 1, "subscription rejected: "),
        (["-p", "room=general", "-H", "X: y", "--timeout", "1"], 0, ""),
    ],
)
async def test_listen_outcomes(url: str, args: list[str], code: int, text: str) -> None:
    result = await cli("listen", url, "ChatChannel", "--count", "0", *args)
    assert result.returncode == code
    assert text in result.stderr.decode()


async def test_listen_failures(url: str) -> None:
    down = await cli("listen", f"ws://127.0.0.1:{free_port()}/cable", "ChatChannel")
    assert down.returncode == 3
    assert "cannot connect" in down.stderr.decode()
    unknown = await cli("listen", url, "ChatChanel")
    assert unknown.returncode == 1
    (line,) = unknown.stderr.decode().splitlines()  # one line, with the hint
    assert "unknown_channel" in line
    assert "no channel 'ChatChanel' (did you mean 'ChatChannel'?" in line
    denied = await cli("listen", url + "?token=bad", "ChatChannel")
    assert denied.returncode == 4
    bad_param = await cli("listen", url, "ChatChannel", "-p", "room")
    assert bad_param.returncode == 2
    assert "KEY=VALUE" in bad_param.stderr.decode()


# -- stats --------------------------------------------------------------------------


async def test_stats(server: CliServer) -> None:
    async with (
        open_cable_client(server.url) as client,
        client.subscribe("ChatChannel", room="general"),
    ):
        result = await cli("stats", server.stats_url, "--json")
        human = await cli("stats", server.url)  # the cable's URL works too
    assert result.returncode == 0
    stats = json.loads(result.stdout)
    assert stats["connections"] >= 1
    assert stats["subscriptions"] >= 1
    assert stats["streams"] >= 1
    assert isinstance(stats["counters"], dict)
    assert human.returncode == 0
    assert re.search(r"^connections +\d+$", human.stdout.decode(), re.MULTILINE)


async def test_stats_failures(server: CliServer) -> None:
    down = await cli("stats", f"http://127.0.0.1:{free_port()}/cable/stats")
    assert down.returncode == 3
    assert "cannot reach" in down.stderr.decode()
    missing = await cli("stats", f"http://127.0.0.1:{server.port}/nothing")
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr.decode()
    assert (await cli("stats", "ftp://x")).returncode == 2


# -- broadcast ------------------------------------------------------------------------


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


async def test_broadcast_through_redis(
    app_dir: Path, redis_url: str, background: Any
) -> None:
    with (
        CliServer(app_dir, "--redis", redis_url, "--log-level", "warning") as server,
        trio.fail_after(20),
    ):
        listener = await background(
            "listen", server.url, "ChatChannel", "-p", "room=general", "--count", "1"
        )
        assert "subscribed" in await listener.line("err")
        result = await cli(
            "broadcast",
            "chat:general",
            '{"message": "from a job"}',
            "--redis",
            redis_url,
        )
        assert result.returncode == 0, result.stderr
        assert "processes=1" in result.stderr.decode()
        assert json.loads(await listener.line()) == {"message": "from a job"}
        assert await listener.process.wait() == 0
        as_json = await cli(
            "broadcast",
            "chat:random",
            "1",
            "--json",
            env={**ENV, "TRIO_CABLE_REDIS_URL": redis_url},
        )
        assert json.loads(as_json.stdout) == {"stream": "chat:random", "processes": 0}


async def test_broadcast_failures() -> None:
    no_url = await cli("broadcast", "s", "{}")
    assert no_url.returncode == 2
    assert "no Redis URL" in no_url.stderr.decode()
    bad_json = await cli("broadcast", "s", "{x", "--redis", "redis://127.0.0.1:1/0")
    assert bad_json.returncode == 2
    down = await cli(
        "broadcast", "s", "{}", "--redis", f"redis://127.0.0.1:{free_port()}/0"
    )
    assert down.returncode == 3
    assert "cannot broadcast" in down.stderr.decode()


# -- serve and demo ------------------------------------------------------------------


async def test_serve_options_reach_hypercorn(app_dir: Path) -> None:
    result = await cli(
        "serve", "myapp:app", "--host", "0.0.0.0", "--port", "9000", "-w", "3",
        "--reload", "--redis", "redis://r:6379/1", "--graceful-timeout", "2",
        "--print-command", "--app-dir", str(app_dir),
    )  # fmt: skip
    assert result.returncode == 0
    plan = json.loads(result.stdout)
    assert plan["transport"] == "hypercorn"
    assert plan["command"][1:] == [
        "-m", "hypercorn", "--worker-class", "trio", "--bind", "0.0.0.0:9000",
        "--workers", "3", "--graceful-timeout", "2", "--log-level", "info",
        "--reload", "myapp:app",
    ]  # fmt: skip
    assert plan["redis"] == "redis://r:6379/1"


async def test_serve_unknown_module_is_a_usage_error() -> None:
    result = await cli("serve", "no_such_module:app")
    assert result.returncode == 2
    assert "cannot import module 'no_such_module'" in result.stderr.decode()


async def test_serve_sigterm_tells_clients_quickly(app_dir: Path) -> None:
    """Default --graceful-timeout 1: clients hear server_restart within ~1 s
    of SIGTERM (Hypercorn's own default would keep them 3 s)."""
    with CliServer(app_dir, "--log-level", "warning") as server, trio.fail_after(15):
        async with (
            open_cable_client(server.url) as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            await chat.receive_event()  # Connected
            server._process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            start = trio.current_time()
            event = await chat.receive_event()
            assert event == Disconnected("server_restart", reconnecting=True)
            # bound: the 1 s grace, then the goodbye, with margin for a
            # loaded 2-core machine; still below Hypercorn's own 3 s
            assert trio.current_time() - start < 2.75


async def test_serve_reload(app_dir: Path) -> None:
    with CliServer(app_dir, "--reload", "--log-level", "warning") as server:
        assert server.get_stats_sync()["running"]


async def test_demo(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "demo.log").open("wb") as log:
        process = await trio.lowlevel.open_process(
            [*CLI, "demo", "--port", str(port), "--log-level", "warning"],
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        with trio.fail_after(20):
            while True:  # polling another process
                if process.poll() is not None:
                    raise ServerError((tmp_path / "demo.log").read_text())
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    break
                except OSError:
                    await trio.sleep(0.05)
            async with stream:
                await stream.send_all(b"GET /rooms/general HTTP/1.0\r\n\r\n")
                head = await stream.receive_some()
            assert head.startswith(b"HTTP/1.1 200")
            async with (
                open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
                client.subscribe("ChatChannel", room="general"),
            ):
                pass
        assert "serving app=trio_cable.demo:app" in (tmp_path / "demo.log").read_text()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


# -- serve: choosing the transport -----------------------------------------------


async def plan(app_dir: Path, target: str, *args: str) -> Any:
    """What ``serve TARGET ARGS`` would run (``--print-command``)."""
    result = await cli(
        "serve", target, "--app-dir", str(app_dir), "--print-command", *args
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("target", "args", "transport"),
    [
        ("myapp:cable", [], "direct"),
        ("myapp:CableApp(cable)", [], "direct"),  # ATTR is evaluated, as Hypercorn does
        ("myapp:cable", ["--transport", "trio-websocket"], "trio-websocket"),
        ("myapp:app", [], "hypercorn"),  # its stats endpoint is HTTP
        ("website:app", [], "hypercorn"),  # wraps an HTTP app
        ("website:pages", [], "hypercorn"),  # any ASGI app
        ("myapp:cable", ["-w", "2"], "hypercorn"),
        ("myapp:cable", ["--reload"], "hypercorn"),
    ],
)
async def test_serve_auto_picks_the_transport(
    app_dir: Path, target: str, args: list[str], transport: str
) -> None:
    assert (await plan(app_dir, target, *args))["transport"] == transport


async def test_serve_tune_gc_is_opt_in(app_dir: Path) -> None:
    # None: serve_cable's default (the threshold raised while serving only)
    assert (await plan(app_dir, "myapp:cable"))["tune_gc"] is None
    assert (await plan(app_dir, "myapp:cable", "--tune-gc"))["tune_gc"] is True
    tuned = "myapp:CableApp(cable, tune_gc=True)"
    assert (await plan(app_dir, tuned))["tune_gc"] is True
    untuned = "myapp:CableApp(cable, tune_gc=False)"
    assert (await plan(app_dir, untuned))["tune_gc"] is False
    assert (await plan(app_dir, untuned, "--tune-gc"))["tune_gc"] is True


async def test_serve_plan_of_the_direct_transport(app_dir: Path) -> None:
    result = await plan(
        app_dir, "myapp:cable", "--host", "::1", "--port", "9000",
        "--redis", "redis://r:6379/1",
    )  # fmt: skip
    assert result == {
        "transport": "direct",
        "app": "myapp:cable",
        "url": "ws://[::1]:9000/cable",
        "redis": "redis://r:6379/1",
        "tune_gc": None,
    }


async def test_serve_wraps_a_bare_cable_for_hypercorn(app_dir: Path) -> None:
    result = await plan(app_dir, "myapp:cable", "--transport", "hypercorn")
    app = result["command"][-1]
    assert app == "myapp:__import__('trio_cable.asgi').asgi.CableApp(cable)"


@pytest.mark.parametrize(
    ("target", "args", "text"),
    [
        ("website:app", ["--transport", "direct"], "wraps an HTTP app"),
        ("website:pages", ["--transport", "trio-websocket"], "is an ASGI app"),
        ("myapp:cable", ["--transport", "direct", "-w", "2"], "--workers 2 needs"),
        ("myapp:cable", ["--transport", "direct", "--reload"], "--reload needs"),
        ("myapp:cable", ["--log-level", "chatty"], "unknown --log-level"),
        ("myapp:ChatChannel", [], "is a Channel: serve the Cable it is registered"),
        ("myapp:__name__", [], "is a str, not a trio_cable.Cable"),
        ("myapp:nothing", [], "cannot load 'myapp:nothing': NameError"),
        ("broken:app", [], "cannot import module 'broken': ModuleNotFoundError"),
    ],
)
async def test_serve_usage_errors(
    app_dir: Path, target: str, args: list[str], text: str
) -> None:
    result = await cli("serve", target, "--app-dir", str(app_dir), *args)
    assert result.returncode == 2
    error = result.stderr.decode()
    assert text in error
    assert error.count("\n") == 1
    if "--transport" in args and "hypercorn" not in args:
        assert "--transport hypercorn" in error


# -- serve: the direct and trio-websocket transports, in this process ------------


async def serving(
    background: Any, app_dir: Path, target: str, *args: str
) -> tuple[Running, dict[str, Any]]:
    """``serve TARGET`` on a port of its choosing, and its serving event."""
    server = await background(
        "serve", target, "--port", "0", "--app-dir", str(app_dir),
        "--log-level", "warning", "--json", *args,
    )  # fmt: skip
    event = json.loads(await server.line())
    assert event["event"] == "serving"
    return server, event


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize(
    ("args", "transport"),
    [([], "direct"), (["--transport", "trio-websocket"], "trio-websocket")],
)
async def test_serve_a_cable_in_this_process(
    app_dir: Path, background: Any, args: list[str], transport: str
) -> None:
    with trio.fail_after(15):
        server, event = await serving(background, app_dir, "myapp:cable", *args)
        assert event["transport"] == transport
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/cable", event["url"])
        # still trio-cable itself, not an exec'd Hypercorn
        assert cmdline(server.process.pid)[1:4] == ["-m", "trio_cable", "serve"]
        async with (
            open_cable_client(event["url"] + "?user=ana") as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            result = await cli(
                "perform", event["url"], "ChatChannel", "speak",
                '{"message": "hi"}', "-p", "room=general", "--count", "1",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr.decode()
            message = await chat.receive()
            assert message == {"user": "guest", "message": "hi"}


@pytest.mark.parametrize("target", ["myapp:cable", "myapp:app"])
async def test_stats_and_metrics_on_the_socket_transports(
    app_dir: Path, background: Any, target: str, transport: str
) -> None:
    """``trio-cable stats`` works against the direct and the trio-websocket
    transport: a bare cable with ``--stats-path``, or a CableApp's own
    ``stats_path``."""
    from prometheus_client.parser import text_string_to_metric_families

    args = ["--transport", transport, "--stats-path", "/cable/stats"]
    with trio.fail_after(15):
        _server, event = await serving(
            background, app_dir, target, *args, "--metrics-path", "/metrics"
        )
        assert event["transport"] == transport
        async with (
            open_cable_client(event["url"]) as client,
            client.subscribe("ChatChannel", room="general"),
        ):
            result = await cli("stats", event["url"], "--json")
            assert result.returncode == 0, result.stderr.decode()
            assert json.loads(result.stdout)["subscriptions"] == 1
            port = int(event["url"].rsplit(":", 1)[1].split("/")[0])
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                raw = b""
                while chunk := await trio.to_thread.run_sync(sock.recv, 65536):
                    raw += chunk
    text = raw.partition(b"\r\n\r\n")[2].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["trio_cable_subscriptions"].samples
    assert sample.labels == {"channel": "ChatChannel"}
    assert sample.value == 1


async def test_serve_a_cable_app_at_its_path(tmp_path: Path, background: Any) -> None:
    (tmp_path / "elsewhere.py").write_text(
        doc_app_source() + '\nother = CableApp(cable, path="/ws")\n'
    )
    with trio.fail_after(15):
        _, event = await serving(background, tmp_path, "elsewhere:other")
        assert event["transport"] == "direct"
        assert event["url"].endswith("/ws")
        async with (
            open_cable_client(event["url"]) as client,
            client.subscribe("ChatChannel", room="random") as chat,
        ):
            await chat.perform("whoami")
            assert await chat.receive() == {"user": "guest"}


@pytest.mark.parametrize(
    ("transport", "signum"),
    [("direct", signal.SIGTERM), ("trio-websocket", signal.SIGINT)],
)
async def test_serve_in_this_process_stops_on_a_signal(
    app_dir: Path, background: Any, transport: str, signum: signal.Signals
) -> None:
    with trio.fail_after(15):
        server, event = await serving(
            background, app_dir, "myapp:cable", "--transport", transport
        )
        async with (
            open_cable_client(event["url"]) as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            await chat.receive_event()  # Connected
            server.process.send_signal(signum)
            with trio.fail_after(3):  # at once, not after a graceful timeout
                ended = await chat.receive_event()
                assert ended == Disconnected("server_restart", reconnecting=True)
                stopping = json.loads(await server.line())
                assert stopping == {"event": "stopping", "signal": signum.name}
                assert await server.process.wait() == 0


TICKING = """
import trio
from trio_cable import Cable, Channel

cable = Cable()


@cable.channel
class TickChannel(Channel):
    async def subscribed(self):
        self.stream_from("ticks")


@cable.background
async def tick():
    n = 0
    while True:
        n += 1
        await cable.broadcast("ticks", n)
        await trio.sleep(0.05)
"""


@pytest.mark.parametrize("transport", ["direct", "hypercorn"])
async def test_serve_runs_background_tasks(
    tmp_path: Path, background: Any, transport: str
) -> None:
    """``@cable.background`` under ``trio-cable serve``: it runs, and a
    SIGTERM still ends the server promptly (Hypercorn: its grace of 1 s)."""
    (tmp_path / "ticking.py").write_text(TICKING)
    port = free_port() if transport == "hypercorn" else 0
    server = await background(
        "serve", "ticking:cable", "--transport", transport, "--port", str(port),
        "--app-dir", str(tmp_path), "--log-level", "warning", "--json",
    )  # fmt: skip
    event = json.loads(await server.line())
    url = event["url"].replace("http://", "ws://").rstrip("/")
    url = url if url.endswith("/cable") else url + "/cable"
    with trio.fail_after(20):
        while True:  # Hypercorn listens a moment after "serving": poll
            try:
                await (
                    await trio.open_tcp_stream(
                        "127.0.0.1", int(url.split(":")[2].split("/")[0])
                    )
                ).aclose()
                break
            except OSError:
                await trio.sleep(0.05)
        async with open_cable_client(url) as client:
            async with client.subscribe("TickChannel") as ticks:
                first = await ticks.receive()
                assert await ticks.receive() > first  # it keeps ticking
            server.process.send_signal(signal.SIGTERM)
            started = trio.current_time()
            assert await server.process.wait() == 0
    assert trio.current_time() - started < 5  # prompt: not waiting on the ticker


async def test_serve_direct_with_redis(
    app_dir: Path, background: Any, redis_url: str
) -> None:
    """--redis reaches the cable: a broadcast through Redis from another
    process is delivered to the direct transport's client."""
    with trio.fail_after(20):
        _, event = await serving(
            background, app_dir, "myapp:cable", "--redis", redis_url
        )
        assert event["redis"] == redis_url
        async with (
            open_cable_client(event["url"]) as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            result = await cli(
                "broadcast", "chat:general", '{"message": "via redis"}',
                "--redis", redis_url,
            )  # fmt: skip
            assert "processes=1" in result.stderr.decode()
            assert await chat.receive() == {"message": "via redis"}


async def test_serve_cannot_listen(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = await cli(
            "serve", "myapp:cable", "--port", port, "--app-dir", str(app_dir)
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()


@pytest.mark.parametrize("command", ["demo", "serve myapp:app"])
async def test_hypercorn_on_a_taken_port_is_one_line(
    app_dir: Path, command: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = await cli(*command.split(), "--port", port, "--app-dir", str(app_dir))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"trio-cable: error: cannot listen on 127.0.0.1:{port}: "
        "[Errno 98] Address already in use"
    ]
    assert result.stdout == b""


@pytest.mark.parametrize("command", ["perform", "listen"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/cable", "ws://x:port/cable"])
async def test_a_url_that_is_not_a_cable_is_a_usage_error(
    command: str, url: str
) -> None:
    args = [command, url, "ChatChannel"] + (["speak"] if command == "perform" else [])
    result = await cli(*args)
    assert result.returncode == 2
    error = result.stderr.decode().splitlines()[-1]  # after argparse's usage
    assert error.startswith(f"trio-cable {command}: error: argument URL: not a ws://")
    assert "Traceback" not in result.stderr.decode()
    if url.startswith("http"):
        assert "'ws://127.0.0.1:9/cable'?" in error


# -- serve: Hypercorn ------------------------------------------------------------------


async def test_an_app_with_http_routes_runs_under_hypercorn(server: CliServer) -> None:
    """The module's server: ``serve myapp:app``, no --transport."""
    assert server._process is not None
    assert cmdline(server._process.pid)[1:3] == ["-m", "hypercorn"]
    assert (await server.stats())["running"]  # HTTP on the cable's port
    async with (
        open_cable_client(server.url) as client,
        client.subscribe("ChatChannel", room="general"),
    ):
        pass


class CableUnderHypercorn(CliServer):
    """``serve myapp:cable --transport hypercorn``: no stats endpoint, so
    ready once its port accepts connections."""

    def wait_ready_sync(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                self._accepts_sync()
                return
            time.sleep(0.05)  # polling another process
        raise ServerError(f"{self} not ready after {timeout}s\n{self.log_tail()}")


async def test_serve_a_bare_cable_under_hypercorn(app_dir: Path) -> None:
    extra = ("--transport", "hypercorn", "--log-level", "warning")
    with (
        CableUnderHypercorn(app_dir, *extra, target="myapp:cable") as server,
        trio.fail_after(15),
    ):
        async with (
            open_cable_client(server.url) as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            await chat.perform("whoami")
            assert await chat.receive() == {"user": "guest"}
