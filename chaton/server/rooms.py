"""Rooms: JOIN, PART, NAMES, TOPIC, LIST, KICK and MODE (rooms and users).

chaton rooms have no channel operators: anyone may join any room and set its topic;
only server admins (shown with ``@``) may KICK. The only room mode is ``+n`` (no messages
from outside), and it is always on; mode changes are refused with 482 for users and 472
for admins, while the queries standard clients send on join (``MODE #room``,
``MODE #room b``) get their normal answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import MAX_LINE_BYTES, Message
from chaton.protocol.names import BadRoomName, casefold, is_channel, room_key, room_name
from chaton.server.lines import Outgoing
from chaton.server.targets import split_targets

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = [
    "join", "kick", "kick_from", "list_", "mode", "names", "part", "prefixed", "send_names",
    "topic",
]

ROOM_MODES = "+n"


def prefixed(conn: Session) -> str:
    return "@" + conn.name if conn.is_admin else conn.name


def send_names(server: ChatServer, conn: Session, room: Channel) -> None:
    """353 lines, split so each fits in one IRC line, then 366 (sizes in bytes: a room
    name may be non-ASCII, and lines are cut at 512 bytes)."""
    head = len(f":{server.name} 353 {conn.name} = {room.name} :".encode()) + 2
    batch: list[str] = []
    size = head
    for member in room.members:
        name = prefixed(member)
        if batch and size + len(name) + 1 > MAX_LINE_BYTES - 2:
            conn.numeric(num.RPL_NAMREPLY, "=", room.name, " ".join(batch))
            batch, size = [], head
        batch.append(name)
        size += len(name) + 1
    if batch:
        conn.numeric(num.RPL_NAMREPLY, "=", room.name, " ".join(batch))
    conn.numeric(num.RPL_ENDOFNAMES, room.name, "End of /NAMES list")


def _send_topic(conn: Session, room: Channel) -> None:
    if room.topic:
        conn.numeric(num.RPL_TOPIC, room.name, room.topic)
        conn.numeric(num.RPL_TOPICWHOTIME, room.name, room.topic_by, str(int(room.topic_at)))
    else:
        conn.numeric(num.RPL_NOTOPIC, room.name, "No topic is set")


def _part_all(server: ChatServer, conn: Session) -> None:
    for room in list(conn.channels.values()):
        Outgoing(conn.source, "PART", [room.name, "Left all rooms"]).send_to(room.members)
        server.state.part(conn, room)


# JOIN <channel>{,<channel>} [<key>{,<key>}]   |   JOIN 0
def join(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    s = server.settings
    if msg.params[0] == "0":
        _part_all(server, conn)
        return None
    for asked in split_targets(msg.params[0]):
        try:
            name = room_name(asked, s.channellen)
        except BadRoomName as why:
            conn.numeric(num.ERR_BADCHANMASK, asked, f"Bad room name: {why}")
            continue
        if room_key(name) in conn.channels:
            continue
        if len(conn.channels) >= s.max_channels_per_user:
            conn.numeric(num.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
            continue
        if server.state.find_channel(name) is None:
            now = time.monotonic()
            if server.room_creations.exceeded(conn.group, now):
                conn.numeric(num.ERR_UNAVAILRESOURCE, name,
                             f"Creating rooms too fast: at most {s.rooms_created_per_ip} per "
                             f"{s.rooms_created_window:g} seconds from one address")
                continue
            server.room_creations.hit(conn.group, now)
        room, _created = server.state.join(conn, name)
        Outgoing(conn.source, "JOIN", [room.name]).send_to(room.members)
        if room.topic:
            _send_topic(conn, room)
        send_names(server, conn, room)
    return None


# PART <channel>{,<channel>} [<reason>]
def part(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    reason = msg.param(1)[: server.settings.kicklen]
    for name in split_targets(msg.params[0]):
        room = server.state.find_channel(name)
        if room is None:
            conn.numeric(num.ERR_NOSUCHCHANNEL, name, "No such channel")
            continue
        if conn not in room.members:
            conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            continue
        params = [room.name, reason] if reason else [room.name]
        Outgoing(conn.source, "PART", params).send_to(room.members)
        server.state.part(conn, room)
    return None


# NAMES [<channel>{,<channel>}]
def names(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    if not msg.params or not msg.params[0]:
        conn.numeric(num.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return None
    wanted = split_targets(msg.params[0])
    if len(wanted) > server.settings.max_targets:
        conn.numeric(num.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets")
        return None
    for name in wanted:
        room = server.state.find_channel(name)
        if room is None:
            conn.numeric(num.RPL_ENDOFNAMES, name, "End of /NAMES list")
        else:
            send_names(server, conn, room)
    return None


# TOPIC <channel> [<topic>]
def topic(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    name = msg.params[0]
    room = server.state.find_channel(name)
    if room is None:
        conn.numeric(num.ERR_NOSUCHCHANNEL, name, "No such channel")
        return None
    if len(msg.params) < 2:
        _send_topic(conn, room)
        return None
    if conn not in room.members:
        conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return None
    room.topic = msg.params[1][: server.settings.topiclen]
    room.topic_by = conn.source
    room.topic_at = time.time()
    Outgoing(conn.source, "TOPIC", [room.name, room.topic]).send_to(room.members)
    return None


# LIST [<channel>{,<channel>}] | LIST <mask> | LIST >n | LIST <n   (ELIST=MU)
def list_(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    want = _list_filter(msg.param(0))
    return _list(server, conn, list(server.state.channels.values()), want)


def _list_filter(arg: str) -> Callable[[Channel], bool]:
    """What ``LIST`` was asked: room names, a ``*``/``?`` mask (ELIST M) or a member
    count bound (``>n``, ``<n``: ELIST U). Anything else lists every room."""
    if not arg:
        return lambda room: True
    if arg[0] in "<>" and arg[1:].isascii() and arg[1:].isdigit():
        bound = int(arg[1:])
        if arg[0] == ">":
            return lambda room: len(room.members) > bound
        return lambda room: len(room.members) < bound
    if "*" in arg or "?" in arg:
        pattern = re.compile(
            "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                    for ch in room_key(arg)) + r"\Z", re.DOTALL)
        return lambda room: pattern.match(room_key(room.name)) is not None
    names = {room_key(n) for n in split_targets(arg)}
    return lambda room: room_key(room.name) in names


async def _list(
    server: ChatServer, conn: Session, rooms: list[Channel], want: Callable[[Channel], bool]
) -> None:
    """Produced as the client reads it (SAFELIST): never beyond the send queue."""
    conn.numeric(num.RPL_LISTSTART, "Channel", "Users  Name")
    for room in rooms:
        if conn.closing:
            return
        if room.members and want(room):  # a room emptied meanwhile is gone
            conn.numeric(num.RPL_LIST, room.name, str(len(room.members)), room.topic)
            await conn.paced()
    conn.numeric(num.RPL_LISTEND, "End of /LIST")


# MODE <target> [<modestring> [<mode arguments>...]]
def mode(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    target = msg.params[0]
    if is_channel(target):
        _room_mode(server, conn, msg, target)
    else:
        _user_mode(server, conn, msg, target)
    return None


_LIST_ENDS = {
    "b": (num.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (num.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (num.RPL_ENDOFINVITELIST, "End of channel invite list"),
}


def _room_mode(server: ChatServer, conn: Session, msg: Message, target: str) -> None:
    room = server.state.find_channel(target)
    if room is None:
        conn.numeric(num.ERR_NOSUCHCHANNEL, target, "No such channel")
        return
    change = msg.param(1)
    if not change:
        conn.numeric(num.RPL_CHANNELMODEIS, room.name, ROOM_MODES)
        conn.numeric(num.RPL_CREATIONTIME, room.name, str(int(room.created)))
        return
    letters = change.lstrip("+")
    if letters in _LIST_ENDS:  # a list query such as "MODE #room b"
        code, text = _LIST_ENDS[letters]
        conn.numeric(code, room.name, text)
        return
    if not conn.is_admin:
        conn.numeric(num.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
        return
    for letter in change.lstrip("+-"):
        if letter != "n":
            conn.numeric(num.ERR_UNKNOWNMODE, letter, "is not a room mode chaton supports")


def _user_mode(server: ChatServer, conn: Session, msg: Message, target: str) -> None:
    if server.state.find_nick(target) is None:
        conn.numeric(num.ERR_NOSUCHNICK, target, "No such nick/channel")
        return
    if casefold(target) != casefold(conn.name):
        conn.numeric(num.ERR_USERSDONTMATCH, "Can't change mode for other users")
        return
    change = msg.param(1)
    if change:
        added: list[str] = []
        removed: list[str] = []
        adding = True
        for letter in change:
            if letter in "+-":
                adding = letter == "+"
            elif letter == "i":
                if adding and "i" not in conn.user_modes:
                    conn.user_modes = conn.user_modes | {"i"}
                    added.append("i")
                elif not adding and "i" in conn.user_modes:
                    conn.user_modes = conn.user_modes - {"i"}
                    removed.append("i")
            elif letter == "o" and not adding and conn.is_admin:
                conn.is_admin = False
                removed.append("o")
            elif letter != "o":
                conn.numeric(num.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
                return
        result = ("+" + "".join(added) if added else "")
        result += "-" + "".join(removed) if removed else ""
        if result:
            conn.send_msg("MODE", conn.name, result, source=conn.source)
        return
    modes = "".join(sorted(conn.user_modes | ({"o"} if conn.is_admin else set())))
    conn.numeric(num.RPL_UMODEIS, "+" + modes)


def kick_from(server: ChatServer, room: Channel, victim: Session, by: str, reason: str) -> None:
    """Remove ``victim`` from ``room``, telling everyone in it (victim included)."""
    Outgoing(by, "KICK", [room.name, victim.name, reason]).send_to(room.members)
    server.state.part(victim, room)


# KICK <channel> <user> [<comment>]   (admins only; audited before it happens)
def kick(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    room = server.state.find_channel(msg.params[0])
    if room is None:
        conn.numeric(num.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return None
    reason = (msg.param(2) or conn.name)[: server.settings.kicklen]
    victims = []
    nicks = split_targets(msg.params[1])
    if len(nicks) > server.settings.max_targets:
        conn.numeric(num.ERR_TOOMANYTARGETS, msg.params[1], "Too many targets")
        return None
    for nick in nicks:
        victim = server.state.find_nick(nick)
        if victim is None or victim not in room.members:
            conn.numeric(num.ERR_USERNOTINCHANNEL, nick, room.name, "They aren't on that channel")
        else:
            victims.append(victim)
    return _kick(server, conn, room, victims, reason) if victims else None


async def _kick(
    server: ChatServer, conn: Session, room: Channel, victims: list[Session], reason: str
) -> None:
    for victim in victims:
        if server.accounts is not None and not await server.accounts.record_admin_action(
            conn, "KICK", "kick", f"{room.name} {victim.name}", reason
        ):
            return
        if victim in room.members:
            kick_from(server, room, victim, conn.source, reason)
