"""A :class:`~trio_cable.transports.base.MessageSocket` whose sends wait
until the test lets them through: the queued transport's and the send
pool's contract tests drive it."""

from __future__ import annotations

import trio

from trio_cable.transports import TransportClosed

__all__ = ["GatedSocket"]


class GatedSocket:
    """Sends wait for :attr:`gate`; :meth:`stalled` is True while it is
    shut, unless :attr:`writable` says otherwise (a socket that looks
    writable and then holds a send: the race the send pool must survive)."""

    def __init__(self, *, cancel_safe: bool = False) -> None:
        self.cancel_safe = cancel_safe
        self.sent: list[str] = []
        self.gate = trio.Event()
        self.writable: bool | None = None
        self.sending = 0  # sends waiting at the gate
        self.closed_with: int | None = None
        self.incoming_send, self.incoming = trio.open_memory_channel[str](10)

    async def send(self, frame: str) -> None:
        self.sending += 1
        try:
            await self.gate.wait()
        finally:
            self.sending -= 1
        self.sent.append(frame)

    def stalled(self) -> bool:
        if self.writable is not None:
            return not self.writable
        return not self.gate.is_set()

    async def receive(self) -> str | bytes:
        try:
            return await self.incoming.receive()
        except trio.EndOfChannel:
            raise TransportClosed from None

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code
        await trio.lowlevel.checkpoint()
