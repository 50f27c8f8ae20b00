"""The one command table: per command its syntax, what it needs, and its handler.

Phase (451 before registration, 462 after it), parameter count (461), privilege (481) and
unknown commands (421) are answered here, once, so handlers stay short and cannot forget a
check. ``admin`` commands need admin powers, which the authority derives from the current
account record at every use (see ``authority``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.server.authority import admin_now
from chaton.server.registration_state import BEFORE_REGISTRATION, Phase

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["ANY", "BEFORE", "REGISTERED", "Command", "Handler", "dispatch", "table"]

#: A handler either finishes at once (``None``) or returns work the connection waits for.
Handler = Callable[["ChatServer", "Session", Message], Awaitable[None] | None]


#: Where a command may be sent. (CHECKING never sees one: input waits while it lasts.)
REGISTERED = frozenset({Phase.REGISTERED})
BEFORE = BEFORE_REGISTRATION
ANY = BEFORE | REGISTERED


@dataclass(frozen=True, slots=True)
class Command:
    handler: Handler
    syntax: str = ""
    min_params: int = 0
    phases: frozenset[Phase] = REGISTERED  # elsewhere: 451 before registration, 462 after
    admin: bool = False  # refused with 481 unless the client has admin powers now


def table() -> dict[str, Command]:
    """Every command chaton knows, on one screen (built once per server)."""
    from chaton.server import (
        accounts,
        admin,
        chanserv,
        chathistory,
        messaging,
        monitor,
        queries,
        read_markers,
        redaction,
        registration,
        rooms,
        search,
        who,
        whowas,
    )

    c = Command
    return {
        # registration and liveness; usable before registration
        "CAP": c(registration.cap, "CAP <subcommand> [:<capabilities>]", 1, ANY),
        "NICK": c(registration.nick, "NICK <nickname>", 0, ANY),
        "USER": c(registration.user, "USER <user> 0 * :<realname>", 4, BEFORE),
        "PASS": c(registration.pass_, "PASS <account>:<password>", 1, BEFORE),
        "AUTHENTICATE": c(accounts.authenticate, "AUTHENTICATE <mechanism>|<data>", 1, ANY),
        "PING": c(registration.ping, "PING <token>", 0, ANY),
        "PONG": c(registration.pong, "PONG <token>", 0, ANY),
        "QUIT": c(registration.quit_, "QUIT [:<reason>]", 0, ANY),
        # talking
        "PRIVMSG": c(messaging.relay, "PRIVMSG <target>[,<target>] :<text>"),
        "NOTICE": c(messaging.relay, "NOTICE <target>[,<target>] :<text>"),
        "TAGMSG": c(messaging.relay, "@<tags> TAGMSG <target>[,<target>]"),
        "REDACT": c(redaction.redact, "REDACT <target> <msgid> [:<reason>]", 2),
        "MARKREAD": c(read_markers.markread, "MARKREAD <target> [timestamp=<time>]", 1),
        "SEARCH": c(search.search, "SEARCH text=<words>[;in=<target>][;from=<nick>]"
                    "[;after=<time>][;before=<time>][;limit=<n>]", 1),
        "CHATHISTORY": c(chathistory.chathistory,
                         "CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN|TARGETS <target> "
                         "<ref> [<ref>] <limit>", 1),
        # rooms
        "JOIN": c(rooms.join, "JOIN <room>[,<room>] [<key>]", 1),
        "PART": c(rooms.part, "PART <room>[,<room>] [:<reason>]", 1),
        "NAMES": c(rooms.names, "NAMES [<room>]"),
        "TOPIC": c(rooms.topic, "TOPIC <room> [:<topic>]", 1),
        "LIST": c(rooms.list_, "LIST"),
        "MODE": c(rooms.mode, "MODE <target> [<modes>]", 1),
        # queries
        "WHO": c(who.who, "WHO <mask> [o][%<fields>[,<token>]]"),
        "WHOWAS": c(whowas.whowas, "WHOWAS <nick> [<count>]", 1),
        "MONITOR": c(monitor.monitor, "MONITOR +|-|C|L|S [<nick>[,<nick>]]", 1),
        "TIME": c(queries.time_, "TIME"),
        "INFO": c(queries.info, "INFO"),
        "ADMIN": c(queries.admin, "ADMIN"),
        "WHOIS": c(queries.whois, "WHOIS <nick>", 1),
        "USERHOST": c(queries.userhost, "USERHOST <nick> [<nick>...]", 1),
        "ISON": c(queries.ison, "ISON <nick> [<nick>...]", 1),
        "AWAY": c(queries.away, "AWAY [:<message>]"),
        "SETNAME": c(queries.setname, "SETNAME :<realname>", 1),
        "LUSERS": c(queries.lusers, "LUSERS"),
        "MOTD": c(queries.motd, "MOTD"),
        "VERSION": c(queries.version, "VERSION"),
        # admin powers
        "OPER": c(accounts.oper, "OPER <name> <password>", 2),
        "KICK": c(rooms.kick, "KICK <room> <nick>[,<nick>] [:<reason>]", 2),
        "INVITE": c(rooms.invite, "INVITE <nick> <room>", 2),
        "CHANSERV": c(chanserv.command, "CHANSERV <command> [<args>]"),
        "CS": c(chanserv.command, "CS <command> [<args>]"),
        "KILL": c(admin.kill, "KILL <nick> :<reason>", 1, admin=True),
        "AUDIT": c(admin.audit, "AUDIT [<count>]", 0, admin=True),
        "UBAN": c(admin.uban, "UBAN ADD|DEL|LIST|INFO [<target>] [DURATION <d>] [FORCE] "
                  "[<reason>]", 1, admin=True),
    }


def dispatch(
    table: dict[str, Command], server: ChatServer, conn: Session, msg: Message
) -> Awaitable[None] | None:
    """Check ``msg`` against the table and run its handler."""
    cmd = table.get(msg.command)
    registered = conn.registered
    if cmd is None:
        if registered:
            conn.numeric(num.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
        else:
            conn.numeric(num.ERR_NOTREGISTERED, "You have not registered")
        return None
    if conn.phase not in cmd.phases:
        if registered:
            conn.numeric(num.ERR_ALREADYREGISTERED, "You may not reregister")
        else:
            conn.numeric(num.ERR_NOTREGISTERED, "You have not registered")
        return None
    if len(msg.params) < cmd.min_params:
        conn.numeric(num.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        return None
    if cmd.admin and not admin_now(server, conn):
        conn.numeric(num.ERR_NOPRIVILEGES, "Permission denied - you're not an IRC operator")
        return None
    return cmd.handler(server, conn, msg)
