"""One subscription as its consumer sees it, and its bounded buffer."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from .._errors import (
    ActionFailed,
    CallTimeout,
    ClientError,
    SubscriptionOverflow,
    SubscriptionRejected,
)
from ..protocol.client import SubscriptionState
from ._events import ClientEvent, Disconnected, Message
from ._options import OverflowPolicy
from ._presence import ClientPresence, presence_payload

__all__ = ["Entry", "Inbox", "PendingCall", "Subscription"]

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


class PendingCall:
    """A call waiting for its reply: settled once, by the reply or by the
    end of what it depended on (its subscription, the connection)."""

    __slots__ = ("_done", "_error", "_result", "action", "sub")

    def __init__(self, sub: Subscription, action: str) -> None:
        self.sub = sub
        self.action = action
        self._done = trio.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def settled(self) -> bool:
        return self._done.is_set()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        if not self._done.is_set():
            self._result, self._error = result, error
            self._done.set()

    async def wait(self) -> Any:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


class Entry:
    """One identifier on the client: its protocol state, every
    :class:`Subscription` that shares it, and their calls waiting for a
    reply (by ``ref``)."""

    def __init__(self, state: SubscriptionState) -> None:
        self.state = state
        self.subs: list[Subscription] = []
        self.rejected: SubscriptionRejected | None = None
        self.calls: dict[int, PendingCall] = {}

    def replied(self, ref: object, result: Any, error: tuple[str, str] | None) -> None:
        """Settle the call tagged ``ref`` (a late or unknown one is dropped)."""
        call = self.calls.pop(ref, None) if isinstance(ref, int) else None
        if call is None:
            log.debug("%s: a reply to no waiting call (%r)", self.identifier, ref)
        elif error is None:
            call.settle(result)
        else:
            call.settle(error=ActionFailed(call.action, *error))

    def fail_calls(self, error: BaseException, sub: Subscription | None = None) -> None:
        """Every waiting call (of ``sub`` only, if given) ends with ``error``."""
        for ref, call in list(self.calls.items()):
            if sub is None or call.sub is sub:
                del self.calls[ref]
                call.settle(error=error)

    @property
    def identifier(self) -> str:
        return self.state.identifier

    @property
    def confirmed(self) -> bool:
        """Confirmed on the current connection."""
        return self.state.confirmed

    def put(self, event: ClientEvent) -> None:
        """Hand ``event`` to every subscription with this identifier
        (presence messages become presence events, or none)."""
        payload = presence_payload(event.data) if isinstance(event, Message) else None
        for sub in self.subs:
            if payload is not None:
                changed = sub.presence.handle(payload)
                if changed is not None:
                    sub._inbox.put(changed)
                continue
            if isinstance(event, Disconnected):
                sub.presence.reset()
            sub._inbox.put(event)

    def reject(self, error: SubscriptionRejected) -> None:
        self.rejected = error
        for sub in self.subs:
            sub._inbox.fail(error)
        self.fail_calls(error)

    def detach(self, sub: Subscription, error: BaseException) -> None:
        """``sub`` was left: its consumer and its calls get ``error``."""
        sub._inbox.fail(error)
        self.fail_calls(error, sub)
        self.subs.remove(sub)


#: Sends one ``message`` command for a subscription (the client's).
SendMessage = Callable[[Entry, dict[str, Any]], Awaitable[None]]
#: Sends one call and waits for its reply (the client's).
SendCall = Callable[[Entry, "Subscription", dict[str, Any]], Awaitable[Any]]
#: Sends one whisper (the client's).
SendWhisper = Callable[[Entry, Any], Awaitable[None]]


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
        send_call: SendCall,
        send_whisper: SendWhisper,
        entry: Entry,
        channel: str,
        params: dict[str, Any],
        inbox: Inbox,
        answer_timeout: float = 10.0,
        *,
        send_frame: Callable[[Entry, str], Awaitable[None]] | None = None,
    ) -> None:
        self._send_message = send_message
        self._send_call = send_call
        self._send_whisper = send_whisper
        self._answer_timeout = answer_timeout
        self._entry = entry
        self._inbox = inbox
        self.channel = channel
        self.params = params

        async def send(frame: str) -> None:
            if send_frame is None:
                raise ClientError("this subscription cannot send presence commands")
            await send_frame(entry, frame)

        #: Presence on the channel's presence stream (docs/presence.md).
        self.presence = ClientPresence(entry.identifier, send, answer_timeout)

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

        With ``wait=True`` (trio_cable servers only) it is a :meth:`call`
        whose result is dropped: it waits until the server has run the
        action, and raises if it did not; for at most the client's
        ``subscribe_timeout``, or ``wait`` seconds if it is a number.

        Raises:
            SubscriptionRejected: the server rejected the subscription.
            ActionFailed: with ``wait``, the server refused the action
                (``unknown_action``: a typo; the message lists the actions)
                or it raised (``server_error``).
            CallTimeout: with ``wait``, no answer in time; a server that
                is not trio_cable never answers.
            ConnectionLost: with ``wait``, the connection dropped first.
        """
        if not wait:
            await self.send({**(data or {}), "action": action})
            return
        limit = self._answer_timeout if wait is True else float(wait)
        await self.call(action, data, timeout=limit)

    async def call(
        self,
        action: str,
        data: Mapping[str, Any] | None = None,
        *,
        # A parameter, not the caller's fail_after: the error names the call.
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Any:
        """Call ``action`` and return what it returned (trio_cable servers).

        Like :meth:`perform`, then waits for the action's reply, which the
        server tags with this call: messages the action transmitted before
        returning are already in this subscription's buffer when it
        returns. ``timeout`` bounds the whole call, waiting to be connected
        and confirmed included.

        Raises:
            ActionFailed: the action raised (``reason`` ``server_error``,
                or the ``reason`` of its ``ActionError``) or was refused
                (``unknown_action``...).
            CallTimeout: no reply within ``timeout`` (the action may still
                run: a server that does not know calls never replies).
            ConnectionLost: the connection dropped before the reply came
                (whether the action ran is unknown).
            SubscriptionRejected: the server rejected the subscription.
            ClientError: the subscription was left meanwhile.

        Cancellation: the call is forgotten; a late reply is dropped.
        """
        with trio.move_on_after(timeout) as waiting:
            data = {**(data or {}), "action": action}
            return await self._send_call(self._entry, self, data)
        assert waiting.cancelled_caught
        raise CallTimeout(self.identifier, action, timeout)

    async def send(self, data: Mapping[str, Any]) -> None:
        """Send ``data`` as is: without an ``action`` key it reaches the
        channel's ``receive`` action."""
        await self._send_message(self._entry, dict(data))

    async def whisper(self, data: Any) -> None:
        """Send ``data`` (any JSON) to the other subscribers of the stream
        the channel opened for whispers (extended protocol: trio_cable's
        ``stream_from(name, whisper=True)``, AnyCable's ``whisper: true``).
        The sender never gets it back; the server does not answer, and
        refuses it with a :class:`ServerError` event where the channel
        opened no such stream. Waits to be connected and confirmed; a
        whisper the connection loses is not sent again (it is transient).

        Raises:
            ClientError: the server speaks only ``actioncable-v1-json``.
            SubscriptionRejected: the server rejected the subscription.
        """
        await self._send_whisper(self._entry, data)

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
        :class:`Disconnected`, :class:`ServerError`, and after a reconnect
        with the extended protocol :class:`Recovered` or
        :class:`HistoryLost`."""
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
