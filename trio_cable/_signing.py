"""HMAC-SHA256 signed messages in the format of Rails' ``MessageVerifier``.

One core for every signature trio_cable makes: signed stream names
(``turbo``), tokens and signed cookies (``auth``). A message is the base64
of its JSON, ``--``, and the hex HMAC-SHA256 of that base64 text. A purpose
or an expiry wraps the value in Rails' metadata envelope
``{"_rails":{"message":<base64 JSON>,"exp":<ISO 8601>,"pur":<purpose>}}``
(the one Rails 6.1 writes and Rails 7 still reads); the ``data`` envelope
of Rails 7.1 is read too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ._errors import InvalidSignature, InvalidToken, TokenExpired

__all__ = [
    "InvalidSignature",
    "InvalidToken",
    "Keys",
    "MessageVerifier",
    "TokenExpired",
]

#: One secret key, or a list of them: the first signs, any of them verifies
#: (put a new key first and keep the old ones while their messages live).
Keys = str | bytes | Sequence[str | bytes]

Clock = Callable[[], float]


def _key_list(keys: Keys) -> tuple[bytes, ...]:
    listed = [keys] if isinstance(keys, str | bytes) else list(keys)
    if not listed or not all(listed):
        raise ValueError("a signing key must not be empty")
    return tuple(key.encode() if isinstance(key, str) else key for key in listed)


def _b64decode(text: str) -> bytes:
    # Accepts both alphabets and missing padding; the HMAC was checked over
    # the text as sent, so leniency here cannot let a variant through.
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)


def _expiry_text(expires_at: datetime) -> str:
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    stamp = expires_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _timestamp(expiry: str) -> float:
    stamp = datetime.fromisoformat(expiry)
    if stamp.tzinfo is None:
        raise ValueError("expiry without a time zone")
    return stamp.timestamp()


class MessageVerifier:
    """Signs JSON values and verifies signed ones (Rails' ``MessageVerifier``
    with ``digest: "SHA256", serializer: JSON``).

    Arguments:
        keys: the secret key(s); see :data:`Keys`.
        url_safe: write URL-safe base64 without padding (Rails 7.1's
            ``url_safe: true``): safe in query strings and cookies as is.
        now: the clock for expiry, in seconds since the epoch.

    Raises:
        ValueError: no key, or an empty one.
    """

    def __init__(
        self, keys: Keys, *, url_safe: bool = False, now: Clock | None = None
    ) -> None:
        self._keys = _key_list(keys)
        self._url_safe = url_safe
        self._now = now

    def _clock(self) -> float:
        return (self._now or time.time)()

    def _encode(self, raw: bytes) -> str:
        if self._url_safe:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return base64.b64encode(raw).decode()

    def _digest(self, key: bytes, data: str) -> bytes:
        return hmac.new(key, data.encode(), hashlib.sha256).hexdigest().encode()

    def generate(
        self,
        value: Any,
        *,
        purpose: str | None = None,
        expires_in: float | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        """The signed message carrying ``value`` (anything JSON encodes).

        Raises:
            TypeError: ``value`` is not JSON-serializable.
            ValueError: both ``expires_in`` and ``expires_at``, or a naive
                ``expires_at``.
        """
        if expires_in is not None and expires_at is not None:
            raise ValueError("give expires_in or expires_at, not both")
        if expires_in is not None:
            expires_at = datetime.fromtimestamp(self._clock() + expires_in, UTC)
        payload = json.dumps(value, separators=(",", ":")).encode()
        if purpose is not None or expires_at is not None:
            envelope = {
                "message": base64.b64encode(payload).decode(),
                "exp": None if expires_at is None else _expiry_text(expires_at),
                "pur": purpose,
            }
            payload = json.dumps({"_rails": envelope}, separators=(",", ":")).encode()
        data = self._encode(payload)
        return f"{data}--{self._digest(self._keys[0], data).decode()}"

    def verified(self, message: object, *, purpose: str | None = None) -> Any:
        """The value ``message`` carries.

        Raises:
            InvalidSignature: not signed by any of the keys, malformed, or
                signed for another purpose.
            TokenExpired: genuine and for this purpose, but expired.
        """
        if not isinstance(message, str) or not message.isascii():
            raise InvalidSignature("not a signed message")
        data, _, digest = message.rpartition("--")
        if not data or not any(
            hmac.compare_digest(digest.encode(), self._digest(key, data))
            for key in self._keys
        ):
            raise InvalidSignature("bad signature")
        try:
            return self._unwrap(json.loads(_b64decode(data)), purpose)
        except (binascii.Error, ValueError, TypeError, KeyError) as exc:
            # Only a key holder can get here; say so without the content.
            raise InvalidSignature("signed but malformed") from exc

    def _unwrap(self, value: Any, purpose: str | None) -> Any:
        meta = value.get("_rails") if isinstance(value, dict) else None
        if meta is None:
            if purpose:
                raise InvalidSignature("signed for another purpose")
            return value
        if not isinstance(meta, dict):
            raise InvalidSignature("signed but malformed")
        if (meta.get("pur") or "") != (purpose or ""):
            raise InvalidSignature("signed for another purpose")
        expiry = meta.get("exp")
        if expiry is not None and self._clock() >= _timestamp(expiry):
            raise TokenExpired("token expired")
        if "data" in meta:
            return meta["data"]
        return json.loads(_b64decode(meta["message"]))
