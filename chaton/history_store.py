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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaton.protocol.names import casefold
from chaton.store import Store

__all__ = [
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
_CONVERSATION = (
    "INSERT INTO conversations (party, target, peer, last_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (party, target) DO UPDATE SET peer = excluded.peer, last_at = excluded.last_at"
)


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

    def __init__(self, path: Path) -> None:
        # Migrations, WAL, busy timeout, 0600 and the one-transaction helpers: as for admin
        # facts (this module is the store's other half, so it uses them directly).
        self._store = Store(path)
        self._db = self._store._conn()
        self._db.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        self._store.close()

    # --- writing ---------------------------------------------------------------------------

    def append(self, batch: Sequence[NewMessage]) -> None:
        """Store every message of ``batch`` in one transaction (all or none)."""
        if not batch:
            return
        with self._store._write() as db:
            db.executemany(_INSERT, [m.row() for m in batch])
            peers = [
                (party, m.target, peer, m.at)
                for m in batch if m.parties is not None
                for party, peer in m.parties
            ]
            if peers:
                db.executemany(_CONVERSATION, peers)

    def purge_before(self, at: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest messages older than ``at``; how many went.
        Bounded so a big purge never holds the write lock for long (call again until 0)."""
        with self._store._write() as db:
            cur = db.execute(
                "DELETE FROM messages WHERE id IN"
                " (SELECT id FROM messages WHERE at < ? ORDER BY at LIMIT ?)",
                (at, limit),
            )
            db.execute("DELETE FROM conversations WHERE last_at < ?", (at,))
            return cur.rowcount

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
                 at: float | None = None) -> int | None:
        """The ``id`` a reference points at in ``target``: the message with ``msgid``, or
        for a timestamp the first message at or after ``at`` (one past the end if none).
        ``None``: no such message id in this conversation."""
        with self._store._read() as db:
            if msgid is not None:
                row = db.execute(
                    "SELECT id FROM messages WHERE msgid = ? AND target = ?", (msgid, target)
                ).fetchone()
                return None if row is None else int(row[0])
            row = db.execute(
                "SELECT id FROM messages WHERE target = ? AND at >= ? ORDER BY at, id LIMIT 1",
                (target, at),
            ).fetchone()
            if row is not None:
                return int(row[0])
            last = db.execute("SELECT max(id) FROM messages").fetchone()[0]
            return int(last or 0) + 1

    def latest(self, target: str, limit: int, *, after: int | None = None,
               commands: Sequence[str] | None = None) -> list[StoredMessage]:
        """The newest ``limit`` messages (newer than position ``after``), oldest first."""
        where, args = _where(target, commands)
        if after is not None:
            where += " AND id > ?"
            args += (after,)
        return self._select(where, args, "DESC", limit)

    def before(self, target: str, position: int, limit: int, *,
               commands: Sequence[str] | None = None) -> list[StoredMessage]:
        """Up to ``limit`` messages just before ``position``, oldest first."""
        where, args = _where(target, commands)
        return self._select(where + " AND id < ?", (*args, position), "DESC", limit)

    def after(self, target: str, position: int, limit: int, *,
              commands: Sequence[str] | None = None, inclusive: bool = False
              ) -> list[StoredMessage]:
        """Up to ``limit`` messages just after ``position`` (or from it), oldest first."""
        where, args = _where(target, commands)
        op = ">=" if inclusive else ">"
        return self._select(where + f" AND id {op} ?", (*args, position), "ASC", limit)

    def between(self, target: str, start: int, end: int, limit: int, *,
                commands: Sequence[str] | None = None) -> list[StoredMessage]:
        """Messages strictly between two positions, ``limit`` of them counted from
        ``start`` (so ``start > end`` gives the newest ones before ``start``)."""
        where, args = _where(target, commands)
        low, high = sorted((start, end))
        where += " AND id > ? AND id < ?"
        return self._select(where, (*args, low, high), "ASC" if start <= end else "DESC",
                            limit)

    def around(self, target: str, position: int, limit: int, *,
               commands: Sequence[str] | None = None) -> list[StoredMessage]:
        """``limit`` messages centred on ``position`` (it included when it is a message)."""
        older = self.before(target, position, limit // 2, commands=commands)
        newer = self.after(target, position, limit - len(older), commands=commands,
                           inclusive=True)
        return older + newer

    def last_at(self, target: str) -> float | None:
        """When the newest message of ``target`` was accepted, or ``None``."""
        with self._store._read() as db:
            row = db.execute(
                "SELECT at FROM messages WHERE target = ? ORDER BY id DESC LIMIT 1", (target,)
            ).fetchone()
        return None if row is None else float(row[0])

    def conversations(self, party: str, since: float, until: float,
                      limit: int) -> list[tuple[str, str, float]]:
        """``party``'s private conversations active in [since, until]: (key, peer, last)."""
        with self._store._read() as db:
            rows = db.execute(
                "SELECT target, peer, last_at FROM conversations WHERE party = ?"
                " AND last_at >= ? AND last_at <= ? ORDER BY last_at LIMIT ?",
                (party, since, until, limit),
            ).fetchall()
        return [(str(t), str(p), float(a)) for t, p, a in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])


def _where(target: str, commands: Sequence[str] | None) -> tuple[str, tuple[object, ...]]:
    if not commands:
        return "target = ?", (target,)
    marks = ", ".join("?" * len(commands))
    return f"target = ? AND command IN ({marks})", (target, *commands)
