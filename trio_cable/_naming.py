"""Stream names for objects (Rails' ``broadcasting_for``), pure."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

__all__ = ["broadcasting_for", "stream_name_of"]


def stream_name_of(obj: Any) -> str:
    """How ``obj`` names itself in a stream name.

    In order: its ``__cable_stream__()`` (any object may define it and
    return a string); a ``str`` as it is; an ``int`` in decimal; a
    dataclass instance with an ``id`` field as ``"ClassName:id"`` (like
    Rails' global id, ``User:7``); a tuple or list as its items' names
    joined by ``":"``.

    Raises:
        TypeError: for anything else (a ``bool``, ``None``, a float, an
            object without ``__cable_stream__``), or a hook that does not
            return a string.
    """
    hook = getattr(type(obj), "__cable_stream__", None)
    if hook is not None:
        name = hook(obj)
        if not isinstance(name, str):
            raise TypeError(
                f"{type(obj).__name__}.__cable_stream__() returned "
                f"{type(name).__name__}, not str"
            )
        return name
    if isinstance(obj, str):
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return str(obj)
    if (
        dataclasses.is_dataclass(obj)
        and not isinstance(obj, type)
        and any(field.name == "id" for field in dataclasses.fields(obj))
    ):
        return f"{type(obj).__name__}:{stream_name_of(cast(Any, obj).id)}"
    if isinstance(obj, tuple | list) and obj:
        return ":".join(stream_name_of(item) for item in obj)
    raise TypeError(
        f"cannot name a stream after {type(obj).__name__!s} {obj!r}: give it a "
        "__cable_stream__() method returning a str"
    )


def broadcasting_for(channel_name: str, obj: Any) -> str:
    """The stream of ``obj`` for the channel named ``channel_name``:
    ``"<channel_name>:<stream_name_of(obj)>"``."""
    return f"{channel_name}:{stream_name_of(obj)}"
