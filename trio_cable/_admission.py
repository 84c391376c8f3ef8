"""Which sockets and handshakes a cable lets in: the browser origins it
allows, ``max_connections`` and ``max_handshakes``; each refusal counted
and logged (refusals come in floods: one line, then a summary)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._logsummary import LogSummary
from ._options import origin_allowed

if TYPE_CHECKING:
    from ._options import CableOptions
    from ._request import Request

__all__ = ["Admission"]


class Admission:
    """A cable's door policy. ``count`` adds to one of the cable's
    counters; ``refusals`` is the log summary of what it refused."""

    def __init__(
        self, options: CableOptions, count: Callable[[str], None], log: logging.Logger
    ) -> None:
        self.options = options
        self.count = count
        self.refusals = LogSummary(log)

    def refuse_handshake(
        self, request: Request, connections: int
    ) -> tuple[int, str] | None:
        """Why the handshake must be refused, as (HTTP status, reason), or
        None; ``connections`` are those open and under way, this one
        included."""
        origin = request.headers.get("origin")
        if origin is not None and not origin_allowed(
            origin, request.headers.get("host"), self.options.allowed_origins
        ):
            self.count("origin_refused")
            self.refusals.event(
                "origin_refused",
                "refused a handshake from origin %r (not in allowed_origins)",
                origin[:100],
            )
            return 403, "origin not allowed"
        if connections > self.options.max_connections:
            self.count("connections_refused")
            self.refusals.event(
                "connections_refused",
                "refused a handshake: %d connections open",
                self.options.max_connections,
            )
            return 503, "too many connections"
        return None

    def refuse_socket(self, handshakes: int) -> bool:
        """Whether a socket just accepted must be closed, with
        ``handshakes`` under way (counted and logged)."""
        if handshakes < self.options.max_handshakes:
            return False
        self.count("handshakes_refused")
        self.refusals.event(
            "handshakes_refused",
            "closed a new socket: %d handshakes under way",
            handshakes,
        )
        return True
