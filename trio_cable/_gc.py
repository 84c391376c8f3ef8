"""Garbage-collector settings for a long-running cable server."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_untouched", "serving_gc", "tune_gc"]

#: The collector thresholds CPython starts with (3.11-3.13; 3.14's
#: incremental collector has others, and is left alone).
_DEFAULT_THRESHOLDS = (700, 10, 10)


def tune_gc(threshold: int = 50_000, *, freeze: bool = True) -> None:
    """Make the cyclic garbage collector cheaper for a busy cable server.

    Every trio task and its coroutine frames are container objects the
    collector scans; with thousands of connections, Python's default
    first-generation threshold (700 allocations) makes it run so often that
    it took half to three quarters of the server's CPU in the benchmarks
    (docs/benchmarks.md). This raises that threshold and, with ``freeze``,
    moves everything allocated so far (modules, the app, the channels)
    out of the collector's sight for good.

    It changes process-wide settings, so it is opt-in:
    ``serve_cable(..., tune_gc=True)``, ``CableApp(..., tune_gc=True)`` or
    ``trio-cable serve --tune-gc``; the demo uses it. (By default both
    servers only raise the threshold while they run: :func:`serving_gc`.)
    """
    if freeze:
        gc.collect()
        gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def gc_untouched() -> bool:
    """Whether the process still has the interpreter's own collector
    settings: enabled, CPython's default thresholds, nothing frozen.

    Then nobody has chosen any, and raising the first threshold is safe
    for a server: it changes when the collector runs, not what it collects.
    """
    return (
        gc.isenabled()
        and gc.get_threshold() == _DEFAULT_THRESHOLDS
        and gc.get_freeze_count() == 0
    )


@contextlib.contextmanager
def serving_gc(tune: bool | None, threshold: int = 50_000) -> Iterator[None]:
    """The collector settings while a server runs (``CableApp``'s lifespan,
    a socket server from listening to the end of its drain).

    ``True``: :func:`tune_gc` (for good); ``False``: nothing; ``None``: if
    the collector is untouched (:func:`gc_untouched`), the first threshold
    raised to ``threshold`` for the block only, put back when it ends, and
    nothing frozen (frozen objects are never collected, which only the app
    can decide is safe).
    """
    if tune:
        tune_gc(threshold)
    if tune is not None or not gc_untouched():
        yield
        return
    before = gc.get_threshold()
    gc.set_threshold(threshold, before[1], before[2])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == threshold:  # nobody changed it since
            gc.set_threshold(*before)
