"""Argument types of the command line (``--param``, ``--header``, JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["header", "json_object", "json_value", "param"]


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
