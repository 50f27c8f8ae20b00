"""The message store in a running server, over real TLS: what a recipient sees is already
in the database file (as another process would find it), under the right conversation."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chaton.history_store import guest_party, private_key

from conftest import RunningServer, add_account, logged_in

PW = "correct horse battery"


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:
    yield start_server(history=True)


def row(db_file: Path, msgid: str) -> tuple[str, str, str, str, list[str]] | None:
    db = sqlite3.connect(db_file)
    try:
        found = db.execute(
            "SELECT target, recipient, command, account, params FROM messages WHERE msgid = ?",
            (msgid,),
        ).fetchone()
    finally:
        db.close()
    if found is None:
        return None
    return found[0], found[1], found[2], found[3], json.loads(found[4])


def test_a_room_message_is_in_the_file_before_anyone_receives_it(server: RunningServer) -> None:
    add_account(server.settings, "alice", PW)
    alice = logged_in(server, "alice", "alice", PW)
    bob = server.client().register("bob", caps=("message-tags",))
    alice.join("#general")  # the default room: registered, so its key is its name
    bob.join("#general")
    alice.send("PRIVMSG #general :kept before sent")
    got = bob.expect("PRIVMSG", "#general")
    msgid = got.tags["msgid"]
    # checked the moment bob has it: the commit came first
    assert row(server.settings.db_file, msgid) == (
        "#general", "#general", "PRIVMSG", "alice", ["kept before sent"])


def test_private_messages_are_kept_per_pair_of_accounts_or_guest_connections(
        server: RunningServer) -> None:
    add_account(server.settings, "alice", PW)
    add_account(server.settings, "bob", PW)
    alice = logged_in(server, "alice", "alice", PW)
    bob = logged_in(server, "bob", "bob", PW)
    for c in (alice, bob):
        c.send("CAP REQ :message-tags echo-message")
        c.expect("CAP", where=lambda m: m.param(1) == "ACK")
    alice.send("PRIVMSG bob :just us")
    to_bob = bob.expect("PRIVMSG", "bob")
    echo = alice.expect("PRIVMSG", "bob")
    assert echo.tags["msgid"] == to_bob.tags["msgid"]
    assert row(server.settings.db_file, to_bob.tags["msgid"]) == (
        private_key("alice", "bob"), "bob", "PRIVMSG", "alice", ["just us"])

    guest = server.client().register("carol", caps=("message-tags",))
    alice.send("PRIVMSG carol :hello guest")
    to_guest = guest.expect("PRIVMSG", "carol")
    target = row(server.settings.db_file, to_guest.tags["msgid"])
    assert target is not None
    parties = sorted(target[0][1:].split("\x00"), key=lambda p: p != "alice")
    assert target[0][0] == "~" and parties[0] == "alice"
    assert parties[1].startswith(guest_party(""))  # this connection, not the nick "carol"


def test_an_unregistered_room_s_history_belongs_to_that_room_s_life(
        server: RunningServer) -> None:
    """Someone who re-creates a room of the same name (and is its operator) must not find
    itself in the earlier room's conversation: the keys differ."""
    a = server.client().register("ann", caps=("message-tags", "echo-message"))
    a.join("#pop")
    a.send("PRIVMSG #pop :first life")
    first = a.expect("PRIVMSG", "#pop").tags["msgid"]
    a.send("PART #pop")
    a.expect("PART")
    a.join("#pop")
    a.send("PRIVMSG #pop :second life")
    second = a.expect("PRIVMSG", "#pop").tags["msgid"]
    one, two = row(server.settings.db_file, first), row(server.settings.db_file, second)
    assert one is not None and two is not None
    assert one[0] != two[0] and one[0].startswith("#pop\x00") and two[0].startswith("#pop\x00")


def test_with_history_off_nothing_is_kept(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(history=False)
    a = server.client().register("ann", caps=("message-tags", "echo-message"))
    a.join("#general")
    a.send("PRIVMSG #general :gone with the wind")
    msgid = a.expect("PRIVMSG", "#general").tags["msgid"]
    assert row(server.settings.db_file, msgid) is None


@pytest.mark.parametrize("max_pending", [20_000, 3])
def test_a_fast_client_without_flood_control_waits_for_the_disk_and_loses_nothing(
        start_server: Callable[..., RunningServer], max_pending: int) -> None:
    """Two rules meet: a sender waits once ``history_max_pending`` messages await the
    disk, and a client past ``flood_max_backlog`` is cut off. Unmetered, its wait is the
    server's doing: it is paused, not disconnected, and everything arrives in order."""
    server = start_server(history=True, flood_rate=0.0, flood_max_backlog=20,
                          history_max_pending=max_pending)
    sender = server.client("blaster").join("#r")
    reader = server.client("reader").join("#r")
    sender.send_raw(b"".join(f"PRIVMSG #r :n{i}\r\n".encode() for i in range(2000)))
    got = [reader.expect("PRIVMSG", "#r").params[1] for _ in range(2000)]
    assert got == [f"n{i}" for i in range(2000)]
    assert not any(m.command == "ERROR" for m in sender.sync())


def test_a_metered_flooder_is_still_cut_off_while_its_messages_commit(
        start_server: Callable[..., RunningServer]) -> None:
    server = start_server(history=True, flood_burst=5, flood_rate=1.0, flood_max_backlog=20)
    flooder = server.client("flooder").join("#r")
    reader = server.client("reader").join("#r")
    flooder.send_raw(b"".join(f"PRIVMSG #r :spam {i}\r\n".encode() for i in range(200)))
    lines = flooder.wait_closed()
    assert any(m.command == "ERROR" and "Excess flood" in m.params[0] for m in lines)
    assert len([m for m in reader.sync() if m.command == "PRIVMSG"]) <= 6


def test_what_a_client_says_after_a_message_never_overtakes_it(server: RunningServer) -> None:
    """Messages reach the sockets only after their commit; everything else a client causes
    (its PART, a numeric, its QUIT and farewell) is queued behind them and keeps its place."""
    # (with CHATHISTORY it is not sent a replay when it joins again)
    sender = server.client().register("sayer", caps=("echo-message", "draft/chathistory"))
    reader = server.client().register("reader")
    reader.join("#order")
    sender.join("#order")
    sender.send_raw(b"PRIVMSG #order :first\r\nPRIVMSG nobody-here :x\r\nPART #order :later\r\n"
                    b"JOIN #order\r\nPRIVMSG #order :second\r\nQUIT :bye\r\n")
    seen = [m for m in sender.wait_closed()
            if m.command in ("PRIVMSG", "401", "PART", "JOIN", "ERROR")]
    assert [m.command for m in seen] == ["PRIVMSG", "401", "PART", "JOIN", "PRIVMSG", "ERROR"]
    got = [reader.expect(c, where=lambda m: m.command != "PING") for c in
           ("PRIVMSG", "PART", "JOIN", "PRIVMSG", "QUIT")]
    assert [m.params[-1] for m in got] == ["first", "later", "#order", "second", "Quit: bye"]
