"""Group commit: one transaction per loop pass, output released only after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from chaton.history_store import NewMessage, room_key
from chaton.server.history import History
from chaton.server.lines import Outgoing


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


class Queue:
    """A connection's output queue as the group commit sees it: lines in, a socket out.
    Each write checks the file, as a reader of the socket would have it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queued: list[bytes] = []
        self.written: list[bytes] = []
        self.done = 0

    @property
    def sent_lines(self) -> int:
        return self.done + len(self.queued)

    def hold(self) -> None:
        pass

    def release(self, mark: int) -> None:
        count = mark - self.done
        part, self.queued = self.queued[:count], self.queued[count:]
        in_file = stored(self.path)
        for line in part:
            msgid = line.decode().strip().rsplit(" ", 1)[-1]
            if b"PRIVMSG" in line:
                assert msgid in in_file, f"{msgid} written before its commit"
        self.written += [line for line in part if line]
        self.done += len(part)

    def blank(self, lines: set[int]) -> None:
        self.queued = [b"" if id(line) in lines else line for line in self.queued]


def accept(history: History, queue: Queue, i: int) -> Outgoing:
    """What the relay does: queue the line to the recipient, record the row."""
    out = Outgoing("alice!a@h", "PRIVMSG", ("#team", f"g{i}"))
    queue.queued.append(out.plain)
    history.record(message(i), out, lambda: queue.queued.append(f"FAIL g{i}".encode()))
    return out


def test_a_loop_pass_is_one_transaction_and_output_waits_for_its_commit(
        tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    queue = Queue(path)

    async def main() -> None:
        history = History(path)
        await history.read(lambda store: store.count())  # migrate before timing anything
        for i in range(50):
            accept(history, queue, i)
        assert history.hold([queue])  # the server's flush at the end of the pass
        assert history.busy and queue.written == []
        await history.wait()
        assert history.batches == 1 and history.committed == 50 and not history.busy
        assert len(queue.written) == 50
        # the next pass is the next batch
        for i in (50, 51):
            accept(history, queue, i)
        queue.queued.append(b"a reply after them")  # e.g. a numeric to the sender
        history.hold([queue])
        await history.wait()
        assert history.batches == 2
        assert not history.hold([queue])  # nothing pending: output may go at once
        history.close()

    asyncio.run(main())
    assert [line.decode().strip().rsplit(" ", 1)[-1] for line in queue.written[:52]] == [
        f"g{i}" for i in range(52)]
    assert queue.written[-1] == b"a reply after them"


def test_rows_recorded_while_a_commit_runs_form_the_next_group(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    queue = Queue(path)

    async def main() -> None:
        history = History(path)
        accept(history, queue, 0)
        history.hold([queue])
        await asyncio.sleep(0)  # the pass ends: batch 1 goes to the writer thread
        for i in range(1, 30):  # several passes while it commits
            accept(history, queue, i)
            history.hold([queue])
            await asyncio.sleep(0)
        await history.wait()
        await history.wait()
        assert history.committed == 30 and history.batches < 30
        history.close()

    asyncio.run(main())
    assert len(queue.written) == 30


def test_a_batch_that_fails_reaches_nobody_and_tells_each_sender(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    queue = Queue(path)

    async def main() -> None:
        history = History(path)
        accept(history, queue, 1)
        history.hold([queue])
        await history.wait()
        # the same msgid again makes the whole next batch fail
        accept(history, queue, 2)
        accept(history, queue, 1)
        queue.queued.append(b"JOIN #team")  # an event in the same pass still goes out
        history.hold([queue])
        await history.wait()
        accept(history, queue, 3)
        history.hold([queue])
        await history.wait()
        history.close()

    asyncio.run(main())
    assert [line.decode().strip() for line in queue.written] == [
        ":alice!a@h PRIVMSG #team g1", "JOIN #team", "FAIL g2", "FAIL g1",
        ":alice!a@h PRIVMSG #team g3"]
    assert stored(path) == {"g1", "g3"}


def test_a_sender_waits_only_when_the_disk_is_behind(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"
    queue = Queue(path)

    async def main() -> None:
        history = History(path, max_pending=5)
        for i in range(5):
            accept(history, queue, i)
        assert not history.backlogged
        accept(history, queue, 5)
        assert history.backlogged
        history.hold([queue])
        await history.wait()
        assert not history.backlogged and history.pending == 0
        history.close()

    asyncio.run(main())


def test_close_commits_what_is_still_queued(tmp_path: Path) -> None:
    path = tmp_path / "chaton.db"

    async def main() -> None:
        history = History(path)
        history.record(message(7))
        history.close()  # before the loop pass ends

    asyncio.run(main())
    assert stored(path) == {"g7"}
