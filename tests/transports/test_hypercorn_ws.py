"""Installing our message assembly into Hypercorn (transports/hypercorn_ws.py):
only on the releases it was checked against, only for the ``with`` block
(CableApp's lifespan), put back after it. What it does to hostile clients
is in tests/server/test_hostile_fragments.py."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from hypercorn.protocol import h2, h11, ws_stream

from tests.helpers import served_on
from tests.helpers.canary import hostile_cable
from trio_cable.asgi import bounded_hypercorn_messages
from trio_cable.transports.hypercorn_ws import (
    BoundedWSStream,
    MessageLimits,
    bounded_messages,
    limits_in_force,
)


def installed() -> tuple[object, object]:
    return h11.WSStream, h2.WSStream  # type: ignore[attr-defined]  # not re-exported


def test_installed_for_the_block_and_put_back_after_it() -> None:
    hypercorn = ws_stream.WSStream
    assert installed() == (hypercorn, hypercorn)
    outer, inner = MessageLimits(max_message_size=10), MessageLimits()
    with bounded_messages(outer) as bounded:
        assert bounded
        assert installed() == (BoundedWSStream, BoundedWSStream)
        with bounded_messages(inner):
            assert limits_in_force() is inner
        assert limits_in_force() is outer
        assert installed() == (BoundedWSStream, BoundedWSStream)
    assert installed() == (hypercorn, hypercorn)


def test_an_unchecked_release_is_left_alone_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        return "0.99.0" if name == "hypercorn" else real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with (
        caplog.at_level(logging.WARNING, "trio_cable"),
        bounded_hypercorn_messages(hostile_cable()) as bounded,
    ):
        assert not bounded
        assert installed() == (ws_stream.WSStream, ws_stream.WSStream)
    [line] = [r.getMessage() for r in caplog.records]
    assert "not bounded in fragments nor time" in line
    assert "Hypercorn 0.99.0 is not one of the releases checked" in line


def test_someone_elses_stream_class_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Theirs(ws_stream.WSStream):
        pass

    monkeypatch.setattr(h11, "WSStream", Theirs)
    with bounded_messages(MessageLimits()) as bounded:
        assert not bounded
        assert h11.WSStream is Theirs  # type: ignore[attr-defined]


async def test_cable_app_bounds_messages_while_its_lifespan_runs() -> None:
    cable = hostile_cable()
    async with served_on(cable, "hypercorn"):
        assert installed() == (BoundedWSStream, BoundedWSStream)
        assert limits_in_force().count == cable.count
    assert installed() == (ws_stream.WSStream, ws_stream.WSStream)
