"""Nothing lost: the admin CLI next to a running server, one server per data dir, backups,
a failing disk and a damaged database, each tried the way an admin would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.crash import ADMIN, ADMIN_PASSWORD, Irc, ServeProcess
from chaton.store import Store

from conftest import (
    FAST_HASH,
    RunningServer,
    add_account,
    logged_in,
    run_chaton,
    sasl_login,
)

StartServer = Callable[..., RunningServer]
PW = "admin password 1"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    """A real ``chaton serve`` process with an admin account ``boss`` (not yet started)."""
    server = ServeProcess(tmp_path)
    made = server.cli("account", "add", ADMIN, "--admin", "--password-stdin",
                      input=ADMIN_PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    yield server
    server.kill9()


def admin_irc(server: ServeProcess, nick: str = "boss") -> Irc:
    c = Irc(server.port, server.ca_file)
    c.register(nick, ADMIN, ADMIN_PASSWORD)
    return c


def notice(c: Irc, start: str) -> str:
    return c.expect(lambda m: m.command == "NOTICE" and m.param(1).startswith(start)).param(1)


def cli_config(server: RunningServer) -> list[str]:
    config = server.settings.data_dir.parent / "cli.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    return ["--data-dir", str(server.settings.data_dir), "--config", str(config)]


# --- the CLI next to a running server --------------------------------------------------------


def test_cli_next_to_running_server_keeps_the_wal_and_the_acknowledged_ban(
    serve: ServeProcess,
) -> None:
    """The reported scenario: a login, any CLI command, then a ban, kill -9, restart."""
    serve.start()
    boss = admin_irc(serve)  # the first write: last_login
    eve = Irc(serve.port, serve.ca_file)
    eve.register("eve4")
    assert serve.cli("ban", "list").returncode == 0
    assert serve.cli("account", "list").returncode == 0
    assert serve.deleted_db_files() == []
    assert (serve.data_dir / "chaton.db-wal").exists()
    boss.send("UBAN ADD eve4 :acknowledged")
    assert "Banned eve4 permanently" in notice(boss, "Banned")
    serve.kill9()
    serve.start()
    assert "eve4" in serve.cli("ban", "list").stdout
    again = Irc(serve.port, serve.ca_file)
    again.send("NICK eve4")
    again.send("USER u 0 * :u")
    assert "acknowledged" in again.expect(lambda m: m.command == "465").param(1)
    check = serve.cli("check")
    assert check.returncode == 0 and "integrity ok" in check.stdout, check.stderr


def test_cli_changes_reach_the_running_server_within_two_seconds(server: RunningServer) -> None:
    args = cli_config(server)
    victim = server.client("victim", bind="127.0.0.7")
    made = run_chaton("ban", "add", "victim", "--reason", "from the cli", *args)
    assert made.returncode == 0, made.stderr
    victim.wait_closed(timeout=2.0)  # counted from the CLI's exit, i.e. its commit
    assert any("from the cli" in m.param(0) for m in victim.log if m.command == "ERROR")

    assert run_chaton("ban", "del", "victim", *args).returncode == 0
    deadline = time.monotonic() + 2.0
    while True:  # the lifted ban: the nickname is usable again within the poll interval
        c = server.client()
        c.send("NICK victim")
        c.send("USER u 0 * :u")
        got = c.expect(("001", "465"))
        if got.command == "001":
            break
        assert time.monotonic() < deadline, "the lifted ban was still enforced"

    made = run_chaton(
        "account", "add", "newcomer", "--password-stdin", *args, input="pw-12345678\n"
    )
    assert made.returncode == 0, made.stderr
    guest = server.client()
    guest.send("NICK newcomer")  # reserved at once: the server reads accounts per check
    guest.expect("433")


def test_cli_demotion_and_deletion_reach_live_sessions_within_two_seconds(
    server: RunningServer,
) -> None:
    args = cli_config(server)
    add_account(server.settings, "boss", PW, admin=True)
    add_account(server.settings, "chief", PW, admin=True)
    add_account(server.settings, "carol", PW)
    boss = logged_in(server, "boss", "boss", PW)
    guest = server.client("guest")  # admin by OPER, not by its login
    guest.send(f"OPER chief :{PW}")
    guest.expect("381")
    carol = logged_in(server, "carol", "carol", PW)

    for name in ("boss", "chief"):
        made = run_chaton("account", "role", name, "user", *args)
        assert made.returncode == 0, made.stderr
    for c in (boss, guest):
        c.expect("MODE", where=lambda m: m.params[-1] == "-o", timeout=2.0)
        c.expect("NOTICE", where=lambda m: "withdrawn" in m.params[-1])
        c.send("UBAN LIST")
        c.expect("481")

    assert run_chaton("account", "del", "carol", *args).returncode == 0
    carol.wait_closed(timeout=2.0)
    assert any("account was deleted" in m.param(0) for m in carol.log if m.command == "ERROR")


def test_password_reset_by_the_cli_ends_the_sessions_using_the_old_one(
    server: RunningServer,
) -> None:
    args = cli_config(server)
    add_account(server.settings, "carol", PW)
    add_account(server.settings, "chief", PW, admin=True)
    sessions = []
    for nick in ("carol", "carol_phone"):
        sessions.append(logged_in(server, nick, "carol", PW))
    opered = server.client("helper")
    opered.send(f"OPER chief :{PW}")
    opered.expect("381")
    new = "a brand new password"
    for name in ("carol", "chief"):
        made = run_chaton("account", "passwd", name, "--password-stdin", *args, input=new + "\n")
        assert made.returncode == 0, made.stderr
    for c in sessions:
        c.wait_closed(timeout=2.0)
        assert any("password was changed" in m.param(0) for m in c.log if m.command == "ERROR")
    opered.expect("MODE", where=lambda m: m.params[-1] == "-o", timeout=2.0)
    again = server.client()
    assert sasl_login(again, "carol", "carol", new).command == "903"
    assert sasl_login(server.client(), "carol", "carol", PW).command == "904"


def test_banned_admin_account_cannot_oper_and_its_oper_sessions_are_dropped(
    server: RunningServer,
) -> None:
    args = cli_config(server)
    add_account(server.settings, "chief", PW, admin=True)
    opered = server.client("guest1")
    opered.send(f"OPER chief :{PW}")
    opered.expect("381")
    made = run_chaton("ban", "add", "account:chief", "--reason", "left the team", *args)
    assert made.returncode == 0, made.stderr
    opered.wait_closed(timeout=2.0)  # matched by the account it OPER'd as
    assert any("left the team" in m.param(0) for m in opered.log if m.command == "ERROR")
    again = server.client("guest2")
    again.send(f"OPER chief :{PW}")
    again.expect("464")  # the same generic failure as a wrong password
    again.send("UBAN LIST")
    again.expect("481")


def test_cli_ban_committed_between_server_commit_and_cache_update_is_enforced(
    server: RunningServer,
) -> None:
    """The old bug: after its own ban the server adopted the CLI's newer version unread.

    The writer thread is held, UBAN ADD is queued behind it, then a real CLI ban is queued
    right after it and the event loop is held until that CLI commit is in, so the server
    sees its own commit's completion only after the CLI's commit.
    """
    args = cli_config(server)
    add_account(server.settings, "boss", PW, admin=True)
    boss = logged_in(server, "boss", "boss", PW)
    mallory = server.client("mallory", bind="127.0.0.9")
    svc = server.server.accounts
    assert svc is not None
    writer = svc.writer
    gate, cli_done = threading.Event(), threading.Event()

    async def hold() -> None:
        await writer.call(lambda store: gate.wait(10))

    asyncio.run_coroutine_threadsafe(hold(), server.loop)
    boss.send("UBAN ADD spammer :in-server")
    deadline = time.monotonic() + 5
    while writer.queued() < 1:  # the UBAN's write waits behind the gate
        assert time.monotonic() < deadline
        time.sleep(0.01)

    def cli_ban(store: Store) -> None:
        try:
            made = run_chaton("ban", "add", "mallory", "--reason", "from the cli", *args)
            assert made.returncode == 0, made.stderr
        finally:
            cli_done.set()

    async def queue_cli() -> None:
        await writer.call(cli_ban)

    asyncio.run_coroutine_threadsafe(queue_cli(), server.loop)
    while writer.queued() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.loop.call_soon_threadsafe(lambda: cli_done.wait(30))  # hold the loop
    gate.set()
    # The loop is held while the CLI process runs: allow for a slow machine.
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned spammer"), timeout=30)
    mallory.wait_closed(timeout=5)
    assert any("from the cli" in m.param(0) for m in mallory.log if m.command == "ERROR")
    boss.send("UBAN LIST")
    listed = [m.params[-1] for m in boss.sync() if m.command == "NOTICE"]
    assert any(t.startswith("Ban: mallory") for t in listed), listed
    assert any(t.startswith("Ban: spammer") for t in listed), listed


# --- one server per data dir -----------------------------------------------------------------


def test_second_server_on_one_data_dir_is_refused_and_a_killed_one_does_not_block(
    serve: ServeProcess, tmp_path: Path
) -> None:
    serve.start()
    proc = subprocess.run(
        serve.command(), capture_output=True, text=True, env=serve.env,
        timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert lines == [
        f"chaton: error: data dir {serve.data_dir} is in use by chaton (pid {serve.pid}); "
        "stop that server first, or use another --data-dir"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
    serve.kill9()  # leaves serve.lock behind with its pid in it
    assert (serve.data_dir / "serve.lock").exists()
    serve.start()  # the kernel dropped the lock with the process
    admin_irc(serve).close()


# --- backups ---------------------------------------------------------------------------------


def test_backup_while_serving_and_writing_then_restore(serve: ServeProcess, tmp_path: Path) -> None:
    serve.start()
    boss = admin_irc(serve)
    acked: list[str] = []
    stop = threading.Event()

    def keep_banning() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            boss.send(f"UBAN ADD busy{n} :load")
            notice(boss, f"Banned busy{n}")
            acked.append(f"busy{n}")

    writer = threading.Thread(target=keep_banning)
    writer.start()
    try:
        while len(acked) < 20:
            time.sleep(0.01)
        before = list(acked)
        backup = tmp_path / "backups" / "chaton-backup.db"
        backup.parent.mkdir()
        made = serve.cli("backup", str(backup))
        after = list(acked)
    finally:
        stop.set()
        writer.join(30)
    assert made.returncode == 0, made.stderr
    assert "check ok" in made.stdout
    assert (backup.stat().st_mode & 0o777) == 0o600
    with Store(backup, readonly=True) as copy:
        assert copy.integrity_check() == ["ok"]
        saved = {b.value for b in copy.list_bans()}
    assert set(before) <= saved <= set(after)  # a snapshot of one moment during the writes
    assert serve.cli("backup", str(backup)).returncode == 1  # no silent overwrite
    check = serve.cli("check")
    assert check.returncode == 0 and "integrity ok" in check.stdout

    refused = serve.cli("restore", str(backup))
    assert refused.returncode == 1 and "in use by chaton" in refused.stderr
    assert serve.stop() == 0
    restored = serve.cli("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "before-restore" in restored.stdout
    serve.start()
    listing = serve.cli("ban", "list").stdout
    assert all(name in listing for name in saved)
    assert not any(f"{name} " in listing for name in set(after) - saved)


def test_restore_refuses_a_damaged_or_too_new_backup(serve: ServeProcess, tmp_path: Path) -> None:
    import sqlite3

    from chaton.store import SCHEMA_VERSION

    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    before = (serve.data_dir / "chaton.db").read_bytes()
    for bad, why in ((newer, "newer than this chaton"), (junk, "not a database")):
        proc = serve.cli("restore", str(bad))
        assert proc.returncode == 1 and why in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert (serve.data_dir / "chaton.db").read_bytes() == before  # untouched


def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    empty = tmp_path / "typo"
    for args in (("ban", "list"), ("account", "list"), ("audit",), ("check",),
                 ("backup", str(tmp_path / "x.db"))):
        proc = run_chaton(*args, "--data-dir", str(empty))
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("chaton: error: no database at"), proc.stderr
    assert not (empty / "chaton.db").exists()


# --- a damaged database ----------------------------------------------------------------------


def _damage(db_file: Path) -> None:
    """Overwrite a page in the middle of a real database (as a bad disk would)."""
    with Store(db_file) as store:
        for i in range(400):
            store.audit("t", "filler", f"target {i}", "x" * 200)
    data = bytearray(db_file.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[5 * page : 7 * page] = b"\xa5" * (2 * page)
    db_file.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["not a database", "damaged pages"])
def test_damaged_database_at_startup_is_one_clear_line(serve: ServeProcess, kind: str) -> None:
    db_file = serve.data_dir / "chaton.db"
    if kind == "not a database":
        db_file.write_bytes(b"this is not sqlite, just text" * 200)
    else:
        _damage(db_file)
    proc = subprocess.run(
        serve.command(), capture_output=True, text=True, env=serve.env,
        timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("chaton: error")]
    assert len(errors) == 1, proc.stderr
    assert str(db_file) in errors[0] and "restore a backup" in errors[0]
    assert "Traceback" not in proc.stderr
    checked = serve.cli("check")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr


# --- a failing disk --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount rights: skipped with the reason otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    # Unbuffered: a buffered file would raise ENOSPC again when closed, with what it held.
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):  # to the last byte the disk takes
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
    return filler


def test_disk_full_admin_gets_fail_and_stays_connected(
    start_server: StartServer, small_disk: Path
) -> None:
    server = start_server(data_dir=small_disk / "data", history=True)
    add_account(server.settings, "boss", PW, admin=True)
    boss = logged_in(server, "boss", "boss", PW)
    boss.join("#room")
    boss.send("PRIVMSG ChanServ :REGISTER #room")
    boss.expect("NOTICE", "boss", where=lambda m: "registered to" in m.params[-1])
    victim = server.client("victim").join("#room")
    filler = _fill(small_disk)

    boss.send("UBAN ADD spammer :disk full")
    fail = boss.expect("FAIL", "UBAN", "STORE_ERROR")
    assert "Ban not saved" in fail.params[-1] and "full" in fail.params[-1]
    boss.send("KILL victim :disk full")
    assert "KILL not done" in boss.expect("FAIL", "KILL", "STORE_ERROR").params[-1]
    boss.send("KICK #room victim :disk full")
    boss.expect("FAIL", "KICK", "STORE_ERROR")
    boss.send(f"OPER boss :{PW}")
    boss.expect("FAIL", "OPER", "STORE_ERROR")
    boss.send("MODE #room +m")  # a registered room: not committed, so not changed
    boss.expect("FAIL", "MODE", "STORE_ERROR")
    boss.send("TOPIC #room :unsaved")
    boss.expect("FAIL", "TOPIC", "STORE_ERROR")
    boss.send("MODE #room")
    assert boss.expect("324").params[2] == "+nt"
    boss.sync()  # still connected, and so is the victim (nothing was done)
    # A message cannot be stored either, so it is not delivered, and its sender is told.
    victim.send("PRIVMSG #room :still here")
    victim.expect("FAIL", "PRIVMSG", "MESSAGE_ERROR", "#room")
    assert all(m.command != "PRIVMSG" for m in boss.sync())
    with Store(server.settings.db_file, readonly=True) as store:
        assert store.get_ban("nick", "spammer") is None
        assert [e.action for e in store.audit_since()] == ["room-register"]
        record = store.get_room("#room")
        assert record is not None and record.flags == "nt" and record.topic == ""

    filler.unlink()
    boss.send("UBAN ADD spammer :disk has room again")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned spammer"))


def test_second_in_process_server_on_one_data_dir_is_refused(server: RunningServer) -> None:
    from chaton.datadir import DataDirInUse
    from chaton.server.app import ChatServer
    from chaton.server.setup import attach_services

    second = ChatServer(server.settings, ssl_context=server.server.ssl_context)
    with pytest.raises(DataDirInUse, match="is in use by chaton"):
        attach_services(second)
    assert second.accounts is None


# --- directory permissions -------------------------------------------------------------------


def test_an_existing_shared_data_dir_is_not_chmodded_but_reported(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--data-dir /tmp`` must not make /tmp private; a new data dir is made 0700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with caplog.at_level("WARNING", logger="chaton"):
        server = start_server(data_dir=shared)
        server.client("alice").sync()
    assert (shared.stat().st_mode & 0o7777) == 0o1777
    assert any("readable or writable by other users" in r.getMessage() for r in caplog.records)
    assert (server.settings.db_file.stat().st_mode & 0o777) == 0o600

    fresh = tmp_path / "new" / "data"
    old_umask = os.umask(0o022)
    try:
        start_server(data_dir=fresh).client("bob").sync()
    finally:
        os.umask(old_umask)
    assert (fresh.stat().st_mode & 0o777) == 0o700
