"""Questions about people and the server: WHO, WHOIS, USERHOST, ISON, LUSERS, MOTD,
VERSION, and AWAY (which changes what WHO and WHOIS say)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton import __version__
from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import is_channel
from chaton.server.notify import tell_peers
from chaton.server.registration import REALNAME_LEN, send_lusers, send_motd
from chaton.server.room_modes import prefix
from chaton.server.rooms import visible_to

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["away", "ison", "lusers", "motd", "userhost", "version", "who", "whois"]


def _who_line(
    server: ChatServer, conn: Session, room: str, other: Session, status: int = 0
) -> None:
    flags = ("G" if other.away is not None else "H") + ("*" if other.is_admin else "")
    flags += prefix(status, multi="multi-prefix" in conn.caps)
    conn.numeric(
        num.RPL_WHOREPLY, room, other.user or "*", other.host, server.name, other.name, flags,
        f"0 {other.realname or other.name}",
    )


# WHO <mask>   (a room, or a nickname)
def who(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    mask = msg.param(0)
    if is_channel(mask):
        room = server.state.find_channel(mask)
        if room is not None and not visible_to(room, conn):
            room = None  # a secret room's members are its own business
        if room is not None and len(room.members) * WHO_LINE_GUESS >= (
            server.settings.sendq_bytes // 4
        ):
            return _who_room(server, conn, room, mask)  # too big for one go: paced
        if room is not None:
            for member, status in room.members.items():
                _who_line(server, conn, room.name, member, status)
    elif mask:
        other = server.state.find_nick(mask)
        if other is not None:
            _who_line(server, conn, "*", other)
    conn.numeric(num.RPL_ENDOFWHO, mask or "*", "End of WHO list")
    return None


#: A generous size of one 352 line: rooms whose WHO could pass a quarter of the send queue
#: are answered paced, the rest at once (no extra loop pass for the common case).
WHO_LINE_GUESS = 200


async def _who_room(server: ChatServer, conn: Session, room: Channel, mask: str) -> None:
    """A room's WHO, produced as the client reads it (a big room's can be long)."""
    for member, status in list(room.members.items()):
        if conn.closing:
            return
        if not member.closing:
            _who_line(server, conn, room.name, member, status)
            await conn.paced()
    conn.numeric(num.RPL_ENDOFWHO, mask, "End of WHO list")


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
