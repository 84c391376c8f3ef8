"""Garbage-collector settings for a long-running cable server."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


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
    ``trio-cable serve --tune-gc``; the demo uses it.
    """
    if freeze:
        gc.collect()
        gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
