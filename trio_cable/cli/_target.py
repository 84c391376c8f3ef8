"""Loading what ``serve``'s ``MODULE:ATTR`` names, and what it needs."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from .._cable import Cable
from .._channel import Channel
from ._output import USAGE, CommandError

__all__ = ["Target", "load_target"]


@dataclass
class Target:
    """What ``serve``'s ``MODULE:ATTR`` names, and how it may be served."""

    spec: str
    module: str
    expr: str
    value: Any
    #: The cable to serve in this process (``None``: an ASGI app only).
    cable: Cable | None = None
    path: str = "/cable"
    #: The app's garbage-collector choice (None: the servers' default).
    tune_gc: bool | None = None
    #: Why it needs an HTTP server (``None``: WebSocket alone will do).
    needs_http: str | None = None
    #: The CableApp's stats and metrics paths (the direct transport serves
    #: them too; ``auto`` still picks Hypercorn for them, as it did).
    stats_path: str | None = None
    metrics_path: str | None = None


def load_target(spec: str, app_dir: str) -> Target:
    """Import ``MODULE:ATTR`` (ATTR evaluated in the module, as Hypercorn
    does, so ``module:make_app()`` works; default ``app``)."""
    from ..asgi import CableApp

    module_name, _, expr = spec.partition(":")
    expr = expr or "app"
    sys.path.insert(0, os.path.abspath(app_dir))
    try:
        found = find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CommandError(f"cannot import module {module_name!r}", USAGE)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CommandError(
            f"cannot import module {module_name!r}: {_describe(exc)}", USAGE
        ) from None
    try:
        value = eval(expr, vars(module))  # the user's own command line
    except Exception as exc:
        raise CommandError(f"cannot load {spec!r}: {_describe(exc)}", USAGE) from None
    target = Target(spec, module_name, expr, value)
    if isinstance(value, Cable):
        target.cable = value
    elif isinstance(value, CableApp):
        target.cable, target.path = value.cable, value.path
        # The same choice on every transport (None: the default, a raised
        # threshold while serving, as under Hypercorn).
        target.tune_gc = value.tune_gc
        target.stats_path, target.metrics_path = value.stats_path, value.metrics_path
        if value.app is not None:
            target.needs_http = "wraps an HTTP app"
    elif isinstance(value, type) and issubclass(value, Channel):
        raise CommandError(
            f"{spec} is a Channel: serve the Cable it is registered with", USAGE
        )
    elif callable(value):
        target.needs_http = "is an ASGI app, not a trio_cable.Cable or CableApp"
    else:
        kind = type(value).__name__
        raise CommandError(
            f"{spec} is a {kind}, not a trio_cable.Cable, a CableApp or an ASGI app",
            USAGE,
        )
    return target


def _describe(exc: BaseException) -> str:
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and frames[-1].filename != "<string>":  # not in ATTR itself
        where = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"
    return f"{type(exc).__name__}: {exc}{where}"
