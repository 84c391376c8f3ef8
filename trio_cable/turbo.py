"""Turbo Streams: HTML that tells the page what to change, sent over a cable.

Build a ``<turbo-stream>`` with one function per Turbo action and broadcast
it like any other payload; a page holding a ``<turbo-stream-channel>``
element (from ``/cable.js``) or Turbo's ``<turbo-cable-stream-source>``
applies it, with no custom JavaScript::

    from trio_cable import turbo

    await cable.broadcast("chat:general", turbo.append("messages", "<li>hi</li>"))
    turbo.append("messages", render_message, message=msg)  # render_message(message=msg)
    turbo.remove("message_42")

Content is HTML and goes in as given (escape user text in it yourself, for
example with :func:`html.escape`); targets and every other attribute are
escaped here.

:func:`register_streams_channel` adds a channel named
``Turbo::StreamsChannel`` that speaks the protocol of turbo-rails'
``<turbo-cable-stream-source signed-stream-name="...">``: the page gets a
stream name signed with HMAC-SHA256 (the format of Rails'
``MessageVerifier``), so a client can only listen to streams the server
signed for it.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any, Literal

from ._channel import Channel
from ._signing import InvalidToken, Keys, MessageVerifier

if TYPE_CHECKING:
    from ._cable import Cable

__all__ = [
    "CONTENT_TYPE",
    "SECRET_KEY_ENV",
    "Content",
    "StreamSigner",
    "after",
    "append",
    "before",
    "morph",
    "prepend",
    "refresh",
    "register_streams_channel",
    "remove",
    "replace",
    "stream",
    "stream_name",
    "update",
]

log = logging.getLogger("trio_cable.turbo")

#: The media type of an HTTP response made of Turbo Streams (Turbo applies
#: such a response to the page when it answers a form submission).
CONTENT_TYPE = "text/vnd.turbo-stream.html"

#: The environment variable :func:`register_streams_channel` reads the
#: signing key from when it is given none.
SECRET_KEY_ENV = "TRIO_CABLE_SECRET_KEY"

#: HTML as a string, or a callable that renders it from keyword arguments.
#: Objects with an ``__html__`` method (markupsafe, Jinja) count as HTML.
Content = str | Callable[..., Any]

Method = Literal["morph"] | None


def _html(content: Content | None, context: dict[str, Any]) -> str:
    if content is None:
        return ""
    if callable(content) and not isinstance(content, str):
        content = content(**context)
    elif context:
        raise TypeError("keyword arguments are for a rendering callable")
    html = getattr(content, "__html__", None)
    return str(html() if callable(html) else content)


def stream(
    action: str,
    target: str | None = None,
    content: Content | None = None,
    /,
    *,
    targets: str | None = None,
    attributes: Mapping[str, str] | None = None,
    **context: Any,
) -> str:
    """One ``<turbo-stream>`` element for any action (custom ones too).

    Arguments:
        action: the Turbo action (``append``, ``replace``...).
        target: the ``id`` of the element to act on.
        content: HTML for the ``<template>``, or a callable rendering it
            (called with ``context``); ``None`` for no template.
        targets: a CSS selector instead of ``target``: act on every match.
        attributes: further attributes (``method``, ``request-id``...).

    Raises:
        TypeError: ``context`` given without a rendering callable.
    """
    attrs: dict[str, str] = {"action": action}
    if target is not None:
        attrs["target"] = target
    if targets is not None:
        attrs["targets"] = targets
    attrs.update(attributes or {})
    rendered = " ".join(f'{name}="{escape(value)}"' for name, value in attrs.items())
    template = (
        "" if content is None else f"<template>{_html(content, context)}</template>"
    )
    return f"<turbo-stream {rendered}>{template}</turbo-stream>"


def append(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    **context: Any,
) -> str:
    """Add ``content`` as the last child of the target."""
    return stream("append", target, content, targets=targets, **context)


def prepend(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    **context: Any,
) -> str:
    """Add ``content`` as the first child of the target."""
    return stream("prepend", target, content, targets=targets, **context)


def before(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    **context: Any,
) -> str:
    """Insert ``content`` as a sibling just before the target."""
    return stream("before", target, content, targets=targets, **context)


def after(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    **context: Any,
) -> str:
    """Insert ``content`` as a sibling just after the target."""
    return stream("after", target, content, targets=targets, **context)


def replace(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    method: Method = None,
    **context: Any,
) -> str:
    """Swap the target element itself for ``content`` (``method="morph"``:
    morph it into ``content``, keeping unchanged nodes)."""
    attributes = {"method": method} if method else None
    return stream(
        "replace", target, content, targets=targets, attributes=attributes, **context
    )


def update(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    method: Method = None,
    **context: Any,
) -> str:
    """Replace the target's contents and keep the element (``method="morph"``:
    morph its children)."""
    attributes = {"method": method} if method else None
    return stream(
        "update", target, content, targets=targets, attributes=attributes, **context
    )


def morph(
    target: str | None,
    content: Content,
    /,
    *,
    targets: str | None = None,
    children_only: bool = False,
    **context: Any,
) -> str:
    """Morph the target into ``content``, preserving unchanged nodes (Turbo 8:
    ``replace`` with ``method="morph"``; ``children_only``: ``update``)."""
    build = update if children_only else replace
    return build(target, content, targets=targets, method="morph", **context)


def remove(target: str | None = None, /, *, targets: str | None = None) -> str:
    """Remove the target (no template)."""
    return stream("remove", target, targets=targets)


def refresh(
    *,
    request_id: str | None = None,
    method: Method = None,
    scroll: Literal["preserve", "reset"] | None = None,
) -> str:
    """Ask the page to refresh itself (Turbo 8 page refresh). Turbo skips
    the refresh on the page whose own request carried ``request_id``."""
    attributes = {"request-id": request_id, "method": method, "scroll": scroll}
    present = {name: value for name, value in attributes.items() if value}
    return stream("refresh", attributes=present)


# -- signed stream names ------------------------------------------------------


def stream_name(*streamables: object) -> str:
    """The stream name for ``streamables``, joined with ``:`` as turbo-rails
    does (``stream_name("room", 42) == "room:42"``)."""
    if not streamables:
        raise ValueError("stream_name() needs at least one part")
    return ":".join(str(part) for part in streamables)


class StreamSigner:
    """Signs stream names and verifies signed ones, with HMAC-SHA256.

    The format is Rails' ``ActiveSupport::MessageVerifier`` with the JSON
    serializer (what ``Turbo.signed_stream_verifier`` uses): the base64 of
    the JSON-encoded name, ``--``, the hex HMAC of that base64 text. Given
    the same key, names signed by a Rails app verify here and back.

    Arguments:
        secret_key: the key (keep it secret; share it between processes
            that render pages and processes that serve the cable), or a
            list of keys: the first signs, any verifies (key rotation).
    """

    def __init__(self, secret_key: Keys) -> None:
        self._verifier = MessageVerifier(secret_key)

    def sign(self, *streamables: object) -> str:
        """The signed name of ``stream_name(*streamables)``, for a page's
        ``signed-stream-name`` attribute."""
        return self._verifier.generate(stream_name(*streamables))

    def verify(self, signed: object) -> str | None:
        """The stream name ``signed`` carries, or ``None`` if it is not a
        name this key signed (tampered, truncated, not a string)."""
        try:
            name = self._verifier.verified(signed)
        except InvalidToken:
            return None
        return name if isinstance(name, str) else None


class _StreamsChannel(Channel):
    """Streams from the stream name in the signed ``signed_stream_name``
    param, and rejects the subscription when the signature is wrong."""

    signer: StreamSigner

    async def subscribed(self) -> None:
        name = self.signer.verify(self.params.get("signed_stream_name"))
        if name is None:
            log.info("refused a Turbo stream subscription with a bad signature")
            self.reject()
            return
        self.stream_from(name)


def register_streams_channel(
    cable: Cable,
    secret_key: str | bytes | StreamSigner | None = None,
    *,
    name: str = "Turbo::StreamsChannel",
) -> StreamSigner:
    """Register a ``Turbo::StreamsChannel`` on ``cable``; return its signer.

    Pages subscribe with a signed stream name, from turbo-rails'
    ``<turbo-cable-stream-source channel="Turbo::StreamsChannel"
    signed-stream-name="...">`` or this package's ``<turbo-stream-channel
    channel="Turbo::StreamsChannel" signed-stream-name="...">``; broadcast
    to the plain name (``stream_name(...)``) to reach them.

    Arguments:
        cable: the cable to register the channel on.
        secret_key: the HMAC key, or a :class:`StreamSigner`. If ``None``,
            the ``TRIO_CABLE_SECRET_KEY`` environment variable; if that is
            unset too, a random key for this process only (fine for one
            process; several workers need a shared key).
        name: the channel name clients subscribe with.

    Raises:
        ValueError: another channel already has ``name``.
    """
    if isinstance(secret_key, StreamSigner):
        signer = secret_key
    else:
        key = secret_key or os.environ.get(SECRET_KEY_ENV)
        if not key:
            log.info(
                "%s is not set: signing stream names with a random key", SECRET_KEY_ENV
            )
            key = secrets.token_hex(32)
        signer = StreamSigner(key)
    channel = type("StreamsChannel", (_StreamsChannel,), {"signer": signer})
    cable.channel(name=name)(channel)
    return signer
