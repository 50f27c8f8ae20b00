"""``MARKREAD`` (IRCv3 ``draft/read-marker``): where an account stopped reading, per
conversation, kept in the store and the same on all of its devices.

Invariants:
- A marker belongs to an account (guests have none: ``ACCOUNT_REQUIRED``) and only ever
  moves forward: the store keeps the later of the old and the new time, and what is
  announced is what the store then holds, so two devices racing end up agreeing.
- A marker can be set or read only for a conversation the asker may read now (the same
  rule as CHATHISTORY); every session of the account that negotiated the capability is
  told of a change, the one that made it included.
- On JOIN a client with the capability is told the room's marker, beside its other
  commands (a read of the store never holds its input).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton.history_store import READ_MARKER, HistoryStore
from chaton.protocol.names import casefold
from chaton.server.chathistory import Readable, parse_ref, readable, resolve
from chaton.server.history import party, room_target
from chaton.server.lines import server_time

if TYPE_CHECKING:
    from chaton.protocol.message import Message
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["READ_MARKER_CAP", "marker_on_join", "markread"]

log = logging.getLogger("chaton")

READ_MARKER_CAP = "draft/read-marker"
_tasks: set[asyncio.Future[None]] = set()


def _fail(conn: Session, code: str, target: str, why: str) -> None:
    conn.send_msg("FAIL", "MARKREAD", code, target, why)


def _said(conn: Session, target: str, at: float | None) -> None:
    conn.send_msg("MARKREAD", target, "*" if at is None else "timestamp=" + server_time(at))


# MARKREAD <target> [timestamp=<time>]
def markread(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    target = msg.params[0]
    if server.history is None:
        _fail(conn, "INTERNAL_ERROR", target, "This server keeps no history")
        return None
    if not conn.account:
        _fail(conn, "ACCOUNT_REQUIRED", target, "Log in to keep read markers")
        return None
    what = readable(server, conn, target)
    if what is None:
        _fail(conn, "INVALID_PARAMS", target, "No such target, or not yours to read")
        return None
    at: float | None = None
    if len(msg.params) > 1:
        ref = parse_ref(msg.params[1])
        if ref is None or ref.at is None:
            _fail(conn, "INVALID_PARAMS", target, "Give timestamp=<time> or nothing")
            return None
        at = ref.at
    return _markread(server, conn, target, what, at)


async def _markread(server: ChatServer, conn: Session, target: str, what: Readable | str,
                    at: float | None) -> None:
    history = server.history
    assert history is not None
    me = party(conn)
    key = await history.read(lambda store: _key(store, me, what))
    if key is None:
        if at is None:
            _said(conn, target, None)
        else:
            _fail(conn, "INVALID_PARAMS", target, "No conversation to mark")
        return
    assert isinstance(key, str)
    if at is not None:
        history.note(READ_MARKER, (me, key, at))
        await history.wait()
    stored = await history.read(lambda store: store.read_marker(me, key))
    assert stored is None or isinstance(stored, float)
    if at is None:
        if not conn.closing:
            _said(conn, target, stored)
        return
    account = casefold(conn.account or "")
    for other in list(server.sessions):
        if (other.account and casefold(other.account) == account and not other.closing
                and READ_MARKER_CAP in other.caps):
            _said(other, target, stored)


def _key(store: HistoryStore, me: str, what: Readable | str) -> str | None:
    resolved = resolve(store, me, what)
    return None if resolved is None else resolved[0]


def marker_on_join(server: ChatServer, conn: Session, room: Channel) -> None:
    """Tell a joining client with the capability where its account stopped reading."""
    history = server.history
    if history is None or READ_MARKER_CAP not in conn.caps or not conn.account:
        return
    me, key = party(conn), room_target(room)

    async def tell() -> None:
        stored = await history.read(lambda store: store.read_marker(me, key))
        if not conn.closing and isinstance(stored, float | None):
            _said(conn, room.name, stored)

    task = asyncio.ensure_future(tell())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
