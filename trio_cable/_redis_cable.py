"""``RedisCable``: the cross-process cable under a name of its own."""

from __future__ import annotations

from typing import Any

from ._cable import Cable
from ._options import DEFAULT_REDIS_PREFIX

__all__ = ["RedisCable"]


class RedisCable(Cable):
    """A :class:`Cable` whose broadcasts cross processes through Redis.

    The same as ``Cable(redis_url=url, redis_prefix=prefix, ...)``; any
    cable also turns cross-process when the ``TRIO_CABLE_REDIS_URL``
    environment variable is set as it starts, so application code does
    not change between the two.

    Raises:
        CableError: at start-up, if the ``redis`` package is missing.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_REDIS_PREFIX, **options: Any):
        super().__init__(redis_url=url, redis_prefix=prefix, **options)
