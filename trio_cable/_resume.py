"""A connection's session (the extended protocol): taken and restored as
the client comes back, kept as it drops (what a session holds, and how
long: see ``_sessions``)."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

import trio

from ._sessions import Session, restore_sid
from ._subscription import StreamHost, Subscription, SubscriptionOwner

if TYPE_CHECKING:
    from ._sessions import SessionKeeper
    from .protocol.server import ChannelRules, ServerProtocol

__all__ = ["RESTORE_HOLD", "end_subscriptions", "keep", "restore", "take_session"]

log = logging.getLogger("trio_cable.connection")

#: How long a restored subscription holds live broadcasts back for the
#: client's history request (@anycable/web sends it with the welcome).
RESTORE_HOLD: Final = 5.0


class ResumeHost(StreamHost, Protocol):
    """What resuming needs of the cable, beyond a subscription's needs."""

    @property
    def sessions(self) -> SessionKeeper: ...
    def channel_rules(self, name: str) -> ChannelRules | None: ...


class Resuming(SubscriptionOwner, Protocol):
    """What resuming needs of a connection (a ``Connection``)."""

    @property
    def host(self) -> ResumeHost: ...
    @property
    def protocol(self) -> ServerProtocol: ...
    @property
    def sid(self) -> str: ...


async def take_session(conn: Resuming) -> Session | None:
    """The session the client asks to resume (by its sid), if it is kept."""
    sid = restore_sid(conn.request) if conn.protocol.dialect.extended else None
    return None if sid is None else await conn.host.sessions.take(sid)


async def restore(conn: Resuming, session: Session) -> list[str]:
    """Take a kept session's subscriptions over (no ``subscribed()``):
    their streams live again and their timers running; broadcasts wait
    for the client's history request, RESTORE_HOLD at most. Returns
    their identifiers."""
    restored, streams = [], []
    for kept in session.subscriptions:
        rules = conn.host.channel_rules(kept.channel.channel_name)
        assert rules is not None  # registered: it was subscribed to
        record = conn.protocol.restore(kept.identifier, rules)
        record.owner = sub = Subscription(conn, record, kept.params)
        sub.adopt(kept)
        restored.append(kept.identifier)
        streams += sub.streams
    conn.host.count("sessions_restored")
    log.info("conn %s: session restored (%d subscriptions)", conn.id, len(restored))
    await conn.host.streams_live(streams)
    if restored:
        conn.spawn(partial(_release_restored, conn))
    return restored


async def _release_restored(conn: Resuming) -> None:
    await trio.sleep(RESTORE_HOLD)
    conn.protocol.release_restored()


def end_subscriptions(conn: Resuming, close: tuple[str, bool] | None) -> Session | None:
    """End every subscription (each runs ``unsubscribed()``); or, when an
    extended client dropped (``close``: why we closed it, None if the
    client left), detach the confirmed ones into a session it may resume
    (their ``unsubscribed()`` runs at expiry)."""
    records = list(conn.protocol.subscriptions.values())
    sessions = conn.host.sessions
    if not (conn.protocol.dialect.extended and sessions.keeps(close)):
        for record in records:
            record.owner.end(grace=True)
        return None
    session = Session(conn.identity)
    for record in records:
        sub = record.owner
        if sub.confirmed and not record.closed:
            session.subscriptions.append(sub.detach())
        else:
            sub.end(grace=True)
    sessions.expect(conn.sid)
    return session


async def keep(conn: Resuming, session: Session) -> None:
    """Hand the session to the cable's keeper (once no task of the
    connection touches it); if the cable has stopped, end it now."""
    if not await conn.host.sessions.keep(conn.sid, session):
        for kept in session.subscriptions:
            await kept.former.run_unsubscribed()
