"""How a command reports: data on stdout, status and errors on stderr (or
JSON lines with ``--json``), and what each exit code means."""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

__all__ = [
    "DENIED",
    "EXIT_CODES",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "UNREACHABLE",
    "USAGE",
    "CommandError",
    "Output",
]

OK, FAILED, USAGE, UNREACHABLE, DENIED, INTERRUPTED = 0, 1, 2, 3, 4, 130

#: What each exit code means (also in ``trio-cable --help``).
EXIT_CODES = {
    OK: "success",
    FAILED: "the server said no: subscription rejected or unanswered, an error "
    "frame, an HTTP error; serve: cannot listen",
    USAGE: "bad arguments: unknown option, invalid JSON, unimportable app or "
    "one the transport cannot serve",
    UNREACHABLE: "cannot reach the server",
    DENIED: "the server refused the connection (unauthorized)",
    INTERRUPTED: "interrupted (Ctrl-C) before finishing",
}


class CommandError(Exception):
    """A failure to report in one line and exit with ``code``."""

    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.code = code


class Output:
    """Where a command reports: data lines on stdout, status on stderr."""

    def __init__(self, json_mode: bool, out: TextIO, err: TextIO) -> None:
        self.json = json_mode
        self.out = out
        self.err = err
        self.color = _wants_color(err)

    def data(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False), file=self.out, flush=True)

    def event(self, kind: str, **fields: Any) -> None:
        """A status line (``--json``: an object on stdout with ``event``)."""
        if self.json:
            self.data({"event": kind, **fields})
            return
        details = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        self._say(f"{kind} {details}".rstrip(), "36")

    def error(self, message: str, code: int) -> None:
        if self.json:
            payload = {"error": message, "exit_code": code}
            print(json.dumps(payload), file=self.err, flush=True)
        else:
            self._say(f"error: {message}", "31")

    def _say(self, text: str, color: str) -> None:
        if self.color:
            text = f"\033[{color}m{text}\033[0m"
        print(f"trio-cable: {text}", file=self.err, flush=True)


def _wants_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()
