"""kill -9 at random moments while the IRC admin and the CLI write: nothing acknowledged is lost.

The harness (``bench/crash.py``) is shared with the soak (``python -m bench.crash``); here it
runs a short, seeded version on every CI run.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from bench.crash import Irc, ServeProcess, run_cycles

CI_CYCLES = 20


def test_acknowledged_writes_survive_kill9_next_to_the_cli(tmp_path: Path) -> None:
    report = run_cycles(tmp_path, CI_CYCLES, seed=20261202)
    assert report.problems == []
    assert report.cli_failures == []
    assert report.cycles == CI_CYCLES
    # The run must actually have exercised both writers across the crashes.
    assert report.acknowledged >= CI_CYCLES * 5


def test_every_message_anyone_received_before_kill9_is_in_the_store(tmp_path: Path) -> None:
    """Issue 14's promise: a message is in the WAL before it is delivered, so killing the
    server mid-conversation loses nothing that any client has seen."""
    server = ServeProcess(tmp_path, extra="flood_rate = 0\nhistory = true\n").start()
    try:
        sender, receiver = (Irc(server.port, server.ca_file) for _ in range(2))
        receiver.send("CAP REQ :message-tags")
        receiver.send("CAP END")
        receiver.register("rita")
        sender.register("sam")
        for c in (receiver, sender):
            c.send("JOIN #general")
            c.expect(lambda m: m.command == "366")

        def talk() -> None:
            with contextlib.suppress(OSError):
                for i in range(5000):
                    sender.send(f"PRIVMSG #general :line {i}")

        threading.Thread(target=talk, daemon=True).start()
        seen: list[str] = []
        with contextlib.suppress(ConnectionError, TimeoutError):
            while True:
                msg = receiver.expect(lambda m: m.command == "PRIVMSG", timeout=10)
                seen.append(msg.tags["msgid"])
                if len(seen) == 300:
                    server.kill9()  # mid-stream: more lines are being relayed
        for c in (sender, receiver):
            c.close()
    finally:
        server.kill9()
    assert len(seen) >= 300
    db = sqlite3.connect(server.data_dir / "chaton.db")
    try:
        kept = {row[0] for row in db.execute("SELECT msgid FROM messages")}
    finally:
        db.close()
    assert [m for m in seen if m not in kept] == []
