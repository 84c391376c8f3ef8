"""Authentication helpers: signed tokens, signed cookies, session cookies.

Every signature is HMAC-SHA256 in the format of Rails' ``MessageVerifier``
(JSON serializer), with key rotation (sign with the first key, verify with
any), an optional expiry, and a purpose, so a value signed for one use is
refused for every other::

    from trio_cable import auth

    token = auth.sign({"user": 42}, keys=KEYS, purpose="cable", expires_in=600)
    auth.verify(token, keys=KEYS, purpose="cable")  # {"user": 42}

    cable = Cable(connect=auth.identify(auth.SignedToken(KEYS), load=find_user))

Errors never quote the token or cookie they refuse: those are secrets.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._errors import ConnectionRejected, Unauthorized
from ._signing import (
    Clock,
    InvalidSignature,
    InvalidToken,
    Keys,
    MessageVerifier,
    TokenExpired,
)

if TYPE_CHECKING:
    from ._request import Request

__all__ = [
    "InvalidSignature",
    "InvalidToken",
    "Keys",
    "SessionCookie",
    "SignedCookie",
    "SignedToken",
    "Signer",
    "Source",
    "TokenExpired",
    "identify",
    "rejection",
    "sign",
    "verify",
]


def sign(
    value: Any,
    *,
    keys: Keys,
    purpose: str | None,
    expires_in: float | None = None,
    expires_at: datetime | None = None,
    url_safe: bool = True,
    now: Clock | None = None,
) -> str:
    """Sign ``value`` (anything JSON encodes) with the first of ``keys``.

    Arguments:
        keys: a secret key or a list of them (see :data:`Keys`).
        purpose: what the token is for (``"cable"``, ``"password-reset"``);
            :func:`verify` refuses it for any other purpose. ``None`` for
            none (Rails' default).
        expires_in: seconds until it expires; or ``expires_at``, an aware
            datetime. Neither: it never expires.
        url_safe: URL-safe base64 without padding, fit for query strings
            and cookies (``False``: Rails' default, standard base64).
        now: the clock (seconds since the epoch), ``time.time`` if ``None``.

    Raises:
        TypeError: ``value`` is not JSON-serializable.
        ValueError: no key or an empty one; both expiries; a naive datetime.
    """
    verifier = MessageVerifier(keys, url_safe=url_safe, now=now)
    return verifier.generate(
        value, purpose=purpose, expires_in=expires_in, expires_at=expires_at
    )


def verify(
    token: object, *, keys: Keys, purpose: str | None, now: Clock | None = None
) -> Any:
    """The value of a token :func:`sign` made with one of ``keys`` for
    ``purpose`` (either base64 alphabet is read).

    Raises:
        InvalidSignature: forged, tampered, truncated, not a token at all,
            or signed for another purpose.
        TokenExpired: genuine but past its expiry.
    """
    return MessageVerifier(keys, now=now).verified(token, purpose=purpose)


class Source(Protocol):
    """Where :func:`identify` finds a credential in the handshake."""

    def read(self, request: Request) -> Any:
        """The verified value, ``None`` if the request carries none.

        Raises:
            InvalidToken: the request carries one and it is refused.
        """
        ...  # pragma: no cover


class Signer:
    """Signs and verifies values for one purpose, with a default lifetime.

    Arguments:
        keys: the secret key(s); see :data:`Keys`.
        purpose: the purpose values are signed and verified for.
        expires_in: the default lifetime :meth:`sign` gives, in seconds
            (``None``: no expiry).
        now: the clock, ``time.time`` if ``None``.
    """

    def __init__(
        self,
        keys: Keys,
        *,
        purpose: str | None,
        expires_in: float | None = None,
        now: Clock | None = None,
    ) -> None:
        self._verifier = MessageVerifier(keys, url_safe=True, now=now)
        self.purpose = purpose
        self.expires_in = expires_in

    def sign(self, value: Any, *, expires_in: float | None = None) -> str:
        """Sign ``value``, expiring after ``expires_in`` seconds (by default
        the ``expires_in`` given to the constructor)."""
        lifetime = self.expires_in if expires_in is None else expires_in
        return self._verifier.generate(value, purpose=self.purpose, expires_in=lifetime)

    def verify(self, signed: object) -> Any:
        """The value ``signed`` carries; raises as :func:`verify` does."""
        return self._verifier.verified(signed, purpose=self.purpose)


class SignedToken(Signer):
    """A signed token in the ``Authorization: Bearer`` header or a query
    parameter (browsers cannot set WebSocket headers: they use the query).

    Arguments:
        keys: the secret key(s); see :data:`Keys`.
        purpose: the purpose tokens are signed and verified for.
        expires_in: the default lifetime of tokens :meth:`sign` makes, in
            seconds (``None``: they never expire).
        query_param: the query parameter that carries it (``None``: none).
        header: the header that carries it as ``Bearer <token>`` (``None``:
            none). The header wins when both are present.
        now: the clock, ``time.time`` if ``None``.
    """

    def __init__(
        self,
        keys: Keys,
        *,
        purpose: str = "cable",
        expires_in: float | None = 3600.0,
        query_param: str | None = "token",
        header: str | None = "authorization",
        now: Clock | None = None,
    ) -> None:
        super().__init__(keys, purpose=purpose, expires_in=expires_in, now=now)
        self.query_param = query_param
        self.header = header

    def token(self, request: Request) -> str | None:
        """The raw token in ``request``, or ``None``."""
        if self.header is not None:
            scheme, _, token = request.headers.get(self.header, "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        if self.query_param is not None:
            return request.query.get(self.query_param) or None
        return None

    def read(self, request: Request) -> Any:
        """The value of the token in ``request``, ``None`` if it has none.

        Raises:
            InvalidToken: the token is there but refused.
        """
        token = self.token(request)
        return None if token is None else self.verify(token)


class SignedCookie(Signer):
    """A cookie whose value is signed, so the client can read but not
    change it. :meth:`sign` makes the value to put in a ``Set-Cookie``.

    Arguments:
        name: the cookie name.
        keys: the secret key(s); see :data:`Keys`.
        purpose: defaults to ``"cookie.<name>"`` (as Rails does), so the
            value of one cookie is refused as another's.
        expires_in: the default lifetime :meth:`sign` writes into values
            (``None``: none; the browser still drops the cookie at its own
            ``Max-Age``, but a copied value would live forever).
        now: the clock, ``time.time`` if ``None``.
    """

    def __init__(
        self,
        name: str,
        keys: Keys,
        *,
        purpose: str | None = None,
        expires_in: float | None = None,
        now: Clock | None = None,
    ) -> None:
        purpose = f"cookie.{name}" if purpose is None else purpose
        super().__init__(keys, purpose=purpose, expires_in=expires_in, now=now)
        self.name = name

    def read(self, request: Request) -> Any:
        """The value of this cookie in ``request``, ``None`` if it has none.

        Raises:
            InvalidToken: the cookie is there but refused.
        """
        raw = request.cookies.get(self.name)
        return None if raw is None else self.verify(raw)


class SessionCookie:
    """The web app's own session cookie, read by the app's own code.

    ``loads`` turns the cookie's value into the session (or whatever the
    connect hook needs) with the framework's signer; it may raise
    :class:`TokenExpired` for an expired session. Any other exception means
    a refused cookie and becomes :class:`InvalidSignature`, with the
    original dropped: framework errors quote the signature they refused.

    Arguments:
        name: the cookie name (Starlette, Flask, Quart: ``session``;
            Django: ``sessionid``).
        loads: ``cookie value -> session``. A plain function runs in the
            event loop: keep it quick (a database lookup belongs in a
            hook running in a thread).
    """

    def __init__(self, name: str = "session", *, loads: Callable[[str], Any]):
        self.name = name
        self.loads = loads

    def read(self, request: Request) -> Any:
        """The loaded session, ``None`` without the cookie.

        Raises:
            InvalidToken: ``loads`` refused the cookie.
        """
        raw = request.cookies.get(self.name)
        if raw is None:
            return None
        try:
            return self.loads(raw)
        except InvalidToken:
            raise
        except Exception:
            raise InvalidSignature(f"the {self.name!r} cookie was refused") from None


def rejection(error: InvalidToken) -> ConnectionRejected:
    """The refusal for a connection whose credential raised ``error``:
    reason ``token_expired`` for an expired one, else ``unauthorized``;
    never reconnect (the same credential would be refused again)."""
    if error.reason == Unauthorized.reason:
        return Unauthorized(str(error))
    return ConnectionRejected(str(error), reason=error.reason, reconnect=False)


def identify(
    *sources: Source,
    load: Callable[[Any], Any] | None = None,
    anonymous: bool = False,
) -> Callable[[Request], Awaitable[Any]]:
    """A connect hook that identifies connections by signed credentials.

    The first source whose credential is present decides: a refused one
    refuses the connection (it does not fall through to the next source).

    Arguments:
        sources: :class:`SignedToken`, :class:`SignedCookie`,
            :class:`SessionCookie`, or anything with such a ``read``.
        load: turns the verified value into the identity (a user object);
            an ``async def`` is awaited, a plain ``def`` runs in a worker
            thread. Without it the verified value is the identity.
        anonymous: let connections without an identity in (no credential,
            or ``load`` returned ``None``), as anonymous, instead of
            refusing them as ``unauthorized``. A refused credential is
            refused all the same.

    The hook refuses with :class:`~trio_cable.ConnectionRejected`, reason
    ``token_expired``, for an expired credential and with
    :class:`~trio_cable.Unauthorized` otherwise; both with ``reconnect``
    false.
    """
    if not sources:
        raise ValueError("identify() needs at least one source")

    async def connect(request: Request) -> Any:
        identity = None
        for source in sources:
            try:
                value = source.read(request)
            except InvalidToken as exc:
                raise rejection(exc) from None
            if value is not None:
                identity = await _load(load, value)
                break
        if identity is None and not anonymous:
            raise Unauthorized("no identity")
        return identity

    return connect


async def _load(load: Callable[[Any], Any] | None, value: Any) -> Any:
    if load is None:
        return value
    if inspect.iscoroutinefunction(load):
        return await load(value)
    return await trio.to_thread.run_sync(load, value)
