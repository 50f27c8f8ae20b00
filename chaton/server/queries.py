"""Questions about people and the server: WHOIS, USERHOST, ISON, LUSERS, MOTD, VERSION,
TIME, INFO, ADMIN; and AWAY and SETNAME (which change what WHO and WHOIS say). WHO is
``who.py``, WHOWAS ``whowas.py``."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton import __version__
from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.server.notify import tell_peers
from chaton.server.registration import REALNAME_LEN, send_lusers, send_motd
from chaton.server.room_modes import prefix
from chaton.server.rooms import visible_to

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = [
    "admin", "away", "info", "ison", "lusers", "motd", "setname", "time_", "userhost",
    "version", "whois",
]


# WHOIS [<server>] <nick>
def whois(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    nick = msg.params[-1]
    other = server.state.find_nick(nick)
    if other is None:
        conn.numeric(num.ERR_NOSUCHNICK, nick, "No such nick/channel")
        conn.numeric(num.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return None
    name = other.name
    conn.numeric(num.RPL_WHOISUSER, name, other.user or "*", other.host, "*", other.realname)
    multi = "multi-prefix" in conn.caps
    rooms = " ".join(
        prefix(room.members.get(other, 0), multi=multi) + room.name
        for room in other.channels.values() if visible_to(room, conn)
    )
    if rooms:
        conn.numeric(num.RPL_WHOISCHANNELS, name, rooms)
    conn.numeric(num.RPL_WHOISSERVER, name, server.name, server.settings.network_name)
    if other.is_admin:
        conn.numeric(num.RPL_WHOISOPERATOR, name, "is a server administrator")
    if other.away is not None:
        conn.numeric(num.RPL_AWAY, name, other.away)
    if other.account:
        conn.numeric(num.RPL_WHOISACCOUNT, name, other.account, "is logged in as")
    if "B" in other.user_modes:
        conn.numeric(num.RPL_WHOISBOT, name, "is a bot")
    conn.numeric(num.RPL_WHOISSECURE, name, "is using a secure connection (TLS)")
    if conn.is_admin or conn is other:
        conn.numeric(num.RPL_WHOISACTUALLY, name, other.ip_param, "Actual IP")
    idle = int(time.monotonic() - other.last_active)
    conn.numeric(num.RPL_WHOISIDLE, name, str(idle), str(int(other.signon)),
                 "seconds idle, signon time")
    conn.numeric(num.RPL_ENDOFWHOIS, name, "End of /WHOIS list")
    return None


# USERHOST <nickname>{ <nickname>}
def userhost(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    replies = []
    for nick in msg.params[:5]:
        other = server.state.find_nick(nick)
        if other is not None:
            star = "*" if other.is_admin else ""
            away = "-" if other.away is not None else "+"
            replies.append(f"{other.name}{star}={away}{other.user}@{other.host}")
    conn.numeric(num.RPL_USERHOST, " ".join(replies))
    return None


# ISON <nickname>{ <nickname>}
def ison(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    online = []
    for param in msg.params:
        for nick in param.split():
            other = server.state.find_nick(nick)
            if other is not None:
                online.append(other.name)
    conn.numeric(num.RPL_ISON, " ".join(online))
    return None


# AWAY [<text>]
def away(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    text = msg.param(0)[: server.settings.awaylen]
    was = conn.away
    if text:
        conn.away = text
        conn.numeric(num.RPL_NOWAWAY, "You have been marked as being away")
    else:
        conn.away = None
        conn.numeric(num.RPL_UNAWAY, "You are no longer marked as being away")
    if conn.away != was:
        tell_peers(server, conn, "away-notify", "AWAY", [text] if text else [])
    return None


# SETNAME :<realname>   (IRCv3 setname)
def setname(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    text = msg.param(0)
    if not text or len(text) > REALNAME_LEN or not text.isprintable():
        conn.send_msg("FAIL", "SETNAME", "INVALID_REALNAME",
                      f"A real name is 1 to {REALNAME_LEN} printable characters")
        return None
    conn.realname = text
    tell_peers(server, conn, "setname", "SETNAME", [text], include_self=True)
    return None


def lusers(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    send_lusers(server, conn)
    return None


def motd(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    send_motd(server, conn)
    return None


def version(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    conn.numeric(num.RPL_VERSION, f"chaton-{__version__}", server.name, "TLS-only team chat")
    conn.numeric(num.RPL_ISUPPORT, *server.isupport[:12], "are supported by this server")
    return None


# TIME
def time_(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    now = time.time()
    text = time.strftime("%A %B %d %Y -- %H:%M:%S UTC", time.gmtime(now))
    conn.numeric(num.RPL_TIME, server.name, str(int(now)), "0", text)
    return None


# INFO
def info(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    for line in (f"chaton {__version__}: a TLS-only team chat server",
                 "IRC (Modern IRC and IRCv3) over TLS 1.2+, accounts with argon2id, SQLite.",
                 f"Up since {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(server.started))}"):
        conn.numeric(num.RPL_INFO, line)
    conn.numeric(num.RPL_ENDOFINFO, "End of INFO list")
    return None


# ADMIN
def admin(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    conn.numeric(num.RPL_ADMINME, server.name, "Administrative info")
    conn.numeric(num.RPL_ADMINLOC1, server.settings.network_name)
    conn.numeric(num.RPL_ADMINLOC2, "Ask an admin in the default room, "
                 + server.settings.default_channel)
    conn.numeric(num.RPL_ADMINEMAIL, "-")
    return None
