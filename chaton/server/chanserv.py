"""ChanServ: the room service every IRC client knows (``/msg ChanServ REGISTER #room``).

Commands (``HELP`` lists them): ``REGISTER``, ``INFO``, ``DROP``, ``OP``/``DEOP``,
``VOICE``/``DEVOICE``, ``AMODE`` (standing grants) and ``SET <room> OWNER``. Replies are
NOTICEs from ``ChanServ``; ``PRIVMSG ChanServ``, ``CHANSERV`` and ``CS`` all reach it.

Invariants:
- Every decision reads the room's *current* record (owner, grants) and the asker's
  *current* admin powers; nothing from an earlier answer is trusted.
- Owners act on their rooms; admins on any room, and what they do in a room they do not
  own is audited. A standing ``o`` grant lets its account ``OP`` itself; ``v`` lets it
  ``VOICE`` itself.
- Register, drop, owner and grant changes are committed (with their audit line) before
  they are confirmed.
- A secret room's name is not confirmed to a non-member: "not registered" and "no such
  room" read the same to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaton.config import retention_seconds
from chaton.protocol.durations import format_duration
from chaton.protocol.message import Message
from chaton.protocol.names import casefold, room_key
from chaton.server.authority import admin_now
from chaton.server.room_modes import OP, VOICE, Change, mode_string
from chaton.server.room_registry import ADMINS_OWNER, CHANSERV_SOURCE, announce_modes, record_of
from chaton.server.rooms import is_operator, visible_to
from chaton.store import RoomRecord, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.room_registry import RoomRegistry
    from chaton.server.session import Session
    from chaton.server.state import Channel

    _Handler = Callable[
        [ChatServer, RoomRegistry, Session, list[str]], Awaitable[None] | None
    ]

__all__ = ["NICK", "command", "handle"]

log = logging.getLogger("chaton")

NICK = "ChanServ"

HELP = (
    "ChanServ keeps registered rooms: their owner, topic, modes, lists and standing "
    "grants survive restarts.",
    "REGISTER <#room>            register a room you operate (you must be logged in)",
    "INFO <#room>                who owns a room and what it keeps",
    "DROP <#room>                unregister a room (owner or admin)",
    "OP|DEOP <#room> [nick]      give or take operator status (owner, o grant, admin)",
    "VOICE|DEVOICE <#room> [nick] give or take voice (owner, o/v grant, admin)",
    "AMODE <#room> [+o|-o|+v|-v <account>]  standing grants (owner or admin)",
    "SET <#room> OWNER <account> give a room to another account (owner or admin)",
    "SET <#room> RETENTION <30d|0|default> how long the room keeps its history",
)


def _say(conn: Session, text: str) -> None:
    conn.send_msg("NOTICE", conn.name, text, source=CHANSERV_SOURCE)


# CHANSERV <command> [args]   |   CS <command> [args]
def command(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    return handle(server, conn, " ".join(msg.params))


def handle(server: ChatServer, conn: Session, text: str) -> Awaitable[None] | None:
    """Run one ChanServ command (``PRIVMSG ChanServ :<text>``)."""
    registry = server.registry
    if registry is None:
        _say(conn, "Rooms cannot be registered on this server (no database)")
        return None
    words = text.split()
    if not words or words[0].upper() == "HELP":
        for line in HELP:
            _say(conn, line)
        return None
    verb, args = words[0].upper(), words[1:]
    handler = _HANDLERS.get(verb)
    if handler is None:
        _say(conn, f"Unknown command {verb[:20]}; /msg ChanServ HELP lists the commands")
        return None
    if not args:
        _say(conn, f"Which room? /msg ChanServ {verb} <#room>")
        return None
    return handler(server, registry, conn, args)


# --- who may do what -------------------------------------------------------------------------


def _room(server: ChatServer, conn: Session, name: str) -> Channel | None:
    room = server.state.find_channel(name)
    if room is None or not (visible_to(room, conn) or admin_now(server, conn)):
        _say(conn, f"No such room {name[:60]}")
        return None
    return room


def _record(registry: RoomRegistry, conn: Session, room: Channel) -> RoomRecord | None:
    """The room's current record, read now; told to ``conn`` when it is not registered."""
    try:
        record = registry.store.get_room(room_key(room.name))
    except StoreError as exc:
        _say(conn, f"Cannot read the room's record now ({exc}); try again")
        return None
    if record is None:
        _say(conn, f"{room.name} is not registered; REGISTER it first")
    return record


def _registered(server: ChatServer, registry: RoomRegistry, conn: Session, name: str
                ) -> tuple[Channel, RoomRecord] | None:
    """The room ``name`` and its current record; told to ``conn`` when there is none."""
    room = _room(server, conn, name)
    if room is None:
        return None
    record = _record(registry, conn, room)
    return None if record is None else (room, record)


def _grants_text(record: RoomRecord) -> str:
    grants = [f"{account}(+{_letters(bits)})" for account, bits in record.grants.items()]
    return " ".join(grants) if grants else "none"


def _owns(registry: RoomRegistry, conn: Session, record: RoomRecord) -> bool:
    return registry.is_owner(record.owner, conn)


def _manages(server: ChatServer, registry: RoomRegistry, conn: Session, record: RoomRecord,
             what: str) -> bool:
    """Owner or admin; told otherwise."""
    if _owns(registry, conn, record) or admin_now(server, conn):
        return True
    _say(conn, f"Only the owner of {record.name} or an admin may {what}")
    return False


def _owner_text(owner: str) -> str:
    return "the server's admins" if owner == ADMINS_OWNER else owner


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _audited(server: ChatServer, registry: RoomRegistry, conn: Session, record: RoomRecord,
                   action: str, detail: str) -> bool:
    """An admin acting in a room it does not own: audit first (False: not committed)."""
    if _owns(registry, conn, record) or server.accounts is None:
        return True
    return await server.accounts.record_admin_action(
        conn, "PRIVMSG", action, f"{record.name} {detail}".strip(), "override"
    )


# --- the commands ----------------------------------------------------------------------------


def _register(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
              ) -> Awaitable[None] | None:
    room = _room(server, conn, args[0])
    if room is None:
        return None
    if conn.account is None:
        _say(conn, "Log in to an account first: a registered room belongs to an account")
        return None
    if not (is_operator(room, conn) or admin_now(server, conn)):
        _say(conn, f"You must be an operator of {room.name} to register it")
        return None
    if room.owner is not None:
        _say(conn, f"{room.name} is already registered to {_owner_text(room.owner)}")
        return None
    return _do_register(server, registry, conn, room)


async def _do_register(server: ChatServer, registry: RoomRegistry, conn: Session, room: Channel
                       ) -> None:
    assert conn.account is not None
    record = record_of(room, casefold(conn.account), time.time())
    audit = server.accounts.audit_entry(conn, "room-register", room.name, "") if (
        server.accounts is not None) else None
    limit = server.settings.rooms_registered_per_account
    try:
        outcome = await registry.writer.call(
            lambda st: st.register_owned(record, limit, audit=audit)
        )
    except StoreError as exc:
        _say(conn, f"{room.name} was not registered: the database refused ({exc})")
        return
    if outcome == "limit":
        _say(conn, f"Your account already owns {limit} rooms (rooms_registered_per_account)")
        return
    if outcome == "taken":
        _say(conn, f"{room.name} is already registered")
        return
    registry.room_changed(record.key)
    _say(conn, f"{room.name} is registered to {conn.account}: its topic, modes, lists and "
         "grants are kept from now on")
    log.info("room-register room=%s account=%s", room.name, conn.account)


def _info(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
          ) -> Awaitable[None] | None:
    found = _registered(server, registry, conn, args[0])
    if found is None:
        return None
    room, record = found
    _say(conn, f"{record.name} is owned by {_owner_text(record.owner)}, registered "
         f"{_when(record.registered)}")
    if record.topic:
        _say(conn, f"Topic: {record.topic} (set by {record.topic_by.split('!')[0]})")
    shown = " ".join(mode_string(room, show_key=conn in room.members))
    _say(conn, f"Modes: {shown}")
    if _owns(registry, conn, record) or admin_now(server, conn):
        _say(conn, "Standing grants: " + _grants_text(record))
    return None


def _letters(bits: int) -> str:
    return ("o" if bits & OP else "") + ("v" if bits & VOICE else "")


def _drop(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
          ) -> Awaitable[None] | None:
    found = _registered(server, registry, conn, args[0])
    if found is None or not _manages(server, registry, conn, found[1], "drop it"):
        return None
    return _do_drop(server, registry, conn, found[1])


async def _do_drop(server: ChatServer, registry: RoomRegistry, conn: Session,
                   record: RoomRecord) -> None:
    audit = server.accounts.audit_entry(conn, "room-drop", record.name, "") if (
        server.accounts is not None) else None
    try:
        dropped = await registry.writer.run("drop_room", record.key, audit=audit)
    except StoreError as exc:
        _say(conn, f"{record.name} was not dropped: the database refused ({exc})")
        return
    registry.room_changed(record.key)
    if dropped:
        server.notice_admins(f"{conn.name} dropped the registration of {record.name}")
    _say(conn, f"{record.name} is no longer registered" if dropped
         else f"{record.name} was not registered")


def _status(bit: int, adding: bool) -> _Handler:
    def run(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
            ) -> Awaitable[None] | None:
        found = _registered(server, registry, conn, args[0])
        if found is None:
            return None
        room, record = found
        target = server.state.find_nick(args[1]) if len(args) > 1 else conn
        if target is None or target not in room.members:
            _say(conn, f"{args[1] if len(args) > 1 else conn.name} is not in {room.name}")
            return None
        granted = record.grants.get(casefold(conn.account), 0) if conn.account else 0
        may = _owns(registry, conn, record) or admin_now(server, conn) or (
            target is conn and granted & (OP if bit == OP else OP | VOICE)
        )
        if not may:
            _say(conn, f"You have no standing grant in {room.name} for that")
            return None
        return _set_status(server, registry, conn, room, record, target, bit, adding)

    return run


async def _set_status(server: ChatServer, registry: RoomRegistry, conn: Session, room: Channel,
                      record: RoomRecord, target: Session, bit: int, adding: bool) -> None:
    letter = "o" if bit == OP else "v"
    if not await _audited(server, registry, conn, record, f"room-{'+' if adding else '-'}"
                          f"{letter}", target.name):
        return
    old = room.members.get(target)
    if old is None:
        return  # left meanwhile
    new = old | bit if adding else old & ~bit
    if new != old:
        room.members[target] = new
        announce_modes(server, room, CHANSERV_SOURCE, [Change(adding, letter, target.name)])


def _amode(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
           ) -> Awaitable[None] | None:
    found = _registered(server, registry, conn, args[0])
    if found is None or not _manages(server, registry, conn, found[1], "see or change grants"):
        return None
    room, record = found
    if len(args) == 1:
        _say(conn, f"Standing grants in {record.name}: " + _grants_text(record))
        return None
    change = args[1]
    if len(args) < 3 or change not in ("+o", "-o", "+v", "-v"):
        _say(conn, "Usage: AMODE <#room> +o|-o|+v|-v <account>")
        return None
    account = server.authority.account(args[2]) if server.authority is not None else None
    if account is None and change[0] == "+":
        _say(conn, f"There is no account {args[2][:40]}")
        return None
    return _do_amode(server, registry, conn, room, record, change,
                     casefold(account.name if account else args[2]))


async def _do_amode(server: ChatServer, registry: RoomRegistry, conn: Session, room: Channel,
                    record: RoomRecord, change: str, account: str) -> None:
    bit = OP if change[1] == "o" else VOICE

    def edit(current: RoomRecord) -> RoomRecord:  # on the writer thread
        grants = dict(current.grants)
        bits = grants.get(account, 0)
        grants[account] = bits | bit if change[0] == "+" else bits & ~bit
        if not grants[account]:
            del grants[account]
        return replace(current, grants=grants)

    if not await _audited(server, registry, conn, record, "room-amode", f"{change} {account}"):
        return
    try:
        stored = await registry.write(room, edit)
    except StoreError as exc:
        _say(conn, f"The grant was not changed: the database refused ({exc})")
        return
    registry.settled(room, stored, [])
    if stored is None:
        _say(conn, f"{room.name} is no longer registered")
        return
    _say(conn, f"{account} now has standing +{_letters(stored.grants.get(account, 0)) or 'none'}"
         f" in {room.name}")
    if change[0] == "+":  # those present get it now; a removal waits for their next join
        for member, status in list(room.members.items()):
            if member.account and casefold(member.account) == account and not status & bit:
                room.members[member] = status | bit
                announce_modes(server, room, CHANSERV_SOURCE,
                               [Change(True, change[1], member.name)])


def _set(server: ChatServer, registry: RoomRegistry, conn: Session, args: list[str]
         ) -> Awaitable[None] | None:
    found = _registered(server, registry, conn, args[0])
    if found is None or not _manages(server, registry, conn, found[1], "change its settings"):
        return None
    room, record = found
    if len(args) == 3 and args[1].upper() == "RETENTION":
        return _set_retention(server, registry, conn, room, args[2])
    if len(args) < 3 or args[1].upper() != "OWNER":
        _say(conn, "Usage: SET <#room> OWNER <account> | SET <#room> RETENTION <30d|0|default>")
        return None
    account = server.authority.account(args[2]) if server.authority is not None else None
    if account is None:
        _say(conn, f"There is no account {args[2][:40]}")
        return None
    return _do_set_owner(server, registry, conn, room, record, casefold(account.name))


def _set_retention(server: ChatServer, registry: RoomRegistry, conn: Session, room: Channel,
                   text: str) -> Awaitable[None] | None:
    """The room's own history retention: a duration, 0 (forever) or ``default``."""
    seconds: float | None = None
    if text.lower() != "default":
        try:
            seconds = retention_seconds(text)
        except ValueError as why:
            _say(conn, f"Retention: {why} (or 0 to keep forever, default for the server's)")
            return None
    return _do_set_retention(server, registry, conn, room, seconds)


async def _do_set_retention(server: ChatServer, registry: RoomRegistry, conn: Session,
                            room: Channel, seconds: float | None) -> None:
    shown = "the server's" if seconds is None else (
        "forever" if seconds == 0 else format_duration(seconds))
    audit = server.accounts.audit_entry(conn, "room-retention", f"{room.name} {shown}", "") if (
        server.accounts is not None) else None
    key = room_key(room.name)
    try:
        done = await registry.writer.call(lambda st: st.set_room_retention(key, seconds, audit))
    except StoreError as exc:
        _say(conn, f"The retention was not changed: the database refused ({exc})")
        return
    if not done:
        _say(conn, f"{room.name} is no longer registered")
    elif seconds is None:
        _say(conn, f"{room.name} now keeps its history as long as the server's setting says")
    elif seconds == 0:
        _say(conn, f"{room.name} now keeps its history forever")
    else:
        _say(conn, f"{room.name} now keeps its history for {shown} (older messages go at "
                   "the next purge)")


async def _do_set_owner(server: ChatServer, registry: RoomRegistry, conn: Session,
                        room: Channel, record: RoomRecord, owner: str) -> None:
    audit = server.accounts.audit_entry(conn, "room-owner", f"{room.name} {owner}", "") if (
        server.accounts is not None) else None
    try:
        stored = await registry.write(room, lambda r: replace(r, owner=owner), audit=audit)
    except StoreError as exc:
        _say(conn, f"The owner was not changed: the database refused ({exc})")
        return
    registry.settled(room, stored, [])
    _say(conn, f"{room.name} now belongs to {owner}" if stored is not None
         else f"{room.name} is no longer registered")


_HANDLERS: dict[str, _Handler] = {
    "REGISTER": _register,
    "INFO": _info,
    "DROP": _drop,
    "OP": _status(OP, True),
    "DEOP": _status(OP, False),
    "VOICE": _status(VOICE, True),
    "DEVOICE": _status(VOICE, False),
    "AMODE": _amode,
    "SET": _set,
}
