"""Rooms: JOIN, PART, NAMES, TOPIC, LIST, INVITE, KICK and MODE (rooms and users).

The first to join a new room is its operator (``@``); operators give ``+o``/``+v`` and set
the room's modes (``room_modes``). Server admins may act in any room; what they do there
as admins (KICK) is audited. Checks run in the standard order: no such room (403), not on
the room (442), not an operator (482), target not on the room (441).

Privacy: a ``+s`` or ``+i`` room is invisible to non-members in LIST, NAMES, WHO, WHOIS,
TOPIC, MODE and ChanServ INFO.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import MAX_LINE_BYTES, Message
from chaton.protocol.names import BadRoomName, casefold, is_channel, room_key, room_name
from chaton.protocol.wildcards import wildcard_match
from chaton.server.authority import admin_now
from chaton.server.chathistory import replay_on_join
from chaton.server.history import keep_event
from chaton.server.lines import Outgoing, new_msgid
from chaton.server.notify import send_join
from chaton.server.read_markers import marker_on_join
from chaton.server.room_modes import (
    LISTS,
    MAX_LIST,
    MULTI_PREFIXES,
    OP,
    PREFIXES,
    Change,
    ModeError,
    apply,
    banned,
    format_changes,
    listed,
    mode_string,
    parse_changes,
)
from chaton.server.targets import split_targets

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.room_registry import RoomRegistry
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = [
    "invite", "join", "kick", "kick_from", "list_", "mode", "names", "part", "send_names",
    "topic", "visible_to",
]

#: How long an INVITE lets its nickname into a +i room.
INVITE_TTL = 3600.0


def visible_to(room: Channel, conn: Session) -> bool:
    """May ``conn`` see the room (its name in LIST, members, topic, modes)? A private room,
    ``+s`` or ``+i``, shows nothing to a non-member (JOIN's 473 is all it learns)."""
    flags = room.flags
    return ("s" not in flags and "i" not in flags) or conn in room.members


def is_operator(room: Channel, conn: Session) -> bool:
    return bool(room.members.get(conn, 0) & OP)


def send_names(server: ChatServer, conn: Session, room: Channel, *, end: bool = True) -> None:
    """353 lines, split so each fits in one IRC line, then 366 (sizes in bytes: a room
    name may be non-ASCII, and lines are cut at 512 bytes)."""
    if not visible_to(room, conn):
        if end:
            conn.numeric(num.RPL_ENDOFNAMES, room.name, "End of /NAMES list")
        return
    symbol = "@" if "s" in room.flags else "="
    head = len(f":{server.name} 353 {conn.name} {symbol} {room.name} :".encode()) + 2
    prefixes = MULTI_PREFIXES if "multi-prefix" in conn.caps else PREFIXES
    full = "userhost-in-names" in conn.caps
    batch: list[str] = []
    size = head
    for member, status in room.members.items():
        name = prefixes[status & 3] + (member.source if full else member.name)
        if batch and size + len(name) + 1 > MAX_LINE_BYTES - 2:
            conn.numeric(num.RPL_NAMREPLY, symbol, room.name, " ".join(batch))
            batch, size = [], head
        batch.append(name)
        size += len(name) + 1
    if batch:
        conn.numeric(num.RPL_NAMREPLY, symbol, room.name, " ".join(batch))
    if end:
        conn.numeric(num.RPL_ENDOFNAMES, room.name, "End of /NAMES list")


def _send_topic(conn: Session, room: Channel) -> None:
    if room.topic:
        conn.numeric(num.RPL_TOPIC, room.name, room.topic)
        conn.numeric(num.RPL_TOPICWHOTIME, room.name, room.topic_by, str(int(room.topic_at)))
    else:
        conn.numeric(num.RPL_NOTOPIC, room.name, "No topic is set")


def _part_all(server: ChatServer, conn: Session) -> None:
    for room in list(conn.channels.values()):
        out = Outgoing(conn.source, "PART", [room.name, "Left all rooms"], msgid=new_msgid(),
                       account=conn.account)
        out.send_to(room.members)
        keep_event(server, (room,), out, conn.source, conn.account, "PART", ["Left all rooms"])
        server.state.part(conn, room)


# JOIN <channel>{,<channel>} [<key>{,<key>}]   |   JOIN 0
def join(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    s = server.settings
    if msg.params[0] == "0":
        _part_all(server, conn)
        return None
    keys = msg.param(1).split(",")
    for index, asked in enumerate(split_targets(msg.params[0])):
        try:
            name = room_name(asked, s.channellen)
        except BadRoomName as why:
            conn.numeric(num.ERR_BADCHANMASK, asked, f"Bad room name: {why}")
            continue
        if room_key(name) in conn.channels:
            continue
        existing = server.state.find_channel(name)
        if existing is None and not _may_create(server, conn, name):
            continue
        if existing is not None and not _may_join(
            server, conn, existing, keys[index] if index < len(keys) else ""
        ):
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
        room, created = server.state.join(conn, name)
        if room.owner is not None and server.registry is not None:
            room.members[conn] = server.registry.status_on_join(room, conn)
        msgid = send_join(room, conn)
        if room.topic:
            _send_topic(conn, room)
        send_names(server, conn, room)
        if not created or room.owner is not None:  # a room just begun has no past
            replay_on_join(server, conn, room, msgid)
            marker_on_join(server, conn, room)
    return None


def _may_create(server: ChatServer, conn: Session, name: str) -> bool:
    """The ``room_creation`` setting: anyone, accounts (logged in) or admins."""
    policy = server.settings.room_creation
    if policy == "accounts" and conn.account is None:
        conn.numeric(num.ERR_NEEDREGGEDNICK, name,
                     "Only logged-in users may create rooms on this server")
        return False
    if policy == "admins" and not admin_now(server, conn):
        conn.numeric(num.ERR_NEEDREGGEDNICK, name,
                     "Only admins may create rooms on this server")
        return False
    return True


def _may_join(server: ChatServer, conn: Session, room: Channel, key: str) -> bool:
    """The +k, +l, +b and +i checks. An invitation passes +i and +l; admin powers, the
    owner and standing operators of a registered room pass them all."""
    invited = _take_invitation(room, conn)
    admin = admin_now(server, conn) or (  # the owner and standing operators: never shut out
        room.owner is not None and server.registry is not None
        and bool(server.registry.status_on_join(room, conn) & OP)
    )
    if room.key is not None and not hmac.compare_digest(key.encode(), room.key.encode()) and (
        not admin
    ):
        conn.numeric(num.ERR_BADCHANNELKEY, room.name, "Cannot join channel (+k)")
        return False
    if room.limit is not None and len(room.members) >= room.limit and not (invited or admin):
        conn.numeric(num.ERR_CHANNELISFULL, room.name, "Cannot join channel (+l)")
        return False
    if banned(room, conn) and not admin:
        conn.numeric(num.ERR_BANNEDFROMCHAN, room.name, "Cannot join channel (+b)")
        return False
    if "i" in room.flags and not (invited or admin or listed(room.invexes, conn)):
        conn.numeric(num.ERR_INVITEONLYCHAN, room.name, "Cannot join channel (+i)")
        return False
    return True


def _take_invitation(room: Channel, conn: Session) -> bool:
    expiry = room.invited.pop(casefold(conn.name), None)
    return expiry is not None and expiry > time.monotonic()


# INVITE <nickname> <channel>
def invite(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    nick, name = msg.params[0], msg.params[1]
    guest = server.state.find_nick(nick)
    if guest is None:
        conn.numeric(num.ERR_NOSUCHNICK, nick, "No such nick/channel")
        return None
    room = server.state.find_channel(name)
    if room is None or not visible_to(room, conn):
        conn.numeric(num.ERR_NOSUCHCHANNEL, name, "No such channel")
        return None
    if conn not in room.members:
        conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return None
    if "i" in room.flags and not is_operator(room, conn):
        conn.numeric(num.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
        return None
    if guest in room.members:
        conn.numeric(num.ERR_USERONCHANNEL, guest.name, room.name, "is already on channel")
        return None
    now = time.monotonic()
    room.invited = {k: v for k, v in room.invited.items() if v > now}  # expired ones go
    if len(room.invited) >= server.settings.max_targets * 25:
        room.invited.pop(next(iter(room.invited)))  # bounded: the oldest goes
    room.invited[casefold(guest.name)] = now + INVITE_TTL
    conn.numeric(num.RPL_INVITING, guest.name, room.name)
    out = Outgoing(conn.source, "INVITE", [guest.name, room.name], account=conn.account)
    guest.send(out.line_for(guest))
    for member in room.members:  # invite-notify: the room hears of it too
        if member is not conn and "invite-notify" in member.caps:
            member.send(out.line_for(member))
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
        out = Outgoing(conn.source, "PART", params, msgid=new_msgid(), account=conn.account)
        out.send_to(room.members)
        keep_event(server, (room,), out, conn.source, conn.account, "PART", params[1:])
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
    if len(wanted) > 1:  # RFC 2812 and Modern IRC: the rooms' 353s, then one 366
        for name in wanted:
            room = server.state.find_channel(name)
            if room is not None:
                send_names(server, conn, room, end=False)
        conn.numeric(num.RPL_ENDOFNAMES, ",".join(wanted), "End of /NAMES list")
        return None
    room = server.state.find_channel(wanted[0]) if wanted else None
    if room is None:
        conn.numeric(num.RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")
    else:
        send_names(server, conn, room)
    return None


# TOPIC <channel> [<topic>]
def topic(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    name = msg.params[0]
    room = server.state.find_channel(name)
    if room is None or not visible_to(room, conn):
        conn.numeric(num.ERR_NOSUCHCHANNEL, name, "No such channel")
        return None
    if len(msg.params) < 2:
        _send_topic(conn, room)
        return None
    if conn not in room.members:
        conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return None
    if "t" in room.flags and not is_operator(room, conn):
        conn.numeric(num.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
        return None
    text = msg.params[1][: server.settings.topiclen]
    if room.owner is not None and server.registry is not None:
        return _stored_topic(server.registry, conn, room, text)
    room.topic = text
    room.topic_by = conn.source
    room.topic_at = time.time()
    _announce_topic(server, conn, room)
    return None


def _announce_topic(server: ChatServer, conn: Session, room: Channel) -> None:
    out = Outgoing(conn.source, "TOPIC", [room.name, room.topic], msgid=new_msgid(),
                   account=conn.account)
    out.send_to(room.members)
    keep_event(server, (room,), out, conn.source, conn.account, "TOPIC", [room.topic])


async def _stored_topic(registry: RoomRegistry, conn: Session, room: Channel, text: str
                        ) -> None:
    """A registered room's topic: committed, then announced."""
    if await registry.set_topic(conn, room, text):
        _announce_topic(registry.server, conn, room)


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
        mask = room_key(arg)
        return lambda room: wildcard_match(mask, room_key(room.name))
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
        if (room.members or room.owner) and visible_to(room, conn) and want(room):
            conn.numeric(num.RPL_LIST, room.name, str(len(room.members)), room.topic)
            await conn.paced()
    conn.numeric(num.RPL_LISTEND, "End of /LIST")


# MODE <target> [<modestring> [<mode arguments>...]]
def mode(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    target = msg.params[0]
    if is_channel(target):
        return _room_mode(server, conn, msg, target)
    _user_mode(server, conn, msg, target)
    return None


def _send_list(conn: Session, room: Channel, letter: str) -> None:
    """367/368, 348/349 or 346/347: every entry with its setter and time."""
    item, end, text = LISTS[letter]
    for entry in room.list_for(letter).values():
        conn.numeric(item, room.name, entry.mask, entry.set_by, str(int(entry.set_at)))
    conn.numeric(end, room.name, text)


def _room_mode(
    server: ChatServer, conn: Session, msg: Message, target: str
) -> Awaitable[None] | None:
    room = server.state.find_channel(target)
    if room is None or not visible_to(room, conn):
        conn.numeric(num.ERR_NOSUCHCHANNEL, target, "No such channel")
        return None
    change = msg.param(1)
    if not change:
        conn.numeric(num.RPL_CHANNELMODEIS, room.name,
                     *mode_string(room, show_key=conn in room.members))
        conn.numeric(num.RPL_CREATIONTIME, room.name, str(int(room.created)))
        return None
    changes, errors = parse_changes(change, list(msg.params[2:]))
    for error in errors:
        if error.kind == "list":  # "MODE #room b": the list itself
            _send_list(conn, room, error.letter)
        elif error.kind == "unknown":
            conn.numeric(num.ERR_UNKNOWNMODE, error.letter, "is not a room mode chaton supports")
        elif error.kind == "param":
            conn.numeric(num.ERR_NEEDMOREPARAMS, "MODE", f"Mode {error.letter} needs a parameter")
        else:
            conn.numeric(num.ERR_INVALIDMODEPARAM, room.name, error.letter, "*",
                         f"Invalid value for mode {error.letter}")
    if not changes:
        return None
    if not is_operator(room, conn):
        if conn not in room.members and not conn.is_admin:
            conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            return None
        if not admin_now(server, conn):
            conn.numeric(num.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            return None
        return _override(server, conn, room, changes)  # an admin in someone else's room
    return _apply_mode(server, conn, room, changes)


async def _override(server: ChatServer, conn: Session, room: Channel, changes: list[Change]
                    ) -> None:
    """An admin's MODE in a room it does not operate: audited first, then applied."""
    accounts = server.accounts
    what = " ".join(format_changes(changes))
    if accounts is not None and not await accounts.record_admin_action(
        conn, "MODE", "mode", f"{room.name} {what}", "override"
    ):
        return
    if server.state.find_channel(room.name) is room:  # it may have emptied meanwhile
        pending = _apply_mode(server, conn, room, changes)
        if pending is not None:
            await pending


def _apply_mode(
    server: ChatServer, conn: Session, room: Channel, changes: list[Change]
) -> Awaitable[None] | None:
    registry = server.registry
    if room.owner is not None and registry is not None and any(
        c.letter not in "ov" for c in changes
    ):
        return _apply_stored(registry, conn, room, changes)
    members = {casefold(m.name): m for m in room.members}
    applied, missing = apply(room, changes, members, by=conn.source, at=time.time())
    _mode_done(conn, room, applied, missing)
    return None


async def _apply_stored(
    registry: RoomRegistry, conn: Session, room: Channel, changes: list[Change]
) -> None:
    """A registered room: the stored part (flags, key, limit, lists) is committed first,
    member status (o, v) applied after it; one MODE line announces both."""
    done = await registry.change_modes(conn, room, [c for c in changes if c.letter not in "ov"])
    if done is None:
        return
    stored, errors = done
    members = {casefold(m.name): m for m in room.members}
    live, missing = apply(room, [c for c in changes if c.letter in "ov"], members,
                          by=conn.source, at=time.time())
    _mode_done(conn, room, stored + live, errors + missing)


def _mode_done(
    conn: Session, room: Channel, applied: list[Change], missing: list[ModeError]
) -> None:
    for error in missing:
        if error.kind == "full":
            conn.numeric(num.ERR_BANLISTFULL, room.name, error.arg,
                         f"Channel {error.letter} list is full ({MAX_LIST})")
        else:
            conn.numeric(num.ERR_USERNOTINCHANNEL, error.arg, room.name,
                         "They aren't on that channel")
    if applied:
        changed = format_changes(applied)
        out = Outgoing(conn.source, "MODE", [room.name, *changed], msgid=new_msgid(),
                       account=conn.account)
        out.send_to(room.members)
        keep_event(conn.server, (room,), out, conn.source, conn.account, "MODE", changed)
        if conn not in room.members:
            conn.send(out.line_for(conn))


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
                    server.invisible.add(conn)
                    added.append("i")
                elif not adding and "i" in conn.user_modes:
                    conn.user_modes = conn.user_modes - {"i"}
                    server.invisible.discard(conn)
                    removed.append("i")
            elif letter == "B":  # a bot (ISUPPORT BOT=B): WHO, WHOIS and a message tag
                if adding != ("B" in conn.user_modes):
                    conn.user_modes = conn.user_modes ^ {"B"}
                    (added if adding else removed).append("B")
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
    out = Outgoing(by, "KICK", [room.name, victim.name, reason], msgid=new_msgid())
    out.send_to(room.members)
    keep_event(server, (room,), out, by, None, "KICK", [victim.name, reason])
    server.state.part(victim, room)


# KICK <channel>{,<channel>} <user>{,<user>} [<comment>]
def kick(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    """One room and several users, or as many rooms as users, in pairs (RFC 2812)."""
    rooms = split_targets(msg.params[0])
    if len(rooms) <= 1:
        return _kick_in(server, conn, msg, rooms[0] if rooms else msg.params[0])
    nicks = msg.params[1].split(",")
    if len(nicks) != len(rooms):
        conn.numeric(num.ERR_NEEDMOREPARAMS, "KICK",
                     "Give one room, or as many rooms as nicknames")
        return None
    if len(rooms) > server.settings.max_targets:
        conn.numeric(num.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets")
        return None
    pending = [p for room, nick in zip(rooms, nicks, strict=True) if (p := _kick_in(
        server, conn, Message("KICK", (room, nick, *msg.params[2:])), room)) is not None]
    return _all(pending) if pending else None


async def _all(pending: list[Awaitable[None]]) -> None:
    for each in pending:
        await each


# KICK <channel> <user>{,<user>} [<comment>]   (room operators; admins anywhere, audited)
def _kick_in(server: ChatServer, conn: Session, msg: Message, name: str
             ) -> Awaitable[None] | None:
    room = server.state.find_channel(name)
    if room is None or (not visible_to(room, conn) and not conn.is_admin):
        conn.numeric(num.ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
        return None
    admin = admin_now(server, conn)
    if conn not in room.members and not admin:
        conn.numeric(num.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return None
    if not is_operator(room, conn) and not admin:
        conn.numeric(num.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
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
    if not victims:
        return None
    if not admin:  # a room operator in its own room: nothing to audit
        for victim in victims:
            kick_from(server, room, victim, conn.source, reason)
        return None
    return _kick(server, conn, room, victims, reason)


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
