"""Argument types of the command line (``--param``, ``--header``, JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["cable_url", "header", "json_object", "json_value", "param"]


def cable_url(text: str) -> str:
    """A ``ws://`` or ``wss://`` URL (an ``http(s)://`` one gets a hint)."""
    parts = urlsplit(text)
    try:
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError
        parts.port  # noqa: B018  (raises for a port that is not a number)
    except ValueError:
        hint = ""
        if parts.scheme in ("http", "https"):
            fixed = urlunsplit(("ws" + parts.scheme[4:], *parts[1:]))
            hint = f" (a cable is a WebSocket: {fixed!r}?)"
        raise argparse.ArgumentTypeError(
            f"not a ws:// or wss:// URL: {text!r}{hint}"
        ) from None
    return text


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({exc})") from None


def json_object(text: str) -> dict[str, Any]:
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def param(text: str) -> tuple[str, Any]:
    """``key=value`` (a string) or ``key:=json`` (any JSON value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE or KEY:=JSON: {text!r}")
    if key.endswith(":"):
        return key[:-1], json_value(value)
    return key, value


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value': {text!r}")
    return name.strip(), value.strip()
