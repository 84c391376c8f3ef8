"""The built-in ``$pubsub`` channel: streams without a channel of your own.

AnyCable's signed and public streams, which ``@anycable/web``'s
``cable.streamFromSigned(signed)`` and ``cable.streamFrom(name)`` subscribe
to (identifier ``{"channel":"$pubsub","signed_stream_name":...}`` or
``{"channel":"$pubsub","stream_name":...}``). A signed name is Rails'
``MessageVerifier`` format, as AnyCable and Turbo sign them: the base64 of
the JSON-encoded name, ``--``, the hex HMAC-SHA256 of that base64 text; so
a name signed by an AnyCable or Rails app with the same secret verifies
here, and back. The rules (which names open which stream) are pure:
:class:`PubSubRules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._channel import Channel
from ._errors import CableError, InvalidToken, TokenExpired
from ._signing import Keys, MessageVerifier

if TYPE_CHECKING:
    from ._options import CableOptions

__all__ = ["PUBSUB_CHANNEL", "Opened", "PubSubRules", "Refusal", "pubsub_channel"]

#: The channel name ``@anycable/web`` subscribes to for streams.
PUBSUB_CHANNEL: Final = "$pubsub"


class Refusal(NamedTuple):
    """Why a ``$pubsub`` subscription is refused: the ``reject_subscription``
    frame's ``reason`` and ``message``."""

    reason: str
    message: str


class Opened(NamedTuple):
    """The stream a ``$pubsub`` subscription opens, and whether its clients
    may whisper on it."""

    stream: str
    whisper: bool


class PubSubRules:
    """Which ``$pubsub`` identifiers open which stream (pure).

    Arguments:
        secret: the key(s) signed stream names are verified with (the
            first signs); None: no signed streams.
        public: accept unsigned ``stream_name`` params (any client may
            then listen to any stream it can name: off by default).
        whisper: clients may whisper on signed streams (public streams
            always allow it, as in AnyCable).

    Raises:
        ValueError: an empty key.
    """

    __slots__ = ("_verifier", "public", "whisper")

    def __init__(
        self, secret: Keys | None = None, *, public: bool = False, whisper: bool = False
    ) -> None:
        self._verifier = None if secret is None else MessageVerifier(secret)
        self.public = public
        self.whisper = whisper

    @classmethod
    def install(
        cls, options: CableOptions, register: Callable[[type[Channel]], object]
    ) -> PubSubRules:
        """The rules ``options`` set; ``register`` (a cable's
        :meth:`~trio_cable.Cable.channel`) gets a ``$pubsub`` channel for
        them when they allow any stream."""
        rules = cls(
            options.streams_secret,
            public=options.public_streams,
            whisper=options.streams_whisper,
        )
        if rules.enabled:
            register(pubsub_channel(rules))
        return rules

    @property
    def enabled(self) -> bool:
        """Whether the cable has a ``$pubsub`` channel at all."""
        return self._verifier is not None or self.public

    def sign(self, stream: str) -> str:
        """``stream`` signed with the secret, for a client to open with
        ``$pubsub`` (``cable.streamFromSigned(signed)``, or the identifier
        ``{"channel":"$pubsub","signed_stream_name":signed}``). AnyCable's
        and Turbo's format: either verifies it with the same secret.

        Raises:
            TypeError: ``stream`` is not a string.
            CableError: no secret to sign with.
        """
        if not isinstance(stream, str):
            raise TypeError(f"a stream name is a string, not {type(stream).__name__}")
        return self._signer().generate(stream)

    def _signer(self) -> MessageVerifier:
        if self._verifier is None:
            raise CableError("no streams_secret: signed $pubsub streams are off")
        return self._verifier

    def open(self, params: Mapping[str, Any]) -> Opened | Refusal:
        """The stream a subscription with these params opens, or why not.

        ``signed_stream_name`` wins over ``stream_name`` when both are
        given (as in AnyCable).
        """
        signed = params.get("signed_stream_name")
        if signed is not None and signed != "":
            return self._verify(signed)
        name = params.get("stream_name")
        if name is None or name == "":
            return Refusal("no_stream_name", "give signed_stream_name (or stream_name)")
        if not self.public:
            return Refusal(
                "public_streams_off",
                "unsigned stream_name refused: public streams are off",
            )
        if not isinstance(name, str):
            return Refusal("invalid_stream_name", "stream_name must be a string")
        return Opened(name, whisper=True)

    def _verify(self, signed: object) -> Opened | Refusal:
        if self._verifier is None:
            return Refusal(
                "signed_streams_off", "signed_stream_name refused: no streams secret"
            )
        try:
            stream = self._signer().verified(signed)
        except TokenExpired:
            return Refusal("invalid_signature", "the signed stream name has expired")
        except InvalidToken:
            return Refusal(
                "invalid_signature", "signed_stream_name is forged or tampered with"
            )
        if not isinstance(stream, str):
            return Refusal("invalid_signature", "the signed value is not a stream name")
        return Opened(stream, whisper=self.whisper)


class PubSubChannel(Channel):
    """Streams from the stream its identifier names, once :class:`PubSubRules`
    allow it; rejects the subscription with the reason otherwise. It has no
    action (``@anycable/web`` performs none on it); clients whisper on the
    stream where its rules allow."""

    rules: PubSubRules

    async def subscribed(self) -> None:
        opened = self.rules.open(self.params)
        if isinstance(opened, Refusal):
            # The protocol logs the rejection once, with this reason.
            self.reject(opened.reason, opened.message)
            return
        self.stream_from(opened.stream, whisper=opened.whisper)


def pubsub_channel(rules: PubSubRules) -> type[Channel]:
    """A ``$pubsub`` channel class of its own for one cable's ``rules``."""
    return type(
        "PubSubChannel",
        (PubSubChannel,),
        {"rules": rules, "channel_name": PUBSUB_CHANNEL, "__module__": __name__},
    )
