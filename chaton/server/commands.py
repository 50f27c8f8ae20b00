"""The declarative command table: what each command needs before its handler runs.

Every handler module exports ``COMMANDS: dict[str, Command]``; the server merges them.
Registration (451), parameter count (461), privilege (481) and unknown commands (421) are
answered here, once, so handlers stay short and cannot forget a check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import Message

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.connection import Connection

__all__ = ["Command", "Handler", "dispatch"]

#: A handler either finishes at once (``None``) or returns work the connection waits for.
Handler = Callable[["ChatServer", "Connection", Message], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Command:
    handler: Handler
    min_params: int = 0
    registered: bool = True  # refused with 451 before registration completes
    admin: bool = False  # refused with 481 unless the client is logged in as an admin


def dispatch(
    table: dict[str, Command], server: ChatServer, conn: Connection, msg: Message
) -> Awaitable[None] | None:
    """Check ``msg`` against the table and run its handler."""
    cmd = table.get(msg.command)
    if cmd is None:
        if conn.registered:
            conn.numeric(num.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
        else:
            conn.numeric(num.ERR_NOTREGISTERED, "You have not registered")
        return None
    if cmd.registered and not conn.registered:
        conn.numeric(num.ERR_NOTREGISTERED, "You have not registered")
        return None
    if len(msg.params) < cmd.min_params:
        conn.numeric(num.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        return None
    if cmd.admin and not conn.is_admin:
        conn.numeric(num.ERR_NOPRIVILEGES, "Permission denied - you're not an IRC operator")
        return None
    return cmd.handler(server, conn, msg)
