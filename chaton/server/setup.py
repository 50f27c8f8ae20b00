"""Wire the durable services (store, accounts, bans) into a :class:`ChatServer`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["attach_services"]


def attach_services(server: ChatServer) -> None:
    """Open the database and attach accounts and bans (filled in with issue 3)."""
