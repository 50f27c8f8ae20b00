"""Group commit for the message store: every message in the WAL before anyone receives it.

Invariants:
- ``record`` queues a message with the callback that delivers it. The first ``record`` of
  an event-loop pass schedules one flush for the end of the pass; the flush hands the whole
  batch to the history thread, which commits it in one transaction
  (:meth:`HistoryStore.append`). Only then, back on the loop, are the batch's callbacks
  run, in the order recorded; so no client ever receives a message the store could lose to
  ``kill -9``, and deliveries keep the store's (commit) order.
- Batches commit one after the other on one thread, and their results come back to the
  loop in that order, so a message recorded later is never delivered before an earlier one.
- A batch that fails to commit delivers nothing; each of its messages' ``failed``
  callback tells the sender. The loop never waits on the disk.
- A callback runs in the context that was current at ``record`` (a labeled command's
  reply capture, for one), as if it had run inside the command.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from chaton.history_store import HistoryStore, NewMessage, guest_party, room_key
from chaton.protocol.names import casefold
from chaton.store import StoreError

if TYPE_CHECKING:
    from chaton.server.lines import Outgoing
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["History", "party", "room_target", "stored"]

log = logging.getLogger("chaton")

Deliver = Callable[[], None]


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


class History:
    """The server's side of the message store: batched writes and reads off the loop."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaton-history")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaton-history-r")
        self._write_store: HistoryStore | None = None
        self._read_store: HistoryStore | None = None
        self._batch: list[tuple[NewMessage, Deliver | None, Deliver | None,
                                contextvars.Context]] = []
        self._done: asyncio.Future[None] | None = None
        self.committed = 0  # messages, for metrics and tests
        self.batches = 0

    # --- writing ---------------------------------------------------------------------------

    def record(self, message: NewMessage, deliver: Deliver | None = None,
               failed: Deliver | None = None) -> asyncio.Future[None]:
        """Queue ``message``; ``deliver`` runs once it is committed (``failed`` if it could
        not be). The returned future is done when its batch's callbacks have run."""
        if self._done is None:
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            loop.call_soon(self._flush)
        self._batch.append((message, deliver, failed, contextvars.copy_context()))
        return self._done

    def _flush(self) -> None:
        batch, done = self._batch, self._done
        self._batch, self._done = [], None
        if done is None:
            return
        messages = [item[0] for item in batch]
        future = asyncio.wrap_future(self._writer.submit(self._append, messages))
        future.add_done_callback(lambda f: self._committed(f, batch, done))

    def _append(self, messages: list[NewMessage]) -> None:
        if self._write_store is None:
            self._write_store = HistoryStore(self._path)
        self._write_store.append(messages)

    def _committed(self, future: asyncio.Future[None],
                   batch: list[tuple[NewMessage, Deliver | None, Deliver | None,
                                     contextvars.Context]],
                   done: asyncio.Future[None]) -> None:
        error = future.exception()
        if error is not None:
            log.error("history-write-failed messages=%d: %s", len(batch), error)
        else:
            self.committed += len(batch)
            self.batches += 1
        for _message, deliver, failed, context in batch:
            callback = deliver if error is None else failed
            if callback is not None:
                try:
                    context.run(callback)
                except Exception:  # one recipient's trouble must not lose the others
                    log.exception("history-delivery-failed")
        if not done.done():
            done.set_result(None)

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
        """Commit what is queued (without delivering it), then close both connections."""
        batch = self._batch
        self._batch, self._done = [], None
        if batch:
            try:
                self._writer.submit(self._append, [item[0] for item in batch]).result()
            except StoreError as exc:
                log.error("history-write-failed at close messages=%d: %s", len(batch), exc)
        for pool, attr in ((self._writer, "_write_store"), (self._reader, "_read_store")):
            def shut(attr: str = attr) -> None:
                store = getattr(self, attr)
                if store is not None:
                    store.close()
                    setattr(self, attr, None)

            pool.submit(shut)
            pool.shutdown(wait=True)
