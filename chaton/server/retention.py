"""Forgetting on schedule: messages older than their retention leave the store.

Invariants:
- The retention of a message is its registered room's own (``ChanServ SET #room
  RETENTION``), else the server's ``history_retention``; 0 keeps it forever. Read from the
  database at every pass, so a change by ChanServ or the CLI applies at the next one.
- A pass deletes in chunks of ``history_purge_chunk`` rows, each its own commit on the
  history writer thread, so message commits wait for at most one chunk; the words leave
  the search index in the same commits (by trigger).
- The clock is injected (``clock``), so tests move time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from chaton.config import retention_seconds

if TYPE_CHECKING:
    from chaton.history_store import HistoryStore
    from chaton.server.app import ChatServer

__all__ = ["Retention"]

log = logging.getLogger("chaton")


class Retention:
    """The background purge of expired history."""

    def __init__(self, server: ChatServer, clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.clock = clock
        self.purged = 0  # rows, since start (for metrics and tests)

    async def run_forever(self) -> None:
        interval = self.server.settings.history_purge_interval
        while True:
            try:
                await self.purge_once()
            except Exception:  # a failing disk must not end retention for good
                log.exception("history-purge-failed")
            await asyncio.sleep(interval)

    async def purge_once(self) -> int:
        """One pass over every retention in force; how many messages went."""
        history = self.server.history
        if history is None:
            return 0
        default = retention_seconds(self.server.settings.history_retention)
        rooms = await history.maintain(_rooms)
        now = self.clock()
        gone = 0
        for key, seconds in rooms.items():
            if seconds > 0:
                gone += await self._purge(now - seconds, target=key)
        if default > 0:
            gone += await self._purge(now - default, keep=tuple(rooms))
        if gone:
            log.info("history-purged messages=%d", gone)
        self.purged += gone
        return gone

    async def _purge(self, before: float, *, target: str | None = None,
                     keep: tuple[str, ...] = ()) -> int:
        history = self.server.history
        assert history is not None
        chunk = self.server.settings.history_purge_chunk
        total = 0
        while True:
            n = await history.maintain(
                lambda store: store.purge_before(before, chunk, target=target, keep=keep))
            total += n
            if n < chunk:
                return total
            await asyncio.sleep(0)  # let the loop (and message commits) go between chunks


def _rooms(store: HistoryStore) -> dict[str, float]:
    return store.room_retention()
