"""The message store's SQL on a real SQLite file: batches, positions and every range query."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.history_store import (
    HistoryStore,
    NewMessage,
    guest_party,
    private_key,
    room_key,
)
from chaton.store import Store, StoreError


def message(i: int, target: str = "#team", *, at: float | None = None,
            command: str = "PRIVMSG") -> NewMessage:
    return NewMessage(
        msgid=f"m{i}", at=1000.0 + i if at is None else at, target=room_key(target),
        recipient=target, command=command, source="alice!a@alice.users.chat.local",
        account="alice", params=(f"message {i}",), tags={"+draft/reply": "m0"} if i == 3 else None,
    )


@pytest.fixture
def history(tmp_path: Path) -> HistoryStore:
    h = HistoryStore(tmp_path / "chaton.db")
    h.append([message(i) for i in range(10)])
    return h


def texts(found: list) -> list[str]:  # type: ignore[type-arg]
    return [m.params[0] for m in found]


def test_a_batch_comes_back_in_order_with_its_tags(history: HistoryStore) -> None:
    found = history.latest("#team", 100)
    assert texts(found) == [f"message {i}" for i in range(10)]
    assert found[3].tags == {"+draft/reply": "m0"} and found[2].tags is None
    assert found[0].account == "alice" and found[0].recipient == "#team"


def test_each_range_query(history: HistoryStore) -> None:
    pos = {i: history.position("#team", msgid=f"m{i}") for i in range(10)}
    assert texts(history.latest("#team", 3)) == ["message 7", "message 8", "message 9"]
    assert texts(history.latest("#team", 100, after=pos[6])) == ["message 7", "message 8",
                                                                  "message 9"]
    assert texts(history.before("#team", pos[6], 2)) == ["message 4", "message 5"]
    assert texts(history.after("#team", pos[3], 2)) == ["message 4", "message 5"]
    assert texts(history.between("#team", pos[1], pos[5], 2)) == ["message 2", "message 3"]
    assert texts(history.between("#team", pos[5], pos[1], 2)) == ["message 3", "message 4"]
    assert texts(history.around("#team", pos[7], 3)) == ["message 6", "message 7", "message 8"]
    assert texts(history.around("#team", pos[7], 1)) == ["message 7"]


def test_timestamps_and_unknown_references(history: HistoryStore) -> None:
    assert history.position("#team", at=1004.5) == history.position("#team", msgid="m5")
    past_end = history.position("#team", at=5000.0)
    assert past_end is not None and history.latest("#team", 10, after=past_end) == []
    assert history.position("#team", msgid="nope") is None
    # a message id of another conversation is no reference here
    assert history.position("#other", msgid="m1") is None


def test_the_command_filter_leaves_events_out(tmp_path: Path) -> None:
    h = HistoryStore(tmp_path / "chaton.db")
    h.append([message(0), message(1, command="TOPIC"), message(2, command="TAGMSG"),
              message(3)])
    assert texts(h.latest("#team", 10, commands=("PRIVMSG", "NOTICE"))) == ["message 0",
                                                                           "message 3"]
    assert len(h.latest("#team", 10)) == 4


def test_private_conversations_are_listed_per_party(tmp_path: Path) -> None:
    h = HistoryStore(tmp_path / "chaton.db")
    guest = guest_party("x1")
    pair = private_key("alice", "bob")
    assert pair == private_key("bob", "alice")
    with_guest = private_key("alice", guest)
    h.append([
        NewMessage("p1", 10.0, pair, "bob", "PRIVMSG", "alice!a@h", "alice", ("hi",),
                   parties=(("alice", "bob"), ("bob", "alice"))),
        NewMessage("p2", 20.0, with_guest, "carol", "PRIVMSG", "alice!a@h", "alice", ("yo",),
                   parties=(("alice", "carol"), (guest, "alice"))),
    ])
    assert h.conversations("alice", 0, 100, 10) == [(pair, "bob", 10.0),
                                                    (with_guest, "carol", 20.0)]
    assert h.conversations("bob", 0, 100, 10) == [(pair, "alice", 10.0)]
    assert h.conversations(guest, 15, 100, 10) == [(with_guest, "alice", 20.0)]
    assert h.conversations("carol", 0, 100, 10) == []  # carol-the-account never talked


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    h = HistoryStore(tmp_path / "chaton.db")
    h.append([message(1)])
    with pytest.raises(StoreError):
        h.append([message(2), message(1)])  # m1 again: the msgid is unique
    assert texts(h.latest("#team", 10)) == ["message 1"]


def test_purge_is_bounded_and_oldest_first(history: HistoryStore) -> None:
    assert history.purge_before(1007.0, 3) == 3
    assert texts(history.latest("#team", 100))[0] == "message 3"
    assert history.purge_before(1007.0, 100) == 4
    assert history.purge_before(1007.0, 100) == 0
    assert history.count() == 3


@given(ats=st.lists(st.integers(0, 50), min_size=0, max_size=40),
       gaps=st.sets(st.integers(0, 39)), cutoff=st.integers(0, 55))
@settings(max_examples=60, deadline=None)
def test_purge_never_deletes_a_message_that_is_not_old_enough(
        tmp_path_factory: pytest.TempPathFactory, ats: list[int], gaps: set[int],
        cutoff: int) -> None:
    """Ids grow with time but a clock may step back, and redactions leave gaps: whatever
    the order, a purge deletes only messages older than its cutoff, and with the times in
    order it deletes all of them."""
    h = HistoryStore(tmp_path_factory.mktemp("purge") / "chaton.db")
    try:
        h.append([NewMessage(f"p{i}", float(at), "#team", "#team", "PRIVMSG", "a!a@h", None,
                             (f"t{at}",)) for i, at in enumerate(ats)])
        for i in gaps & set(range(len(ats))):
            h._db.execute("DELETE FROM messages WHERE msgid = ?", (f"p{i}",))
        left = [at for i, at in enumerate(ats) if i not in gaps]
        while h.purge_before(float(cutoff), 3):
            pass
        kept = [int(m.params[0][1:]) for m in h.latest("#team", 100)]
        young = [at for at in left if at >= cutoff]
        assert [at for at in kept if at >= cutoff] == young  # never one too young
        if left == sorted(left):
            assert kept == young  # and in time order, every old one goes
    finally:
        h.close()


def test_history_commits_do_not_sync_but_admin_facts_still_do(tmp_path: Path) -> None:
    h = HistoryStore(tmp_path / "chaton.db")
    assert h._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with Store(tmp_path / "chaton.db") as admin_facts:
        assert admin_facts._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # another connection (the CLI, a backup) sees what the history writer committed
    h.append([message(1)])
    other = sqlite3.connect(tmp_path / "chaton.db")
    assert other.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    other.close()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
def test_ranges_agree_with_a_plain_list(tmp_path_factory: pytest.TempPathFactory, n: int,
                                        data: st.DataObject) -> None:
    """Every range query equals slicing the list of messages in the order they were sent."""
    h = HistoryStore(tmp_path_factory.mktemp("h") / "chaton.db")
    h.append([message(i) for i in range(n)])
    sent = [f"message {i}" for i in range(n)]
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1))
    limit = data.draw(st.integers(1, 40))
    pi = h.position("#team", msgid=f"m{i}")
    pj = h.position("#team", msgid=f"m{j}")
    assert pi is not None and pj is not None
    assert texts(h.before("#team", pi, limit)) == sent[max(0, i - limit):i]
    assert texts(h.after("#team", pi, limit)) == sent[i + 1:i + 1 + limit]
    assert texts(h.latest("#team", limit)) == sent[-limit:]
    inner = sent[min(i, j) + 1:max(i, j)]
    expected = inner[:limit] if i <= j else inner[-limit:] if limit < len(inner) else inner
    assert texts(h.between("#team", pi, pj, limit)) == expected
    around = texts(h.around("#team", pi, limit))
    assert sent[i] in around and len(around) <= limit
    assert around == sent[sent.index(around[0]):sent.index(around[0]) + len(around)]
    h.close()


def test_a_version_8_database_keeps_its_messages_and_they_become_searchable(
        tmp_path: Path) -> None:
    """Migration 9 rebuilds the messages table: rows stored by the previous version stay,
    in order, and the search index is filled with their words."""
    import sqlite3

    from chaton.store import _MIGRATIONS

    path = tmp_path / "chaton.db"
    db = sqlite3.connect(path)
    for statements in _MIGRATIONS[:8]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 8")
    db.executemany(
        "INSERT INTO messages (msgid, at, target, recipient, command, source, account,"
        " params) VALUES (?, ?, '#old', '#old', 'PRIVMSG', 'ann!a@h', NULL, ?)",
        [(f"v8-{i}", 1000.0 + i, f'["old words {i}"]') for i in range(3)])
    db.commit()
    db.close()
    h = HistoryStore(path)
    try:
        assert [m.params[0] for m in h.latest("#old", 10)] == [f"old words {i}" for i in range(3)]
        assert [m.msgid for m in h.search(["words"], [("#old", None)])] == [
            "v8-0", "v8-1", "v8-2"]
    finally:
        h.close()
