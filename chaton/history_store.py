"""The message store: room and private messages, in the server's own SQLite database.

This module is the SQL of history (issue 14): writing a batch of messages in one
transaction, and the queries CHATHISTORY needs. The server's group commit (one batch per
event-loop pass, on its own thread) is built on :meth:`HistoryStore.append`.

Invariants:
- One :class:`HistoryStore` is one connection with ``synchronous=NORMAL``: in WAL mode its
  commit is a ``write()`` to the WAL, not an fsync, so it survives ``kill -9`` (the kernel
  has the pages) and may lose the newest commits on power loss. Admin facts are written by
  :class:`chaton.store.Store` connections with ``synchronous=FULL``, whose fsync also
  makes every earlier history frame durable.
- ``id`` is commit order: SQLite has one writer at a time and assigns ``INTEGER PRIMARY
  KEY`` values in increasing order. Every query orders by ``id``; ``at`` (the server's
  clock when the message was accepted) is used only to turn ``timestamp=`` references into
  positions, so a clock stepping back cannot reorder a conversation.
- A target key names one conversation and decides who may read it: a room's key
  (:func:`room_key`), or a private pair (:func:`private_key`) of two parties, each an
  account (casefolded) or a guest connection's one-time token. Who may read which key is
  decided by the caller (the server), never by this module.
- ``append`` writes a whole batch or nothing; a caller that is told it failed must not
  deliver any message of the batch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaton.protocol.names import casefold
from chaton.store import Store

__all__ = [
    "AUDIT_ROW",
    "FIRST_JOIN",
    "LAST_SEEN",
    "READ_MARKER",
    "REDACT_ROW",
    "HistoryStore",
    "NewMessage",
    "StoredMessage",
    "guest_party",
    "private_key",
    "room_key",
]

_COLUMNS = "id, msgid, at, target, recipient, command, source, account, params, tags"
_INSERT = (
    "INSERT INTO messages (msgid, at, target, recipient, command, source, account, params,"
    " tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The search index gets a batch's words in one statement (the delete triggers of
#: migration 9 take them out again, whoever deletes).
_INDEX_WORDS = (
    "INSERT INTO messages_text (rowid, text) SELECT id, json_extract(params, '$[0]')"
    " FROM messages WHERE id > ? AND command IN ('PRIVMSG', 'NOTICE')"
)
#: WAL pages before the writer copies them into the database (SQLite's default is 1000):
#: fewer, larger checkpoints cost the group commit less (about +15 % messages/s).
CHECKPOINT_PAGES = 10_000
_CONVERSATION = (
    "INSERT INTO conversations (party, target, peer, last_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (party, target) DO UPDATE SET peer = excluded.peer, last_at = excluded.last_at"
)


#: Statements for :meth:`HistoryStore.append`'s ``facts``.
FIRST_JOIN = "INSERT OR IGNORE INTO room_joins (target, party, at) VALUES (?, ?, ?)"
LAST_SEEN = ("INSERT INTO seen (party, at) VALUES (?, ?)"
             " ON CONFLICT (party) DO UPDATE SET at = max(at, excluded.at)")
#: Redaction: the row goes (its words leave the search index by trigger) with its audit line.
REDACT_ROW = "DELETE FROM messages WHERE target = ? AND msgid = ?"
AUDIT_ROW = ("INSERT INTO audit (at, actor, action, target, reason, source_ip)"
             " VALUES (?, ?, ?, ?, ?, ?)")
READ_MARKER = ("INSERT INTO read_markers (party, target, at) VALUES (?, ?, ?)"
               " ON CONFLICT (party, target) DO UPDATE SET at = max(at, excluded.at)")


def room_key(name: str) -> str:
    """The target key of a room: its casefolded name (``#`` first, so never ``~``)."""
    return casefold(name)


def guest_party(token: str) -> str:
    """A guest connection as a party: ``@`` cannot begin an account name."""
    return "@" + token


def private_key(a: str, b: str) -> str:
    """The target key of the conversation between parties ``a`` and ``b`` (either order)."""
    first, second = sorted((a, b))
    return f"~{first}\x00{second}"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``params`` are those after the target; ``parties`` are set for a
    private message (sender's party, peer's party) with each side's view of the other."""

    msgid: str
    at: float
    target: str
    recipient: str
    command: str
    source: str
    account: str | None
    params: tuple[str, ...]
    tags: dict[str, str] | None = None
    parties: tuple[tuple[str, str], tuple[str, str]] | None = None  # (party, peer name) x2

    def row(self) -> tuple[object, ...]:
        return (
            self.msgid, self.at, self.target, self.recipient, self.command, self.source,
            self.account, json.dumps(self.params, ensure_ascii=False),
            json.dumps(self.tags, ensure_ascii=False) if self.tags else None,
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored message, as CHATHISTORY replays it."""

    id: int
    msgid: str
    at: float
    target: str
    recipient: str
    command: str
    source: str
    account: str | None
    params: tuple[str, ...]
    tags: dict[str, str] | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredMessage:
        tags = json.loads(str(row[9])) if row[9] else None
        return cls(
            int(row[0]), str(row[1]), float(row[2]), str(row[3]), str(row[4]),
            str(row[5]), str(row[6]), None if row[7] is None else str(row[7]),
            tuple(json.loads(str(row[8]))), tags,
        )


class HistoryStore:
    """Writes and reads the ``messages`` table; one connection, one thread at a time."""

    def __init__(self, path: Path, *, create: bool = True, readonly: bool = False) -> None:
        # Migrations, WAL, busy timeout, 0600 and the one-transaction helpers: as for admin
        # facts (this module is the store's other half, so it uses them directly).
        self._store = Store(path, create=create, readonly=readonly)
        self._db = self._store._conn()
        if not readonly:
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")

    def close(self) -> None:
        self._store.close()

    # --- writing ---------------------------------------------------------------------------

    def append(self, batch: Sequence[NewMessage],
               facts: Sequence[tuple[str, tuple[object, ...]]] = ()) -> None:
        """Store every message of ``batch``, and run the statements ``facts`` (read
        markers, first joins, last seen), in one transaction (all or none)."""
        if not batch and not facts:
            return
        with self._store._write() as db:
            if batch:
                last = db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]
                db.executemany(_INSERT, [m.row() for m in batch])
                db.execute(_INDEX_WORDS, (last,))  # one statement: 3x cheaper than a trigger
            for sql, args in facts:
                db.execute(sql, args)
            peers = [
                (party, m.target, peer, m.at)
                for m in batch if m.parties is not None
                for party, peer in m.parties
            ]
            if peers:
                db.executemany(_CONVERSATION, peers)

    def purge_before(self, at: float, limit: int, *, target: str | None = None,
                     keep: Sequence[str] = ()) -> int:
        """Delete up to ``limit`` of the oldest messages older than ``at`` (of ``target``
        only, or of every target but those in ``keep``); how many went. Bounded so a big
        purge never holds the write lock for long (call again until it returns 0). The
        search index loses their words by trigger in the same commit."""
        where = "id <= ? AND at < ?"
        args: list[object] = [0, at]
        if target is not None:
            where += " AND (target = ? OR target LIKE ? ESCAPE '\\')"
            args += [target, _like_prefix(target + "\x00")]
        for kept in keep:
            where += " AND target != ? AND target NOT LIKE ? ESCAPE '\\'"
            args += [kept, _like_prefix(kept + "\x00")]
        with self._store._write() as db:
            args[0] = _older_than(db, at)
            cur = db.execute(
                "DELETE FROM messages WHERE id IN"
                f" (SELECT id FROM messages WHERE {where} ORDER BY id LIMIT ?)",
                (*args, limit),
            )
            if target is None:
                db.execute("DELETE FROM conversations WHERE last_at < ?", (at,))
            return cur.rowcount

    def room_retention(self) -> dict[str, float]:
        """Registered rooms with a retention of their own: key -> seconds (0 = forever)."""
        with self._store._read() as db:
            rows = db.execute("SELECT key, history_retention FROM rooms"
                              " WHERE history_retention IS NOT NULL").fetchall()
        return {str(k): float(v) for k, v in rows}

    def export(self, target: str | None = None, since: float | None = None,
               batch: int = 5000) -> Iterator[StoredMessage]:
        """Every message (of ``target``), oldest first, read in pages of ``batch``."""
        last = 0
        while True:
            where = "id > ?"
            args: list[object] = [last]
            if target is not None:
                where += " AND (target = ? OR target LIKE ? ESCAPE '\\')"
                args += [target, _like_prefix(target + "\x00")]
            if since is not None:
                where += " AND at >= ?"
                args.append(since)
            page = self._select(where, tuple(args), "ASC", batch)
            if not page:
                return
            yield from page
            last = page[-1].id

    # --- reading ---------------------------------------------------------------------------

    def _select(self, where: str, args: tuple[object, ...], order: str,
                limit: int) -> list[StoredMessage]:
        with self._store._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id {order} LIMIT ?",
                (*args, limit),
            ).fetchall()
        found = [StoredMessage.from_row(r) for r in rows]
        if order == "DESC":
            found.reverse()
        return found

    def position(self, target: str, *, msgid: str | None = None,
                 at: float | None = None, after: bool = False) -> int | None:
        """The ``id`` a reference points at in ``target``: the message with ``msgid``, or
        for a timestamp the first message at or after ``at`` (one past the end if none);
        with ``after``, the last message at or before ``at`` (0 if none), so that ``id >``
        it means "later than ``at``". ``None``: no such message id in this conversation."""
        with self._store._read() as db:
            if msgid is not None:
                row = db.execute(
                    "SELECT id FROM messages WHERE msgid = ? AND target = ?", (msgid, target)
                ).fetchone()
                return None if row is None else int(row[0])
            if after:
                row = db.execute(
                    "SELECT id FROM messages WHERE target = ? AND at <= ?"
                    " ORDER BY at DESC, id DESC LIMIT 1", (target, at),
                ).fetchone()
                return 0 if row is None else int(row[0])
            row = db.execute(
                "SELECT id FROM messages WHERE target = ? AND at >= ? ORDER BY at, id LIMIT 1",
                (target, at),
            ).fetchone()
            if row is not None:
                return int(row[0])
            last = db.execute("SELECT max(id) FROM messages").fetchone()[0]
            return int(last or 0) + 1

    def latest(self, target: str, limit: int, *, after: int | None = None,
               commands: Sequence[str] | None = None, since: float | None = None
               ) -> list[StoredMessage]:
        """The newest ``limit`` messages (newer than position ``after``), oldest first.
        Every range query takes ``commands`` (only these) and ``since`` (none earlier)."""
        where, args = _where(target, commands, since)
        if after is not None:
            where += " AND id > ?"
            args += (after,)
        return self._select(where, args, "DESC", limit)

    def before(self, target: str, position: int, limit: int, *,
               commands: Sequence[str] | None = None, since: float | None = None
               ) -> list[StoredMessage]:
        """Up to ``limit`` messages just before ``position``, oldest first."""
        where, args = _where(target, commands, since)
        return self._select(where + " AND id < ?", (*args, position), "DESC", limit)

    def after(self, target: str, position: int, limit: int, *,
              commands: Sequence[str] | None = None, since: float | None = None,
              inclusive: bool = False) -> list[StoredMessage]:
        """Up to ``limit`` messages just after ``position`` (or from it), oldest first."""
        where, args = _where(target, commands, since)
        op = ">=" if inclusive else ">"
        return self._select(where + f" AND id {op} ?", (*args, position), "ASC", limit)

    def between(self, target: str, start: int, end: int, limit: int, *,
                commands: Sequence[str] | None = None, since: float | None = None
                ) -> list[StoredMessage]:
        """Messages strictly between two positions, ``limit`` of them counted from
        ``start`` (so ``start > end`` gives the newest ones before ``start``)."""
        where, args = _where(target, commands, since)
        low, high = sorted((start, end))
        where += " AND id > ? AND id < ?"
        return self._select(where, (*args, low, high), "ASC" if start <= end else "DESC",
                            limit)

    def around(self, target: str, position: int, limit: int, *,
               commands: Sequence[str] | None = None, since: float | None = None
               ) -> list[StoredMessage]:
        """``limit`` messages centred on ``position`` (it included when it is a message)."""
        older = self.before(target, position, limit // 2, commands=commands, since=since)
        newer = self.after(target, position, limit - len(older), commands=commands,
                           since=since, inclusive=True)
        return older + newer

    def last_at(self, target: str, commands: Sequence[str] | None = None) -> float | None:
        """When the newest message of ``target`` (of ``commands``) was accepted, or ``None``."""
        where, args = _where(target, commands)
        with self._store._read() as db:
            row = db.execute(
                f"SELECT at FROM messages WHERE {where} ORDER BY id DESC LIMIT 1", args
            ).fetchone()
        return None if row is None else float(row[0])

    def message_at(self, target: str, msgid: str) -> float | None:
        """When message ``msgid`` of ``target`` was accepted, or ``None``."""
        with self._store._read() as db:
            row = db.execute("SELECT at FROM messages WHERE msgid = ? AND target = ?",
                             (msgid, target)).fetchone()
        return None if row is None else float(row[0])

    def count_before(self, target: str, position: int, *, at_most: int,
                     commands: Sequence[str] | None = None, since: float | None = None) -> int:
        """How many messages precede ``position``, counted up to ``at_most`` (what a bounded
        replay leaves out: a room's whole past is not worth counting on every JOIN)."""
        where, args = _where(target, commands, since)
        with self._store._read() as db:
            row = db.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM messages WHERE {where} AND id < ?"
                " ORDER BY id DESC LIMIT ?)", (*args, position, at_most)).fetchone()
        return int(row[0])

    def count_after(self, target: str, position: int, *,
                    commands: Sequence[str] | None = None) -> int:
        """How many messages follow ``position``."""
        where, args = _where(target, commands)
        with self._store._read() as db:
            row = db.execute(f"SELECT count(*) FROM messages WHERE {where} AND id > ?",
                             (*args, position)).fetchone()
        return int(row[0])

    def conversation_with(self, party: str, peer: str) -> str | None:
        """The key of ``party``'s latest private conversation with nickname ``peer`` (as
        ``party`` last saw it named), or ``None``."""
        wanted = casefold(peer)
        with self._store._read() as db:
            rows = db.execute(
                "SELECT target, peer FROM conversations WHERE party = ? ORDER BY last_at DESC",
                (party,),
            ).fetchall()
        return next((str(t) for t, p in rows if casefold(str(p)) == wanted), None)

    def first_join(self, target: str, party: str) -> float | None:
        """When ``party`` first joined room ``target`` (for history_visibility "joined")."""
        with self._store._read() as db:
            row = db.execute("SELECT at FROM room_joins WHERE target = ? AND party = ?",
                             (target, party)).fetchone()
        return None if row is None else float(row[0])

    def find(self, target: str, msgid: str) -> StoredMessage | None:
        """The message ``msgid`` of ``target`` (a PRIVMSG, NOTICE or TAGMSG), or ``None``."""
        rows = self._select("target = ? AND msgid = ? AND command IN ('PRIVMSG', 'NOTICE',"
                            " 'TAGMSG')", (target, msgid), "ASC", 1)
        return rows[0] if rows else None

    def read_marker(self, party: str, target: str) -> float | None:
        """Where ``party`` last read conversation ``target`` (``MARKREAD``), or ``None``."""
        with self._store._read() as db:
            row = db.execute("SELECT at FROM read_markers WHERE party = ? AND target = ?",
                             (party, target)).fetchone()
        return None if row is None else float(row[0])

    def last_seen(self, party: str) -> float | None:
        """When ``party`` (an account) was last connected, or ``None``: never seen."""
        with self._store._read() as db:
            row = db.execute("SELECT at FROM seen WHERE party = ?", (party,)).fetchone()
        return None if row is None else float(row[0])

    def conversations(self, party: str, since: float, until: float,
                      limit: int) -> list[tuple[str, str, float]]:
        """``party``'s private conversations whose last message lies strictly between
        ``since`` and ``until``, earliest first: (key, peer, last)."""
        with self._store._read() as db:
            rows = db.execute(
                "SELECT target, peer, last_at FROM conversations WHERE party = ?"
                " AND last_at > ? AND last_at < ? ORDER BY last_at LIMIT ?",
                (party, since, until, limit),
            ).fetchall()
        return [(str(t), str(p), float(a)) for t, p, a in rows]

    def search(self, words: Sequence[str], targets: Sequence[tuple[str, float | None]], *,
               source: str | None = None, after: float | None = None,
               before: float | None = None, limit: int = 50) -> list[StoredMessage]:
        """The newest ``limit`` PRIVMSG/NOTICE of ``targets`` (key, earliest readable time)
        containing every one of ``words``, oldest first. ``source``: only from that
        nickname. The index is walked newest first, so a common word stops at ``limit``."""
        if not words or not targets:
            return []
        match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        plain = [key for key, since in targets if since is None]
        where = ["messages_text MATCH ?"]
        args: list[object] = [match]
        scopes = []
        if plain:
            scopes.append(f"m.target IN ({', '.join('?' * len(plain))})")
            args += plain
        for key, since in targets:
            if since is not None:
                scopes.append("(m.target = ? AND m.at >= ?)")
                args += [key, since]
        where.append("(" + " OR ".join(scopes) + ")")
        if source is not None:
            where.append("m.source LIKE ? ESCAPE '\\'")
            escaped = source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(escaped + "!%")
        if after is not None:
            where.append("m.at > ?")
            args.append(after)
        if before is not None:
            where.append("m.at < ?")
            args.append(before)
        columns = ", ".join("m." + c for c in _COLUMNS.split(", "))
        with self._store._read() as db:
            rows = db.execute(
                f"SELECT {columns} FROM messages_text JOIN messages m ON m.id = messages_text.rowid"
                f" WHERE {' AND '.join(where)} ORDER BY messages_text.rowid DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        found = [StoredMessage.from_row(r) for r in rows]
        found.reverse()
        return found

    def conversation_keys(self, party: str) -> list[str]:
        """Every private conversation ``party`` has (what SEARCH may look through)."""
        with self._store._read() as db:
            rows = db.execute("SELECT target FROM conversations WHERE party = ?",
                              (party,)).fetchall()
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])


def _older_than(db: sqlite3.Connection, at: float) -> int:
    """The last id of a message accepted before ``at`` (0: none), by bisecting ids: they
    grow with time (commit order of messages stamped as they were accepted), so no index
    on ``at`` is needed. After a clock step back it may stop early; the ``at < ?`` test
    of the purge keeps it from ever deleting a message that is not old enough."""
    low, high = db.execute("SELECT min(id), max(id) FROM messages").fetchone()
    if low is None:
        return 0
    first = db.execute("SELECT at FROM messages WHERE id = ?", (low,)).fetchone()
    if first is None or first[0] >= at:
        return 0
    while low < high:  # invariant: the message at low is older than at
        middle = (low + high + 1) // 2
        row = db.execute("SELECT id, at FROM messages WHERE id >= ? ORDER BY id LIMIT 1",
                         (middle,)).fetchone()
        if row is not None and row[1] < at:
            low = int(row[0])
        else:
            high = middle - 1
    return int(low)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for "starts with ``prefix``" (an unregistered room's lives)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(target: str, commands: Sequence[str] | None,
           since: float | None = None) -> tuple[str, tuple[object, ...]]:
    where = "target = ?"
    args: tuple[object, ...] = (target,)
    if commands:
        where += f" AND command IN ({', '.join('?' * len(commands))})"
        args += tuple(commands)
    if since is not None:
        where += " AND at >= ?"
        args += (since,)
    return where, args
