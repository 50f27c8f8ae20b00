"""``REDACT`` (IRCv3 ``draft/message-redaction``): taking a message back.

Invariants:
- A user may redact its own messages (same account; guests, who have no lasting identity,
  may not); a room's operators and admins any message of a room they may read now. The
  rule is applied to the stored message and the asker's current status, at every request.
- The row leaves the store in one commit with its audit line (who, which message, where,
  why, from which address; never the text). The search index loses its words by trigger in
  that same commit, so nothing can still find them.
- Only once that commit holds are clients told: room members, or the two sides of a
  private conversation, that negotiated the capability. A failed commit is reported to
  the asker and nothing is announced.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton.history_store import AUDIT_ROW, REDACT_ROW, HistoryStore, StoredMessage
from chaton.protocol.names import casefold
from chaton.server.authority import admin_now
from chaton.server.chathistory import Readable, readable, resolve
from chaton.server.history import party
from chaton.server.lines import Outgoing
from chaton.server.room_modes import OP

if TYPE_CHECKING:
    from chaton.protocol.message import Message
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["REDACTION_CAP", "redact"]

REDACTION_CAP = "draft/message-redaction"


def _fail(conn: Session, code: str, *context: str) -> None:
    conn.send_msg("FAIL", "REDACT", code, *context)


# REDACT <target> <msgid> [:<reason>]
def redact(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    target, msgid = msg.params[0], msg.params[1]
    reason = msg.params[2] if len(msg.params) > 2 else ""
    if server.history is None:
        _fail(conn, "INVALID_TARGET", target, "This server keeps no history")
        return None
    what = readable(server, conn, target)
    if what is None:
        _fail(conn, "INVALID_TARGET", target, "No such target, or not yours to read")
        return None
    room = server.state.find_channel(target) if target[:1] == "#" else None
    moderator = room is not None and (bool(room.members.get(conn, 0) & OP)
                                      or admin_now(server, conn))
    return _redact(server, conn, target, msgid, reason[:server.settings.kicklen], what,
                   moderator)


async def _redact(server: ChatServer, conn: Session, target: str, msgid: str, reason: str,
                  what: Readable | str, moderator: bool) -> None:
    history = server.history
    assert history is not None
    await history.wait()
    me = party(conn)

    def find(store: HistoryStore) -> tuple[str, StoredMessage] | None:
        resolved = resolve(store, me, what)
        if resolved is None:
            return None
        row = store.find(resolved[0], msgid)
        return None if row is None else (resolved[0], row)

    found = await history.read(find)
    if conn.closing:
        return
    if found is None:
        _fail(conn, "UNKNOWN_MSGID", target, msgid, "No such message to redact")
        return
    assert isinstance(found, tuple)
    key, row = found
    own = bool(conn.account and row.account and casefold(conn.account) == casefold(row.account))
    if not (own or moderator):
        _fail(conn, "REDACT_FORBIDDEN", target, msgid, "You may redact only your own messages")
        return
    actor = conn.oper_account or conn.account or conn.name
    history.note(REDACT_ROW, (key, msgid))
    history.note(AUDIT_ROW, (time.time(), actor, "redact", f"{row.recipient} {msgid}",
                             reason, conn.ip))
    await history.wait()
    gone = await history.read(lambda store: store.find(key, msgid) is None)
    if not gone:
        _fail(conn, "STORE_ERROR", target, msgid, "Not redacted: the server could not store it")
        return
    _announce(server, conn, target, msgid, reason, row)


def _announce(server: ChatServer, conn: Session, target: str, msgid: str, reason: str,
              row: StoredMessage) -> None:
    params = [msgid, reason] if reason else [msgid]
    if target[:1] == "#":
        room = server.state.find_channel(target)
        if room is None:
            return
        out = Outgoing(conn.source, "REDACT", [room.name, *params])
        for member in room.members:
            if REDACTION_CAP in member.caps:
                member.send(out.line_for(member))
        if conn not in room.members and REDACTION_CAP in conn.caps:
            conn.send(out.line_for(conn))
        return
    if REDACTION_CAP in conn.caps:
        conn.send_msg("REDACT", target, *params, source=conn.source)
    peer = server.state.find_nick(target)
    if peer is not None and peer is not conn and REDACTION_CAP in peer.caps:
        peer.send_msg("REDACT", conn.name, *params, source=conn.source)
