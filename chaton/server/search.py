"""``SEARCH`` (IRCv3 ``draft/search``): words in the history the asker may read.

``SEARCH in=#room;from=nick;after=<time>;before=<time>;text=<words>;limit=<n>`` (one
parameter, values escaped as tag values). The answer is a ``draft/search`` batch of the
matching messages, oldest first, as CHATHISTORY sends them.

Invariants:
- The scope is worked out from the current state at every request, exactly as for
  CHATHISTORY: the rooms the asker is in now (from its first join where only that is
  visible) and its own private conversations; ``in=`` narrows it, never widens it.
- The words are matched by SQLite FTS5 as plain words (each quoted), so no query syntax of
  FTS5 reaches SQLite from a client; a text without a word is refused, not a full scan.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton.history_store import HistoryStore, StoredMessage
from chaton.protocol.message import Message, ProtocolError, parse_tags
from chaton.server.chathistory import (
    Readable,
    joined_only,
    parse_limit,
    parse_ref,
    readable,
    resolve,
    send_batch,
)
from chaton.server.history import party, room_target

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["SEARCH_CAP", "search"]

SEARCH_CAP = "draft/search"
_KEYS = frozenset({"in", "from", "after", "before", "text", "limit"})
_WORD = re.compile(r"\w+")
#: Words per query: more cannot make a team chat's search better, only slower.
MAX_WORDS = 16


def _fail(conn: Session, code: str, why: str) -> None:
    conn.send_msg("FAIL", "SEARCH", code, why)


# SEARCH <key=value;key=value...>
def search(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    history = server.history
    if history is None:
        _fail(conn, "UNAVAILABLE", "This server keeps no history")
        return None
    try:
        attrs = parse_tags(msg.params[0])
    except ProtocolError as exc:
        _fail(conn, "INVALID_PARAMS", str(exc))
        return None
    unknown = sorted(set(attrs) - _KEYS)
    if unknown:
        _fail(conn, "INVALID_PARAMS", f"Unknown search attribute {unknown[0][:32]}")
        return None
    words = _WORD.findall(attrs.get("text", ""))[:MAX_WORDS]
    if not words:
        _fail(conn, "INVALID_PARAMS", "Give text=<words> to search for")
        return None
    limit = parse_limit(attrs.get("limit", "50"), server.settings.chathistory_max)
    if limit is None:
        _fail(conn, "INVALID_PARAMS", "limit must be a positive number")
        return None
    bounds: list[float | None] = []
    for key in ("after", "before"):
        if key not in attrs:
            bounds.append(None)
            continue
        ref = parse_ref("timestamp=" + attrs[key])
        if ref is None or ref.at is None:
            _fail(conn, "INVALID_PARAMS", f"{key} must be a time such as 2026-12-03T10:00:00Z")
            return None
        bounds.append(ref.at)
    where = attrs.get("in")
    scope: list[Readable | str]
    if where:
        one = readable(server, conn, where)
        if one is None:
            _fail(conn, "INVALID_PARAMS", f"{where[:64]}: no such target, or not yours to read")
            return None
        scope = [one]
    else:
        scope = [Readable(room_target(room), joined_only(server, room))
                 for room in conn.channels.values()]
    return _run(server, conn, words, scope, where is None, attrs.get("from") or None,
                bounds[0], bounds[1], limit)


async def _run(server: ChatServer, conn: Session, words: list[str],
               scope: list[Readable | str], everywhere: bool, source: str | None,
               after: float | None, before: float | None, limit: int) -> None:
    history = server.history
    assert history is not None
    await history.wait()
    me = party(conn)

    def run(store: HistoryStore) -> list[StoredMessage]:
        targets = [t for t in (resolve(store, me, what) for what in scope) if t is not None]
        if everywhere:
            targets += [(key, None) for key in store.conversation_keys(me)]
        return store.search(words, targets, source=source, after=after, before=before,
                            limit=limit)

    rows = await history.read(run)
    if conn.closing:
        return
    assert isinstance(rows, list)
    send_batch(conn, "draft/search", None, rows)
