"""Group commit for the message store: every message in the WAL before anyone receives it.

Delivery itself is immediate, in memory: a message is queued to its recipients the moment
it is accepted (the members of that moment), exactly as without history, and its row is
queued here. What waits is the *write to the sockets*: the server's once-per-pass flush
asks :meth:`History.hold` first, and while a batch is open or committing, every queued
line stays in its connection's queue until that batch is in the WAL.

Invariants:
- Rows recorded during one event-loop pass form one batch; while a batch is committing,
  the next one keeps growing, so there is at most one commit in flight and one batch
  filling. Each commit is one transaction on the "chaton-history" thread.
- A line queued while batch B is open or committing is written to its socket only after
  B (and so every batch before it: they commit in order) is committed: the flush marks
  each connection's queue at that point (``hold``) and B's commit releases it up to the
  mark. So no client ever reads a message the store could lose to ``kill -9``, and a
  client's output keeps its order (a reply or a PART never overtakes its earlier message).
- A batch that fails to commit is delivered to nobody: its messages' encoded lines are
  blanked in every queue still holding them (the same bytes objects, encoded once per
  variant), and each ``failed`` callback tells the sender. Events (JOIN, PART...) are
  delivered anyway: the room has changed whether or not the row was written.
- The server's flush for a pass always runs before a commit that began after that pass,
  so every line of a batch's messages is held by the time the batch's result arrives.
- The loop never waits on the disk; a sender waits (``wait``) only when more than
  ``history_max_pending`` rows are not yet committed, which bounds the memory held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from chaton.history_store import HistoryStore, NewMessage, guest_party, room_key
from chaton.protocol.names import casefold
from chaton.server.metrics import COMMIT_BUCKETS, Histogram
from chaton.store import StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.lines import Outgoing
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["HeldOutput", "History", "keep_event", "party", "room_target", "stored"]

log = logging.getLogger("chaton")

T = TypeVar("T")


class HeldOutput(Protocol):
    """What the group commit needs of a connection's output queue."""

    @property
    def sent_lines(self) -> int:
        """Lines queued so far (a mark in the queue)."""

    def hold(self) -> None:
        """Keep what is queued until :meth:`release`; later lines mark the queue anew."""

    def release(self, mark: int) -> None:
        """Write the lines queued before ``mark``."""

    def blank(self, lines: set[int]) -> None:
        """Drop the queued lines whose ``id`` is in ``lines`` (a failed commit's)."""


def party(conn: Session) -> str:
    """Who ``conn`` is in a private conversation: its account, or (a guest) this one
    connection, so a later guest with the same nickname reads nothing of it."""
    if conn.account:
        return casefold(conn.account)
    return guest_party(f"{id(conn):x}.{conn.connected_at!r}")


def room_target(room: Channel) -> str:
    """A room's history key. An unregistered room's history belongs to that room's life:
    whoever starts a room of the same name afresh (and becomes its operator) must not read
    what was said in an earlier, perhaps secret, one."""
    key = room_key(room.name)
    return key if room.owner is not None else f"{key}\x00{room.created!r}"


def stored(out: Outgoing, conn: Session, command: str, target: str, recipient: str,
           params: tuple[str, ...], tags: dict[str, str] | None,
           parties: tuple[tuple[str, str], tuple[str, str]] | None = None) -> NewMessage:
    """The row for one relayed message, with the msgid and time its recipients see."""
    return NewMessage(out.msgid or "", out.at, target, recipient, command, conn.source or "",
                      conn.account, params, tags or None, parties)


def keep_event(server: ChatServer, rooms: Iterable[Channel], out: Outgoing, source: str,
               account: str | None, command: str, params: Sequence[str]) -> None:
    """Keep a room event (JOIN, PART, KICK, TOPIC, MODE; QUIT and NICK in each room the
    client was in) for event playback, with the msgid and time its members saw.
    ``params`` are those after the room name."""
    history = server.history
    if history is None:
        return
    for room in rooms:
        history.record(NewMessage(out.msgid or "", out.at, room_target(room), room.name,
                                  command, source, account, tuple(params)))


class _Batch:
    """Rows to commit together, and the output that waits for them."""

    __slots__ = ("done", "facts", "failed", "holds", "outs", "rows")

    def __init__(self) -> None:
        self.rows: list[NewMessage] = []
        self.facts: list[tuple[str, tuple[object, ...]]] = []
        self.outs: list[Outgoing] = []  # whose lines must vanish if the commit fails
        self.failed: list[Callable[[], None]] = []
        # One mark per connection, its latest: a queue held over several passes while a
        # commit runs is written with one TLS record when it commits, not one per pass.
        self.holds: dict[HeldOutput, int] = {}
        self.done: asyncio.Future[None] | None = None  # made only for a waiting sender


class History:
    """The server's side of the message store: batched writes and reads off the loop."""

    def __init__(self, path: Path, max_pending: int = 10_000) -> None:
        self._path = path
        self.max_pending = max_pending
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaton-history")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaton-history-r")
        self._write_store: HistoryStore | None = None
        self._read_store: HistoryStore | None = None
        self._open: _Batch | None = None  # filling during this pass (or behind a commit)
        self._committing: _Batch | None = None
        self._scheduled = False
        self.pending = 0  # rows recorded and not yet committed
        self.committed = 0  # rows, for metrics and tests
        self.batches = 0
        self.commit_latency = Histogram(COMMIT_BUCKETS)  # seconds per group commit
        self._commit_started = 0.0

    # --- writing ---------------------------------------------------------------------------

    def record(self, row: NewMessage, out: Outgoing | None = None,
               failed: Callable[[], None] | None = None) -> None:
        """Queue ``row``. ``out`` is the message as queued to its recipients (withdrawn if
        the commit fails, and ``failed`` called)."""
        batch = self._filling()
        batch.rows.append(row)
        if out is not None:
            batch.outs.append(out)
        if failed is not None:
            batch.failed.append(failed)
        self.pending += 1

    def note(self, sql: str, args: tuple[object, ...]) -> None:
        """Run one more statement in the next commit (``history_store.FIRST_JOIN``...)."""
        self._filling().facts.append((sql, args))
        self.pending += 1

    def _filling(self) -> _Batch:
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            if self._committing is None and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._submit)
        return batch

    @property
    def busy(self) -> bool:
        """Some row awaits the disk (so output must be held, not written)."""
        return self._open is not None or self._committing is not None

    @property
    def backlogged(self) -> bool:
        """More rows wait for the disk than ``max_pending``: senders should wait."""
        return self.pending > self.max_pending

    def wait(self) -> asyncio.Future[None]:
        """A future done once everything recorded so far is committed (or has failed)."""
        batch = self._open or self._committing
        if batch is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if batch.done is None:
            batch.done = asyncio.get_running_loop().create_future()
        return batch.done

    def hold(self, links: Iterable[HeldOutput]) -> bool:
        """Keep ``links``' queued output until the newest batch commits; ``False`` (nothing
        held) when no row awaits the disk and the output may be written now."""
        batch = self._open or self._committing
        if batch is None:
            return False
        holds = batch.holds
        for link in links:
            link.hold()
            holds[link] = link.sent_lines
        return True

    def _submit(self) -> None:
        self._scheduled = False
        batch = self._open
        if batch is None or self._committing is not None:
            return
        self._open, self._committing = None, batch
        self._commit_started = time.perf_counter()
        future = asyncio.wrap_future(self._writer.submit(self._append, batch))
        future.add_done_callback(lambda f: self._committed(f, batch))

    def _append(self, batch: _Batch) -> None:
        if self._write_store is None:
            self._write_store = HistoryStore(self._path)
        self._write_store.append(batch.rows, batch.facts)

    def _committed(self, future: asyncio.Future[None], batch: _Batch) -> None:
        self._committing = None
        self.commit_latency.observe(time.perf_counter() - self._commit_started)
        self.pending -= len(batch.rows) + len(batch.facts)
        error = future.exception()
        try:
            if error is None:
                self.committed += len(batch.rows)
                self.batches += 1
            else:
                log.error("history-write-failed rows=%d: %s", len(batch.rows), error)
                self._withdraw(batch)
            for link, mark in batch.holds.items():
                link.release(mark)
            if error is not None:
                for failed in batch.failed:
                    failed()
        finally:  # whatever went wrong above, senders waiting on the disk go on
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
            if self._open is not None:
                self._submit()  # what filled up meanwhile: the next group

    def _withdraw(self, batch: _Batch) -> None:
        """Blank a failed batch's messages wherever they still wait to be written."""
        lines = {id(line) for out in batch.outs for line in out.encoded()}
        if not lines:
            return
        later = self._open.holds if self._open is not None else {}
        for link in {*batch.holds, *later}:
            link.blank(lines)

    async def maintain(self, work: Callable[[HistoryStore], T]) -> T:
        """Run ``work(store)`` on the writer thread between two commits (a purge chunk):
        one writer, so it never waits for the database's write lock behind a commit."""
        def run() -> T:
            if self._write_store is None:
                self._write_store = HistoryStore(self._path)
            return work(self._write_store)

        return await asyncio.wrap_future(self._writer.submit(run))

    # --- reading ---------------------------------------------------------------------------

    async def read(self, query: Callable[[HistoryStore], object]) -> object:
        """Run ``query(store)`` on the reader thread (its own connection: reads never wait
        for a commit in WAL mode)."""
        def run() -> object:
            if self._read_store is None:
                self._read_store = HistoryStore(self._path)
            return query(self._read_store)

        return await asyncio.wrap_future(self._reader.submit(run))

    def close(self) -> None:
        """Commit what is queued (the server is going: nothing more is written to clients),
        then close both connections."""
        batch, self._open = self._open, None
        if batch is not None:
            try:
                self._writer.submit(self._append, batch).result()
            except StoreError as exc:
                log.error("history-write-failed at close rows=%d: %s", len(batch.rows), exc)
        for pool, attr in ((self._writer, "_write_store"), (self._reader, "_read_store")):
            def shut(attr: str = attr) -> None:
                store = getattr(self, attr)
                if store is not None:
                    store.close()
                    setattr(self, attr, None)

            pool.submit(shut)
            pool.shutdown(wait=True)
