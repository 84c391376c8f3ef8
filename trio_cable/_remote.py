"""Remote disconnect: the command, who it matches, and sending it from a
program with no cable (see :meth:`Cable.disconnect`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from ._options import DEFAULT_REDIS_PREFIX
from ._redis import redis_broadcast
from .protocol.codec import encode_payload

__all__ = [
    "REMOTE_DISCONNECT",
    "close_matching",
    "encode_command",
    "identity_matches",
    "redis_disconnect",
]

log = logging.getLogger("trio_cable.cable")

#: The stream remote disconnect commands travel on (a control stream of
#: the hub: no channel can listen to it, see ``Subscription.stream_from``).
REMOTE_DISCONNECT: Final = "_trio_cable:disconnect"


class Closable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def identity(self) -> Any: ...
    @property
    def closing(self) -> bool: ...
    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None: ...


def encode_command(identity: Any, reason: str, reconnect: bool) -> str:
    """The command's payload (``TypeError`` if ``identity`` is not JSON)."""
    return encode_payload(
        {"identity": identity, "reason": reason, "reconnect": reconnect}
    )


def close_matching(connections: Iterable[Closable], payload: str) -> int:
    """Carry out a command on this process's ``connections``; how many it
    closed. The payload is decoded here also for a local command, so local
    and remote matching see the same JSON values."""
    try:
        command = json.loads(payload)
        match, reason = command["identity"], str(command["reason"])
        reconnect = bool(command["reconnect"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed remote disconnect command")
        return 0
    closed = 0
    for conn in list(connections):
        if (
            not conn.closing
            and conn.identity is not None
            and identity_matches(conn.identity, match)
        ):
            log.info("conn %s: remote disconnect (%s)", conn.id, reason)
            conn.close(reason, reconnect=reconnect)
            closed += 1
    return closed


def identity_matches(identity: Any, match: Any) -> bool:
    """Whether a connection's ``identity`` is the one ``match`` names: equal,
    or, for a dict, equal to each of its keys' values item or attribute."""
    if identity == match:
        return True
    if not isinstance(match, dict) or not match:
        return False
    for key, value in match.items():
        if isinstance(identity, Mapping):
            field = identity.get(key, _MISSING)
        else:
            field = getattr(identity, key, _MISSING)
        if field is _MISSING or field != value:
            return False
    return True


_MISSING: Final = object()


def redis_disconnect(
    url: str,
    identity: Any,
    *,
    reason: str = "remote",
    reconnect: bool = True,
    prefix: str = DEFAULT_REDIS_PREFIX,
) -> int:
    """:meth:`Cable.disconnect` from any program, through Redis.

    For scripts and jobs with no cable of their own: every process whose
    Redis cable runs with this ``prefix`` closes the connections matching
    ``identity``. Blocking; returns how many processes received the
    command.

    Raises:
        TypeError: ``identity`` is not JSON-encodable.
    """
    payload = json.loads(encode_command(identity, reason, reconnect))
    return redis_broadcast(url, REMOTE_DISCONNECT, payload, prefix=prefix)
