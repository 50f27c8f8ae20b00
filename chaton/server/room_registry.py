"""Registered rooms: the part of a room that must survive a restart, kept in SQLite.

A registered room has an owner (an account, or the admins for the default room) and keeps
its topic (with setter and time), modes, key, limit, b/e/I lists and standing grants. The
live :class:`~chaton.server.state.Channel` mirrors the committed record.

Invariants:
- Acknowledged means committed: a MODE or TOPIC that changes a registered room's stored
  part is written first, announced after the commit. If the write fails, the room is left
  as it was and the sender is told ``FAIL <command> STORE_ERROR``.
- Writes are applied to the room's *current* row inside one write transaction
  (:meth:`chaton.store.Store.update_room`): an edit by the CLI committed meanwhile is built
  upon, never overwritten; the live room then adopts the committed record, and anything
  in it that the sender did not change is announced as coming from ChanServ.
- Changes made elsewhere (the CLI) arrive through the change feed; a room with a write in
  flight is re-read after that write, so a poll never announces a change twice.
- A registered room stays in ``ServerState.channels`` while empty; dropping an empty one
  removes it.
- Standing grants and ownership come from the record, never from a cached login: a
  ChanServ command re-reads the row before it acts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from chaton.protocol.names import casefold, room_key, room_name
from chaton.server.authority import admin_now
from chaton.server.history import keep_event
from chaton.server.lines import Outgoing, new_msgid
from chaton.server.room_modes import (
    LISTS,
    MAX_MODES,
    OP,
    VOICE,
    Change,
    ListEntry,
    ModeError,
    apply,
    format_changes,
)
from chaton.server.state import Channel
from chaton.store import AuditEntry, RoomRecord, Store, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.writer import StoreWriter

__all__ = [
    "ADMINS_OWNER", "CHANSERV_SOURCE", "RoomRegistry", "adopt", "lists_of", "record_of",
    "scratch_of", "stored_part",
]

log = logging.getLogger("chaton")

#: The owner of a room that belongs to the server's admins (the default room): any account
#: that is an admin *now* counts as its owner. ``@`` cannot appear in an account name.
ADMINS_OWNER = "@admins"
#: Where changes not made by a user present come from: the room service.
CHANSERV_SOURCE = "ChanServ!ChanServ@services"


def lists_of(room: Channel) -> dict[str, list[tuple[str, str, float]]]:
    return {
        letter: [(e.mask, e.set_by, e.set_at) for e in room.list_for(letter).values()]
        for letter in LISTS if room.list_for(letter)
    }


def record_of(room: Channel, owner: str, registered: float) -> RoomRecord:
    """The record that registers ``room`` as it is now."""
    return RoomRecord(
        key=room_key(room.name), name=room.name, owner=owner, registered=registered,
        topic=room.topic, topic_by=room.topic_by, topic_at=room.topic_at,
        flags="".join(sorted(room.flags)), secret_key=room.key, user_limit=room.limit,
        grants=dict(room.grants), lists=lists_of(room),
    )


def scratch_of(record: RoomRecord) -> Channel:
    """A memberless room holding ``record``'s stored part (to apply mode changes to)."""
    room = Channel(record.name, created=record.registered)
    _copy_stored(room, record)
    return room


def _copy_stored(room: Channel, record: RoomRecord) -> None:
    room.name = record.name
    room.owner = record.owner
    room.grants = dict(record.grants)
    room.topic, room.topic_by, room.topic_at = record.topic, record.topic_by, record.topic_at
    room.flags = frozenset(record.flags)
    room.key, room.limit = record.secret_key, record.user_limit
    for letter in LISTS:
        entries = room.list_for(letter)
        entries.clear()
        for mask, set_by, set_at in record.lists.get(letter, []):
            entries[casefold(mask)] = ListEntry(mask, set_by, set_at)


def stored_part(room: Channel, record: RoomRecord) -> RoomRecord:
    """``record`` with the stored part replaced by ``room``'s."""
    return replace(
        record, owner=room.owner or record.owner, grants=dict(room.grants), topic=room.topic,
        topic_by=room.topic_by, topic_at=room.topic_at, flags="".join(sorted(room.flags)),
        secret_key=room.key, user_limit=room.limit, lists=lists_of(room),
    )


def adopt(room: Channel, record: RoomRecord) -> tuple[list[Change], bool]:
    """Make ``room``'s stored part ``record``'s; return the mode changes that made, in the
    form :func:`room_modes.apply` reports them, and whether the topic changed."""
    diff: list[Change] = []
    new_flags = frozenset(record.flags)
    diff += [Change(False, f) for f in sorted(room.flags - new_flags)]
    diff += [Change(True, f) for f in sorted(new_flags - room.flags)]
    if room.key != record.secret_key:
        diff.append(Change(True, "k", record.secret_key) if record.secret_key is not None
                    else Change(False, "k", "*"))
    if room.limit != record.user_limit:
        diff.append(Change(True, "l", str(record.user_limit)) if record.user_limit is not None
                    else Change(False, "l"))
    for letter in LISTS:
        before = room.list_for(letter)
        after = {casefold(m): m for m, _, _ in record.lists.get(letter, [])}
        diff += [Change(False, letter, e.mask) for k, e in before.items() if k not in after]
        diff += [Change(True, letter, m) for k, m in after.items() if k not in before]
    topic_changed = (room.topic, room.topic_by) != (record.topic, record.topic_by)
    _copy_stored(room, record)
    return diff, topic_changed


def announce_modes(server: ChatServer, room: Channel, source: str,
                   changes: list[Change]) -> None:
    """MODE lines to the room, at most ``MAX_MODES`` changes each (kept in its history)."""
    for start in range(0, len(changes), MAX_MODES):
        changed = format_changes(changes[start:start + MAX_MODES])
        out = Outgoing(source, "MODE", [room.name, *changed], msgid=new_msgid())
        out.send_to(room.members)
        keep_event(server, (room,), out, source, None, "MODE", changed)


class RoomRegistry:
    """Loads registered rooms, writes their changes through, follows the change feed."""

    def __init__(self, server: ChatServer, store: Store, writer: StoreWriter) -> None:
        self.server = server
        self.store = store  # the loop's reader connection
        self.writer = writer

    # --- start ----------------------------------------------------------------------------
    def load(self) -> int:
        """Put every registered room into the server's state (empty rooms included)."""
        records = self.store.list_rooms()
        for record in records:
            room = self.server.state.channels.get(record.key)
            if room is None:
                room = self.server.state.channels[record.key] = scratch_of(record)
            else:
                adopt(room, record)
        return len(records)

    def register_default(self, name: str) -> bool:
        """On a database's first start, register the default room, owned by the admins."""
        name = room_name(name, self.server.settings.channellen)
        record = RoomRecord(key=room_key(name), name=name, owner=ADMINS_OWNER,
                            registered=time.time())
        return self.store.register_once("default-room", record)

    # --- who is what ----------------------------------------------------------------------
    def is_owner(self, owner: str, conn: Session) -> bool:
        """Is ``conn`` the owner ``owner`` names (its login account, or an admin now)?"""
        if owner == ADMINS_OWNER:
            return admin_now(self.server, conn)
        return conn.account is not None and casefold(conn.account) == owner

    def status_on_join(self, room: Channel, conn: Session) -> int:
        """The status bits a member gets on joining a registered room: its standing grant,
        operator for the owner."""
        status = room.grants.get(casefold(conn.account), 0) if conn.account else 0
        if room.owner is not None and self.is_owner(room.owner, conn):
            status |= OP
        return status & (OP | VOICE)

    # --- writing through ------------------------------------------------------------------
    async def write(
        self, room: Channel, change: Callable[[RoomRecord], RoomRecord],
        audit: AuditEntry | None = None,
    ) -> RoomRecord | None:
        """Commit ``change`` to ``room``'s current record; ``None`` if it is no longer
        registered. Raises :class:`StoreError` if the commit failed (nothing changed)."""
        key = room_key(room.name)
        room.writes += 1
        try:
            return await self.writer.call(lambda st: st.update_room(key, change, audit=audit))
        finally:
            room.writes -= 1

    def settled(self, room: Channel, record: RoomRecord | None, own: list[Change],
                *, own_topic: bool = False) -> None:
        """After a write: adopt what was committed, and announce from ChanServ whatever in
        it the writer did not change itself (``own``, announced by the caller: an edit by
        the CLI not yet polled); re-read the room if the feed skipped it meanwhile."""
        if record is not None:
            diff, topic_changed = adopt(room, record)
            mine = set(own)
            others = [c for c in diff if c not in mine]
            if others:
                announce_modes(self.server, room, CHANSERV_SOURCE, others)
            if topic_changed and not own_topic:
                out = Outgoing(CHANSERV_SOURCE, "TOPIC", [room.name, room.topic],
                               msgid=new_msgid())
                out.send_to(room.members)
                keep_event(self.server, (room,), out, CHANSERV_SOURCE, None, "TOPIC",
                           [room.topic])
        if room.writes == 0 and room.stale:
            room.stale = False
            self.room_changed(room_key(room.name))

    async def change_modes(
        self, conn: Session, room: Channel, changes: list[Change]
    ) -> tuple[list[Change], list[ModeError]] | None:
        """Apply the stored part of ``changes`` (flags, key, limit, lists) to the record;
        return what was applied and the errors, or ``None`` when the write failed (the
        sender was told)."""
        from chaton.server.accounts import store_failure

        result: list[tuple[list[Change], list[ModeError]]] = []
        by, at = conn.source, time.time()

        def change(record: RoomRecord) -> RoomRecord:  # on the writer thread
            scratch = scratch_of(record)
            result[:] = [apply(scratch, changes, {}, by=by, at=at)]
            return stored_part(scratch, record)

        try:
            record = await self.write(room, change)
        except StoreError as exc:
            log.error("room-write-failed room=%s: %s", room.name, exc)
            store_failure(conn, "MODE", "Mode not changed", exc)
            return None
        if record is None:  # dropped meanwhile: the change applies to the live room only
            return apply(room, changes, {}, by=by, at=at)
        applied, errors = result[0] if result else ([], [])
        self.settled(room, record, applied)
        return applied, errors

    async def set_topic(self, conn: Session, room: Channel, text: str) -> bool:
        """Commit a new topic; False if the write failed (the sender was told)."""
        from chaton.server.accounts import store_failure

        by, at = conn.source, time.time()
        try:
            record = await self.write(
                room, lambda r: replace(r, topic=text, topic_by=by, topic_at=at)
            )
        except StoreError as exc:
            log.error("room-write-failed room=%s: %s", room.name, exc)
            store_failure(conn, "TOPIC", "Topic not changed", exc)
            return False
        if record is None:
            room.topic, room.topic_by, room.topic_at = text, by, at
        self.settled(room, record, [], own_topic=True)
        return True

    # --- the change feed ------------------------------------------------------------------
    def reload_all(self) -> None:
        """After a gap in the feed: every registered room, live or stored, re-read."""
        live = {k for k, room in self.server.state.channels.items() if room.owner is not None}
        for key in sorted(live | {r.key for r in self.store.list_rooms()}):
            self.room_changed(key)

    def room_changed(self, key: str) -> None:
        """Bring the live room ``key`` to its current record (or unregister it)."""
        state = self.server.state
        room = state.channels.get(key)
        if room is not None and room.writes:
            room.stale = True  # our own write is in flight: read again after it
            return
        record = self.store.get_room(key)
        if record is None:
            if room is not None and room.owner is not None:
                room.owner, room.grants = None, {}
                Outgoing(CHANSERV_SOURCE, "NOTICE", [room.name, "This room is no longer "
                         "registered"]).send_to(room.members)
                if not room.members:
                    del state.channels[key]
            return
        if room is None:
            state.channels[key] = scratch_of(record)
            return
        self.settled(room, record, [])  # nothing of it is ours: all announced by ChanServ
