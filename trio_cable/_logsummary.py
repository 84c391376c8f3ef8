"""Log lines for events that come in floods, summarised.

A refused handshake is worth a warning; five thousand of them in eight
seconds are one attack, and five thousand lines would bury everything
else in the log. :class:`LogSummary` writes the first event of a run at
once, counts the ones that follow for ``interval`` seconds, and then
writes one line saying how many there were, by kind.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["LogSummary"]


class LogSummary:
    """At most one line per event kind and one summary per ``interval``.

    ``clock`` is ``time.monotonic`` unless given (tests pass their own).
    """

    __slots__ = ("_clock", "_interval", "_level", "_log", "_quiet_until", "_skipped")

    def __init__(
        self,
        log: logging.Logger,
        level: int = logging.WARNING,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._level = level
        self._interval = interval
        self._clock = clock
        self._quiet_until = -float("inf")
        self._skipped: Counter[str] = Counter()

    def event(self, kind: str, message: str, *args: object) -> None:
        """One event of ``kind``: logged now, or counted for the summary."""
        now = self._clock()
        if now < self._quiet_until:
            self._skipped[kind] += 1
            return
        self.flush()
        self._log.log(self._level, message, *args)
        self._quiet_until = now + self._interval

    def tick(self) -> None:
        """Write the summary if its interval is over (call it now and then)."""
        if self._skipped and self._clock() >= self._quiet_until:
            self.flush()

    def flush(self) -> None:
        """Write the summary of what was counted, if anything was."""
        if not self._skipped:
            return
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self._skipped.items()))
        self._log.log(
            self._level,
            "... and %d more like it in %g s (%s)",
            sum(self._skipped.values()),
            self._interval,
            kinds,
        )
        self._skipped.clear()
