"""One subscription as its consumer sees it, and its bounded buffer."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from .._errors import SubscriptionOverflow, SubscriptionRejected
from ..protocol.client import SubscriptionState
from ._events import ClientEvent, Message
from ._options import OverflowPolicy

__all__ = ["Entry", "Inbox", "Subscription"]

log = logging.getLogger("trio_cable.client")


class Inbox:
    """A subscription's bounded buffer of events (see ``overflow``)."""

    def __init__(self, identifier: str, size: int, policy: OverflowPolicy) -> None:
        self.identifier = identifier
        self.size = size
        self.policy = policy
        self.items: deque[ClientEvent] = deque()
        self.dropped = 0
        self._unreported = 0  # drops not raised yet (policy "error")
        self._error: BaseException | None = None
        self._wakeup = trio.Event()

    def put(self, event: ClientEvent) -> None:
        if self._error is not None:
            return
        if len(self.items) >= self.size:
            self._drop()
        self.items.append(event)
        self._wakeup.set()

    def _drop(self) -> None:
        if self.dropped == 0 or self.policy == "error":
            log.warning("%s: consumer too slow, dropping messages", self.identifier)
        self.dropped += 1
        if self.policy == "error":
            self._unreported += len(self.items)
            self.items.clear()
        else:
            self.items.popleft()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            self._wakeup.set()

    async def get(self) -> ClientEvent:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._unreported:
                dropped, self._unreported = self._unreported, 0
                raise SubscriptionOverflow(self.identifier, dropped)
            if self.items:
                event = self.items.popleft()  # taken only once nothing can cancel
                await trio.lowlevel.cancel_shielded_checkpoint()
                return event
            if self._error is not None:
                raise self._error
            self._wakeup = trio.Event()
            await self._wakeup.wait()


class Entry:
    """One identifier on the client: its protocol state and every
    :class:`Subscription` that shares it."""

    def __init__(self, state: SubscriptionState) -> None:
        self.state = state
        self.subs: list[Subscription] = []
        self.rejected: SubscriptionRejected | None = None

    @property
    def identifier(self) -> str:
        return self.state.identifier

    @property
    def confirmed(self) -> bool:
        """Confirmed on the current connection."""
        return self.state.confirmed

    def put(self, event: ClientEvent) -> None:
        """Hand ``event`` to every subscription with this identifier."""
        for sub in self.subs:
            sub._inbox.put(event)

    def reject(self, error: SubscriptionRejected) -> None:
        self.rejected = error
        for sub in self.subs:
            sub._inbox.fail(error)

    def detach(self, sub: Subscription, error: BaseException) -> None:
        """``sub`` was left: its consumer gets ``error`` from now on."""
        sub._inbox.fail(error)
        self.subs.remove(sub)


#: Sends one ``message`` command for a subscription (the client's).
SendMessage = Callable[[Entry, dict[str, Any]], Awaitable[None]]
#: Sends one and waits for the server's answer, for at most a timeout.
PerformAndWait = Callable[[Entry, dict[str, Any], float], Awaitable[None]]


class Subscription:
    """One subscription: perform actions on it, iterate its messages.

    Made by :meth:`CableClient.subscribe`. ``async for message in sub``
    yields the data of each message; :meth:`events` also yields
    :class:`Connected`, :class:`Disconnected` and :class:`ServerError`.

    Buffering: up to ``buffer_size`` events wait for the consumer. When it
    falls further behind, ``overflow="drop_oldest"`` (the default) drops the
    oldest (counted in :attr:`dropped`, and logged), so a live view catches
    up with the newest data and the socket never stalls; ``"error"`` drops
    everything buffered and makes the next receive raise
    :class:`SubscriptionOverflow` once.
    """

    def __init__(
        self,
        send_message: SendMessage,
        entry: Entry,
        channel: str,
        params: dict[str, Any],
        inbox: Inbox,
        perform_and_wait: PerformAndWait,
        answer_timeout: float,
    ) -> None:
        self._send_message = send_message
        self._perform_and_wait = perform_and_wait
        self._answer_timeout = answer_timeout
        self._entry = entry
        self._inbox = inbox
        self.channel = channel
        self.params = params

    def __repr__(self) -> str:
        return f"<Subscription {self.identifier}>"

    @property
    def identifier(self) -> str:
        """The identifier string sent to the server (and echoed back)."""
        return self._entry.identifier

    @property
    def confirmed(self) -> bool:
        """Whether the server confirmed it on the current connection."""
        return self._entry.confirmed

    @property
    def pending(self) -> int:
        """How many events wait in the buffer."""
        return len(self._inbox.items)

    @property
    def dropped(self) -> int:
        """How many events overflow dropped so far."""
        return self._inbox.dropped

    async def perform(
        self,
        action: str,
        data: Mapping[str, Any] | None = None,
        *,
        wait: bool | float = False,
    ) -> None:
        """Call ``action`` on the server channel with ``data`` (a JSON object).

        Waits, if need be, until the client is connected and the
        subscription confirmed (across reconnects), then hands the frame to
        the socket. Action Cable does not answer a perform, so by default
        that is all: a failure shows only as a :class:`ServerError` event.

        With ``wait=True`` (trio_cable servers only) it also waits until
        the server has run the action, and raises if it did not; for at
        most the client's ``subscribe_timeout``, or ``wait`` seconds if it
        is a number.

        Raises:
            SubscriptionRejected: the server rejected the subscription.
            ActionFailed: with ``wait``, the server refused the action
                (``unknown_action``: a typo; the message lists the actions)
                or it raised (``server_error``).
            ActionTimeout: with ``wait``, no answer in time; a server
                that is not trio_cable never answers.
        """
        data = {**(data or {}), "action": action}
        if not wait:
            await self.send(data)
            return
        limit = self._answer_timeout if wait is True else float(wait)
        await self._perform_and_wait(self._entry, data, limit)

    async def send(self, data: Mapping[str, Any]) -> None:
        """Send ``data`` as is: without an ``action`` key it reaches the
        channel's ``receive`` action."""
        await self._send_message(self._entry, dict(data))

    async def receive(self) -> Any:
        """The next message's data (other events are skipped).

        Raises:
            SubscriptionRejected: the server rejected it on resubscribe.
            SubscriptionOverflow: with ``overflow="error"``, after drops.
        """
        while True:
            event = await self._inbox.get()
            if isinstance(event, Message):
                return event.data

    async def receive_event(self) -> ClientEvent:
        """The next event: :class:`Message`, :class:`Connected`,
        :class:`Disconnected` or :class:`ServerError`."""
        return await self._inbox.get()

    def events(self) -> _EventIterator:
        """``async for event in sub.events()``: every event, in order."""
        return _EventIterator(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.receive()


class _EventIterator:
    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self._sub.receive_event()
