"""The one command table: per command its syntax, what it needs, and its handler.

Registration (451), parameter count (461), privilege (481) and unknown commands (421) are
answered here, once, so handlers stay short and cannot forget a check. ``pre_reg`` commands
may be sent before registration completes; ``admin`` ones need admin powers, which the
account service derives from the current account records (see ``accounts``).
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

__all__ = ["Command", "Handler", "dispatch", "table"]

#: A handler either finishes at once (``None``) or returns work the connection waits for.
Handler = Callable[["ChatServer", "Connection", Message], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Command:
    handler: Handler
    syntax: str = ""
    min_params: int = 0
    registered: bool = True  # refused with 451 before registration completes
    admin: bool = False  # refused with 481 unless the client has admin powers


def table() -> dict[str, Command]:
    """Every command chaton knows, on one screen (built once per server)."""
    from chaton.server import accounts, admin, messaging, queries, registration, rooms

    c = Command
    return {
        # registration and liveness; usable before registration
        "CAP": c(registration.cap, "CAP <subcommand> [:<capabilities>]", 1, registered=False),
        "NICK": c(registration.nick, "NICK <nickname>", registered=False),
        "USER": c(registration.user, "USER <user> 0 * :<realname>", 4, registered=False),
        "PASS": c(registration.pass_, "PASS <account>:<password>", 1, registered=False),
        "AUTHENTICATE": c(accounts.authenticate, "AUTHENTICATE <mechanism>|<data>", 1,
                          registered=False),
        "PING": c(registration.ping, "PING <token>", registered=False),
        "PONG": c(registration.pong, "PONG <token>", registered=False),
        "QUIT": c(registration.quit_, "QUIT [:<reason>]", registered=False),
        # talking
        "PRIVMSG": c(messaging.relay, "PRIVMSG <target>[,<target>] :<text>"),
        "NOTICE": c(messaging.relay, "NOTICE <target>[,<target>] :<text>"),
        # rooms
        "JOIN": c(rooms.join, "JOIN <room>[,<room>] [<key>]", 1),
        "PART": c(rooms.part, "PART <room>[,<room>] [:<reason>]", 1),
        "NAMES": c(rooms.names, "NAMES [<room>]"),
        "TOPIC": c(rooms.topic, "TOPIC <room> [:<topic>]", 1),
        "LIST": c(rooms.list_, "LIST"),
        "MODE": c(rooms.mode, "MODE <target> [<modes>]", 1),
        # queries
        "WHO": c(queries.who, "WHO [<mask>]"),
        "WHOIS": c(queries.whois, "WHOIS <nick>", 1),
        "USERHOST": c(queries.userhost, "USERHOST <nick> [<nick>...]", 1),
        "ISON": c(queries.ison, "ISON <nick> [<nick>...]", 1),
        "AWAY": c(queries.away, "AWAY [:<message>]"),
        "LUSERS": c(queries.lusers, "LUSERS"),
        "MOTD": c(queries.motd, "MOTD"),
        "VERSION": c(queries.version, "VERSION"),
        # admin powers
        "OPER": c(accounts.oper, "OPER <name> <password>", 2),
        "KICK": c(rooms.kick, "KICK <room> <nick>[,<nick>] [:<reason>]", 2, admin=True),
        "KILL": c(admin.kill, "KILL <nick> :<reason>", 1, admin=True),
        "UBAN": c(admin.uban, "UBAN ADD|DEL|LIST|INFO [<target>] [DURATION <d>] [FORCE] "
                  "[<reason>]", 1, admin=True),
    }


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
