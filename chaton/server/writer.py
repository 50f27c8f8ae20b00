"""Database writes off the event loop, in order, on one thread with its own connection.

A commit with ``synchronous=FULL`` waits for the disk (an fsync, milliseconds to tens of
milliseconds). Done on the event loop, every login's ``last_login`` update or admin action
would stall every room for that long; here the loop awaits the commit instead, so the admin
is still answered only after it is durable, and chat keeps flowing meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from chaton.store import Store

__all__ = ["StoreWriter"]

log = logging.getLogger("chaton")

T = TypeVar("T")


class StoreWriter:
    """Runs :class:`Store` methods on a single writer thread, first come first served."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaton-db")

    def _with_store(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = Store(self._path)
        return fn(self._store)

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._with_store(lambda store: getattr(store, method)(*args, **kwargs))

    async def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``Store.<method>(*args, **kwargs)`` on the writer thread; return its result."""
        future = self._executor.submit(self._call, method, args, kwargs)
        return await asyncio.wrap_future(future)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the writer thread, in turn with every other write."""
        return await asyncio.wrap_future(self._executor.submit(self._with_store, fn))

    def queued(self) -> int:
        """Writes submitted and not yet started (for metrics, and for tests that order them)."""
        return self._executor._work_queue.qsize()

    def submit(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Fire and forget (for bookkeeping such as ``last_login``); failures are logged."""
        future = self._executor.submit(self._call, method, args, kwargs)

        def report(f: Any) -> None:
            if f.exception() is not None:
                log.error("store-write-failed method=%s: %s", method, f.exception())

        future.add_done_callback(report)

    def close(self) -> None:
        """Finish queued writes, then close the writer's connection."""

        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._executor.submit(shut)
        self._executor.shutdown(wait=True)
