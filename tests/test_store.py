"""The SQLite store: pragmas, hashes only, append-only audit, migrations, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import chaton
from chaton.config import Settings
from chaton.passwords import Passwords
from chaton.store import (
    SCHEMA_VERSION,
    AccountExists,
    AuditEntry,
    BanRecord,
    Store,
    StoreError,
)

REPO = Path(chaton.__file__).resolve().parent.parent
FAST = Settings().replace(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chaton.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


def _entry(action: str, target: str) -> AuditEntry:
    return AuditEntry(at=1000.0, actor="test", action=action, target=target)


def test_pragmas_wal_foreign_keys_and_private_file(store: Store, db_path: Path) -> None:
    db = store._conn()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version() == SCHEMA_VERSION
    assert (db_path.stat().st_mode & 0o777) == 0o600


def test_only_argon2id_hash_is_stored(db_path: Path) -> None:
    passwords = Passwords(FAST)
    with Store(db_path) as store:
        store.add_account("Alice", passwords.hash(PASSWORD))
        account = store.get_account("alice")
        assert account is not None
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORD not in repr(account)
        assert account.password_hash not in repr(account)
    blob = b"".join(p.read_bytes() for p in db_path.parent.iterdir())
    assert PASSWORD.encode() not in blob
    assert b"$argon2id$" in blob


def test_accounts_are_casefolded_and_unique(store: Store) -> None:
    store.add_account("Nick[1]", "$argon2id$x", "admin")
    with pytest.raises(AccountExists):
        store.add_account("NICK{1}", "$argon2id$y")
    account = store.get_account("nick{1}")
    assert account is not None and account.name == "Nick[1]" and account.is_admin
    assert store.set_role("nick[1]", "user")
    assert not store.set_role("nobody", "admin")
    with pytest.raises(ValueError):
        store.set_role("Nick[1]", "root")
    assert store.delete_account("NICK[1]")
    assert store.get_account("Nick[1]") is None


def test_audit_row_written_in_same_transaction_only_on_change(store: Store) -> None:
    store.add_account("alice", "$argon2id$x", audit=_entry("account.add", "alice"))
    assert not store.delete_account("bob", audit=_entry("account.del", "bob"))
    with pytest.raises(AccountExists):
        store.add_account("ALICE", "$argon2id$x", audit=_entry("account.add", "ALICE"))
    assert [(e.action, e.target) for e in store.audit_since()] == [("account.add", "alice")]


def test_audit_is_append_only(store: Store) -> None:
    store.audit("cli:me", "ban.add", "1.2.3.4", reason="spam", at=5.0)
    db = store._conn()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    assert store.audit_since() == [AuditEntry(5.0, "cli:me", "ban.add", "1.2.3.4", "spam")]
    assert store.audit_since(6.0) == []


def test_bans_upsert_list_and_purge(store: Store) -> None:
    store.add_ban(BanRecord("ip", "192.0.2.1", "first", "a", 1.0, None))
    store.add_ban(BanRecord("ip", "192.0.2.1", "second", "b", 2.0, 50.0))
    store.add_ban(BanRecord("nick", "spammer", "", "a", 3.0, 10.0))
    assert store.get_ban("ip", "192.0.2.1") == BanRecord(
        "ip", "192.0.2.1", "second", "b", 2.0, 50.0
    )
    assert len(store.list_bans()) == 2
    assert [b.value for b in store.list_bans(now=10.0)] == ["192.0.2.1"]
    assert store.purge_expired(10.0) == 1
    assert store.delete_ban("ip", "192.0.2.1")
    assert not store.delete_ban("ip", "192.0.2.1")
    assert store.list_bans() == []


def test_change_feed_names_every_commit_from_every_connection(db_path: Path) -> None:
    with Store(db_path) as server, Store(db_path) as cli:
        start = server.changes_since(0).latest
        cli.add_account("Alice", "$argon2id$x")
        cli.touch_login("alice", 5.0)  # bookkeeping, not a change anyone must react to
        cli.set_role("alice", "admin")
        cli.set_password_hash("alice", "$argon2id$y")
        cli.add_ban(BanRecord("nick", "bob", "", "cli", 1.0))
        server.add_ban(BanRecord("nick", "bob", "again", "srv", 2.0))  # own writes count too
        assert cli.delete_ban("nick", "bob")
        cli.delete_account("alice")
        changes = server.changes_since(start)
        assert not changes.gap
        assert [(c.kind, c.key) for c in changes.items] == [
            ("account", "alice"),
            ("account", "alice"),
            ("account", "alice"),
            ("ban", "nick bob"),
            ("ban", "nick bob"),
            ("ban", "nick bob"),
            ("account", "alice"),
        ]
        assert [c.seq for c in changes.items] == list(range(start + 1, changes.latest + 1))
        assert server.changes_since(changes.latest).items == []
        # Read in pieces, nothing is skipped or repeated.
        first = server.changes_since(start, limit=3)
        rest = server.changes_since(first.latest)
        assert first.items + rest.items == changes.items


def test_change_feed_reports_a_gap_when_pruned(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chaton.store as store_module

    with Store(db_path) as store:
        start = store.changes_since(0).latest
        db = store._conn()
        db.execute("DROP TRIGGER changes_prune")  # prune after 3 rows instead of 10000
        db.execute(
            "CREATE TRIGGER changes_prune AFTER INSERT ON changes"
            " BEGIN DELETE FROM changes WHERE seq <= NEW.seq - 3; END"
        )
        monkeypatch.setattr(store_module, "CHANGES_KEPT", 3)
        for i in range(5):
            store.add_ban(BanRecord("nick", f"n{i}", "", "t", 1.0))
        behind = store.changes_since(start)
        assert behind.gap and behind.items == []
        recent = store.changes_since(behind.latest - 2)
        assert not recent.gap and [c.key for c in recent.items] == ["nick n3", "nick n4"]
        records, seq = store.load_bans(0.0)
        assert seq == behind.latest and len(records) == 5


def _make_v1(path: Path) -> None:
    """A database as chaton schema version 1 left it (accounts only), built by hand."""
    db = sqlite3.connect(path)
    db.execute(
        """CREATE TABLE accounts (
            name_key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            created REAL NOT NULL,
            last_login REAL
        )"""
    )
    db.execute(
        "INSERT INTO accounts VALUES ('alice', 'Alice', '$argon2id$old', 'admin', 12.5, 99.0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_migrates_version_1_database_keeping_data(db_path: Path) -> None:
    db_path.parent.mkdir()
    _make_v1(db_path)
    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        account = store.get_account("ALICE")
        assert account is not None
        assert (account.name, account.role, account.password_hash) == (
            "Alice",
            "admin",
            "$argon2id$old",
        )
        assert (account.created, account.last_login) == (12.5, 99.0)
        seq = store.changes_since(0).latest
        store.add_ban(BanRecord("ip", "192.0.2.9", "", "t", 1.0), audit=_entry("ban.add", "x"))
        assert [c.key for c in store.changes_since(seq).items] == ["ip 192.0.2.9"]
        with pytest.raises(sqlite3.DatabaseError):
            store._conn().execute("DELETE FROM audit")
    with Store(db_path) as again:  # reopening an up-to-date file is a no-op
        assert again.schema_version() == SCHEMA_VERSION
        assert len(again.list_bans()) == 1


def test_empty_file_is_created_at_current_version(db_path: Path) -> None:
    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.list_accounts() == [] and store.list_bans() == []


def test_too_new_database_is_refused_untouched(db_path: Path) -> None:
    db_path.parent.mkdir()
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        Store(db_path)
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()


def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"this is not sqlite, just text" * 100)
    with pytest.raises(StoreError):
        Store(db_path)


def test_closed_store_raises_store_error(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_accounts()


_WRITER = """
import sys, time
from pathlib import Path
from chaton.store import AuditEntry, BanRecord, Store
store = Store(Path(sys.argv[1]))
store.add_account("durable", "$argon2id$h",
                  audit=AuditEntry(at=1.0, actor="t", action="account.add", target="durable"))
store.add_ban(BanRecord("cidr", "198.51.100.0/24", "kept", "t", 2.0))
print("committed", flush=True)
time.sleep(60)
"""


def test_commit_survives_sigkill(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "committed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with Store(db_path) as store:
        assert store.get_account("DURABLE") is not None
        assert store.get_ban("cidr", "198.51.100.0/24") is not None
        assert [e.target for e in store.audit_since()] == ["durable"]


_OPEN_AND_CLOSE = """
import sys
from pathlib import Path
from chaton.store import Store
Store(Path(sys.argv[1])).close()
"""


def test_second_store_and_another_process_never_unlink_a_live_wal(db_path: Path) -> None:
    """Two Stores in one process (the server's reader and writer), then another process that
    opens and closes the database (any CLI command): the first process's WAL must survive.

    Before the fix, building a Store opened and closed the database file itself, which drops
    the process's POSIX locks, so the other process thought it was last and deleted the WAL.
    """
    reader = Store(db_path)
    writer = Store(db_path)
    try:
        writer.add_account("alice", "$argon2id$x")
        wal = db_path.with_name(db_path.name + "-wal")
        assert wal.exists()
        Store(db_path).close()  # a third connection in this process, opened and closed
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", _OPEN_AND_CLOSE, str(db_path)], check=True,
                       env=env, timeout=30)
        assert wal.exists()
        targets = [_readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
        assert not [t for t in targets if "chaton.db" in t and t.endswith("(deleted)")]
        writer.add_account("bob", "$argon2id$y")
        assert reader.get_account("bob") is not None
    finally:
        reader.close()
        writer.close()
    with Store(db_path) as again:
        assert again.integrity_check() == ["ok"]
        assert {a.name for a in again.list_accounts()} == {"alice", "bob"}


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


# --- registered rooms --------------------------------------------------------------------------


def test_a_registered_room_round_trips_and_survives_reopening(db_path: Path) -> None:
    from chaton.store import RoomRecord

    room = RoomRecord(
        key="#team", name="#Team", owner="alice", registered=1000.0, topic="ship it",
        topic_by="alice!~a@user/alice", topic_at=1001.0, flags="imnt", secret_key="k3y",
        user_limit=20, grants={"bob": 2, "alice": 1},
        lists={"b": [("troll!*@*", "alice", 1002.0)], "I": [("$a:carol", "alice", 1003.0)]},
    )
    with Store(db_path) as store:
        seq = store.changes_since(0).latest
        assert store.register_room(room)
        assert not store.register_room(room)  # one registration per key
        assert {c.kind for c in store.changes_since(seq).items} == {"room"}
    with Store(db_path) as store:  # as after a restart
        assert store.get_room("#team") == room
        assert store.save_room_state("#team", topic="new", topic_by="bob", topic_at=2000.0,
                                     flags="nt", secret_key=None, user_limit=None)
        assert store.set_room_grant("#team", "Bob", 0)  # casefolded; 0 takes it away
        assert store.set_room_list_entry("#team", "b", "troll!*@*", "x", 0.0, present=False)
        got = store.get_room("#team")
        assert got is not None and got.topic == "new" and got.secret_key is None
        assert got.grants == {"alice": 1} and got.lists == {"I": [("$a:carol", "alice", 1003.0)]}
        assert [r.key for r in store.list_rooms()] == ["#team"]
        assert store.drop_room("#team") and store.get_room("#team") is None
        assert not store.set_room_grant("#team", "bob", 1)  # nothing left to grant in
        leftovers = store._conn().execute("SELECT COUNT(*) FROM room_grants").fetchone()[0]
        assert leftovers == 0  # the grants went with the room
