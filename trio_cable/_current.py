"""``current``: who is on the connection a piece of channel code serves.

Set per connection once its connect hook ran, and inherited by that
connection's tasks only (its subscriptions, their actions and the worker
threads of plain-``def`` actions), so code deep in a call chain can ask
``current.user`` without the channel being passed down.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._channel import ConnectionView

__all__ = ["current"]

current_user: ContextVar[Any] = ContextVar("trio_cable.current.user", default=None)
current_connection: ContextVar[ConnectionView | None] = ContextVar(
    "trio_cable.current.connection", default=None
)


class _Current:
    """Read-only view of the current connection's identity."""

    __slots__ = ()

    @property
    def user(self) -> Any:
        """The connect hook's result for this connection (``None``: anonymous
        or outside any connection)."""
        return current_user.get()

    @property
    def connection(self) -> ConnectionView | None:
        """The connection being served, or ``None`` outside one."""
        return current_connection.get()

    def __repr__(self) -> str:
        return "<trio_cable.current>"


current = _Current()
