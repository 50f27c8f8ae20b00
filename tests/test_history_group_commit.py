"""Group commit: one transaction per loop pass, delivery only after the commit, in order."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from pathlib import Path

from chaton.history_store import NewMessage, room_key
from chaton.server.history import History

who = contextvars.ContextVar("who", default="nobody")


def message(i: int) -> NewMessage:
    return NewMessage(f"g{i}", 1000.0 + i, room_key("#team"), "#team", "PRIVMSG",
                      "alice!a@h", None, (f"line {i}",))


def stored(path: Path) -> set[str]:
    """What another process would find in the file right now."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT msgid FROM messages")}
    finally:
        db.close()


def test_a_loop_pass_is_one_transaction_and_each_delivery_follows_its_commit(
        tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    delivered: list[str] = []

    async def main() -> None:
        history = History(path)
        await history.read(lambda store: store.count())  # migrate before timing anything

        def deliver(msgid: str) -> None:
            assert msgid in stored(path), "delivered before it was committed"
            delivered.append(f"{msgid}:{who.get()}")

        futures = []
        for i in range(50):
            who.set(f"s{i % 3}")
            futures.append(history.record(message(i), lambda m=f"g{i}": deliver(m)))
        assert delivered == []  # nothing goes out before the commit
        await asyncio.gather(*futures)
        assert history.batches == 1 and history.committed == 50
        # the next pass is the next batch, delivered after the first
        later = [history.record(message(i), lambda m=f"g{i}": deliver(m)) for i in (50, 51)]
        await asyncio.gather(*later)
        assert history.batches == 2
        history.close()

    asyncio.run(main())
    assert [d.split(":")[0] for d in delivered] == [f"g{i}" for i in range(52)]
    # each callback ran in the context of its record() call (a labeled reply, say)
    assert delivered[:4] == ["g0:s0", "g1:s1", "g2:s2", "g3:s0"]


def test_a_batch_that_fails_delivers_nothing_and_tells_each_sender(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    events: list[str] = []

    async def main() -> None:
        history = History(path)
        await history.record(message(1), lambda: events.append("ok 1"))
        # the same msgid again makes the whole next batch fail
        batch = [history.record(message(n), lambda n=n: events.append(f"ok {n}"),
                                lambda n=n: events.append(f"failed {n}")) for n in (2, 1)]
        await asyncio.gather(*batch)
        await history.record(message(3), lambda: events.append("ok 3"))
        history.close()

    asyncio.run(main())
    assert events == ["ok 1", "failed 2", "failed 1", "ok 3"]
    assert stored(path) == {"g1", "g3"}


def test_close_commits_what_is_still_queued(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"

    async def main() -> None:
        history = History(path)
        history.record(message(7))
        history.close()  # before the loop pass ends

    asyncio.run(main())
    assert stored(path) == {"g7"}
