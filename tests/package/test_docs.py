"""Every Python block of the docs runs: the guide's examples are real code."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, RedisServer, doc_tests, load_doc

#: The guide's tests named ``*_on_the_mock_clock`` are about timers: they
#: run on trio's autojump clock, as a user's test with that fixture would.
MOCK_CLOCK = "_on_the_mock_clock"


@pytest.mark.parametrize(
    "test_name", [n for n in doc_tests("guide.md") if not n.endswith(MOCK_CLOCK)]
)
async def test_guide_examples(test_name: str) -> None:
    guide = load_doc("guide.md")  # a fresh cable per test
    await getattr(guide, test_name)()


@pytest.mark.parametrize(
    "test_name", [n for n in doc_tests("guide.md") if n.endswith(MOCK_CLOCK)]
)
async def test_guide_timer_examples(
    test_name: str, autojump_clock: trio.testing.MockClock
) -> None:
    guide = load_doc("guide.md")
    start = trio.current_time()
    await getattr(guide, test_name)()
    assert trio.current_time() - start >= 1.0  # the timers' time went by


async def test_guide_serving_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    guide = load_doc("guide.md")
    with trio.fail_after(5):
        await guide.main()
    assert re.match(r"ws://127\.0\.0\.1:\d+/cable", capsys.readouterr().out)


async def test_guide_direct_transport_example_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    guide = load_doc("guide.md")
    with trio.fail_after(5):
        await guide.main_direct()
    assert re.match(r"ws://127\.0\.0\.1:\d+/cable", capsys.readouterr().out)


async def test_guide_trio_websocket_example_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    guide = load_doc("guide.md")
    with trio.fail_after(10):
        await guide.main_trio_websocket()
    assert "(trio-websocket)" in capsys.readouterr().out


async def test_guide_blocking_action_and_website() -> None:
    from trio_cable.testing import cable_test_client

    guide = load_doc("guide.md")
    async with cable_test_client(guide.cable) as ws:
        await ws.subscribe("ReportChannel")
        await ws.perform("ReportChannel", "build", {"name": "q3"})
        assert (await ws.receive())["message"] == {"report": "q3", "rows": 3}
        await ws.perform("ChatChannel", "speak", {"message": "x"}, room="nope")
        assert (await ws.receive())["reason"] == "not_subscribed"
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")  # pragma: no cover

    await guide.app({"type": "http", "path": "/"}, receive, send)
    assert sent[-1]["body"] == b"hello"


async def test_guide_metrics_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    guide = load_doc("guide.md")
    with trio.fail_after(5):
        await guide.main_metrics()
    assert re.match(r"http://127\.0\.0\.1:\d+/metrics", capsys.readouterr().out)
    assert guide.metrics_app.metrics_path == "/metrics"


@pytest.mark.parametrize("test_name", doc_tests("reliability.md"))
async def test_reliability_examples(test_name: str) -> None:
    doc = load_doc("reliability.md")  # a fresh cable per test
    await getattr(doc, test_name)()


async def test_reliability_redis_sessions_example(redis_server: RedisServer) -> None:
    doc = load_doc("reliability.md")
    with trio.fail_after(LOSS_BOUND):
        await doc.a_session_resumed_on_another_worker(redis_server.url)


@pytest.mark.parametrize("test_name", doc_tests("presence.md"))
async def test_presence_examples(test_name: str) -> None:
    doc = load_doc("presence.md")  # a fresh cable per test
    await getattr(doc, test_name)()
