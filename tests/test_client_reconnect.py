"""The client comes back by itself after the server goes away -- and only then.

The rules (backoff, what is final) are checked directly; the session's endings against a
server played line by line; and the whole client, as a subprocess, against a real chaton
server that is really stopped and started again on the same port and data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from test_client_e2e import ClientProcess, _env
from test_client_session import FakeUI, connected, exit_of, register, run_async, welcome

from chaton.client import session as session_mod
from chaton.client.connection import ClientExit, Endpoint, open_tls
from chaton.client.history import Memory
from chaton.client.reconnect import Backoff, is_final, status_line
from chaton.client.session import Login, Lost
from chaton.passwords import Passwords
from chaton.store import Store

from conftest import RunningServer, add_account, run_chaton

PW = "correct horse battery staple"


# --- the rules ------------------------------------------------------------------------------
def test_backoff_doubles_to_a_cap_with_jitter_and_starts_again_when_told() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(10)]
    for n, delay in enumerate(delays):
        base = min(60.0, 2.0**n)
        assert 0.75 * base <= delay <= 1.25 * base, (n, delay)
    assert backoff.attempt == 10
    assert len({round(d, 6) for d in delays[6:]}) > 1  # capped, but not in lockstep
    backoff.reset()
    assert 0.75 <= backoff.next() <= 1.25 and backoff.attempt == 1


@pytest.mark.parametrize(
    ("reason", "final"),
    [
        ("Closing Link: 10.0.0.1 (Killed by root: flooding)", True),
        ("Closing Link: 10.0.0.1 (You are banned from this server: spam)", True),
        ("You are K-Lined", True),
        ("G-lined: go away", True),
        ("Closing Link: 10.0.0.1 (Server shutting down)", False),
        ("Closing Link: 10.0.0.1 (Ping timeout: 150 seconds)", False),
        ("Closing Link: 10.0.0.1 (Test over)", False),
        ("Closing Link: 10.0.0.1 (Your password was changed; log in again with the new one)",
         False),
        ("Closing Link: 10.0.0.1 (Quit: banana split)", False),
    ],
)
def test_what_ends_the_client_for_good(reason: str, final: bool) -> None:
    assert is_final(reason) is final


def test_status_line() -> None:
    assert status_line("connection lost: reset", 3.6, 3) == (
        "connection lost: reset; reconnecting in 4 s (attempt 3)")


# --- the session's endings --------------------------------------------------------------------
@run_async
async def test_server_restart_ends_the_session_with_lost_keeping_nick_login_and_rooms() -> None:
    login = Login("alice", "s3cret")
    ui = FakeUI()
    async with connected(ui, reconnect=True) as (session, peer, task):
        await register(peer)
        await welcome(peer)
        session.login = login  # as if logged in at the password question
        peer.send(":alice!u@h JOIN #dev", ":alice!u@h JOIN #ops", ":alice!u@h PART #ops",
                  ":alice!u@h JOIN #ops", ":alice!u@h NICK alicia")
        peer.send("ERROR :Closing Link: 127.0.0.1 (Server shutting down)")
        await peer.close()
        result = await task
        assert isinstance(result, Lost)
        assert result.nick == "alicia" and result.login == login
        assert result.rooms == ("#general", "#dev", "#ops")  # the current room last
        assert result.registered and not result.stable
        assert "Server shutting down" in result.reason
        assert "s3cret" not in repr(result)


@run_async
async def test_kill_and_ban_are_final_even_when_reconnecting() -> None:
    async with connected(FakeUI(), reconnect=True) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        peer.send("ERROR :Closing Link: 127.0.0.1 (Killed by root: flooding)")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and "Killed by root" in exc.message
    async with connected(FakeUI(), reconnect=True, resumed=True) as (_, peer, task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv 465 * :You are banned from this server: spam")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and "banned" in exc.message


@run_async
async def test_a_first_connection_that_never_got_in_is_not_retried() -> None:
    async with connected(FakeUI(), reconnect=True) as (_, peer, task):
        await register(peer)
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and "closed the connection" in exc.message


@run_async
async def test_a_resumed_session_whose_nick_is_still_held_tries_again_later() -> None:
    async with connected(FakeUI(), reconnect=True, resumed=True) as (_, peer, task):
        await register(peer)
        peer.send(":srv 433 * alice :Nickname is already in use")
        result = await task
        assert isinstance(result, Lost) and "still in use" in result.reason
        assert result.rooms == ("#general",)


@run_async
async def test_silence_gets_a_ping_and_then_counts_as_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "IDLE_PING", 0.2)
    monkeypatch.setattr(session_mod, "PING_WAIT", 0.2)
    async with connected(FakeUI(), reconnect=True) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        await peer.expect("PING chaton-keepalive")  # the server answers nothing
        result = await task
        assert isinstance(result, Lost) and "ping timeout" in result.reason
    async with connected(FakeUI(), reconnect=True) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        await peer.expect("PING chaton-keepalive")
        peer.send(":srv PONG srv chaton-keepalive")  # alive: the session goes on
        await peer.expect("PING chaton-keepalive")
        assert not task.done()


@run_async
async def test_a_resumed_session_fills_the_gap_of_its_rooms_and_private_talk() -> None:
    memory = Memory()
    memory.touch("#general", "2024-05-01T09:00:00.000Z")
    memory.touch("bob", "2024-05-01T09:30:00.000Z")
    caps = (":srv CAP * LS :server-time message-tags echo-message sasl=PLAIN batch "
            "draft/chathistory")
    ui = FakeUI()
    async with connected(ui, reconnect=True, resumed=True, memory=memory) as (_, peer, _t):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(caps)
        await peer.expect(
            "CAP REQ :server-time message-tags echo-message sasl batch draft/chathistory")
        peer.send(":srv CAP alice ACK :server-time message-tags echo-message batch "
                  "draft/chathistory")
        await peer.expect("CAP END")
        peer.send(":srv 001 alice :Welcome")
        await peer.expect("JOIN #general",
                          "CHATHISTORY AFTER bob timestamp=2024-05-01T09:29:59.999Z 100")
        target_ask = await peer.next()
        assert target_ask.startswith("CHATHISTORY TARGETS timestamp=2024-05-01T09:30:00.000Z ")
        peer.send("@time=2024-05-01T10:00:00.000Z :alice!u@h JOIN #general")
        await peer.expect("CHATHISTORY AFTER #general timestamp=2024-05-01T08:59:59.999Z 100")
        peer.send(
            ":srv BATCH +g chathistory #general",
            "@batch=g;time=2024-05-01T09:10:00.000Z;msgid=x1 :bob!u@h PRIVMSG #general :hi",
            ":srv BATCH -g",
            "PING sync",
        )
        await peer.expect("PONG sync")
        assert "-!- #general: \u2014 1 message while you were away \u2014" in ui.shown


# --- the whole client against a real server that really restarts ------------------------------
class Servers:
    """One chaton server at a time on one port and data directory, restartable."""

    def __init__(self, start: Callable[..., RunningServer], **settings: object) -> None:
        self._start = start
        self._settings = settings
        self.current = start(**settings)
        self.port = self.current.port

    def stop(self) -> None:
        self.current.stop()

    def start(self) -> RunningServer:
        self.current = self._start(port=self.port, **self._settings)
        return self.current


@pytest.fixture
def servers(start_server: Callable[..., RunningServer]) -> Servers:
    return Servers(start_server)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[ClientProcess]]:
    started: list[ClientProcess] = []
    yield started
    for c in started:
        c.kill()


def client(procs: list[ClientProcess], server: RunningServer, cwd: Path, *args: str,
           stdin_first: str = "") -> ClientProcess:
    c = ClientProcess(server, cwd, *args, stdin_first=stdin_first)
    procs.append(c)
    return c


def test_client_logs_in_again_and_rejoins_after_a_real_restart(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    add_account(servers.current.settings, "erin", PW)
    erin = client(procs, servers.current, tmp_path, "--nick", "erin", "--join", "#general,#ops",
                  "--password-stdin", stdin_first=PW)
    erin.expect(r"You are now logged in as erin$")
    erin.expect(r"#ops -- erin joined$")
    servers.stop()
    erin.expect(r"^-!- connection lost: .*; reconnecting in \d+ s \(attempt 1\)$")
    erin.type("typed while away")  # kept, and sent once back
    erin.expect(r"not connected: that is sent once reconnected")
    server = servers.start()
    erin.expect(r"^-!- connected to ")
    erin.expect(r"You are now logged in as erin$")  # no question: the password was kept
    erin.expect(r"#general -- erin joined$")
    erin.expect(r"#ops -- erin joined$")
    watcher = server.client().register("watcher", caps=("message-tags",))
    watcher.join("#ops")
    erin.expect(r"#ops -- watcher joined$")
    erin.type("back again")
    got = watcher.expect("PRIVMSG", "#ops")
    assert got.params[1] in ("typed while away", "back again")
    assert got.source is not None and got.source.startswith("erin!")
    assert erin.finish() == 0
    assert not any(PW in line for line in erin.lines)
    assert sum("You are now logged in as erin" in line for line in erin.lines) == 2


def test_a_password_that_no_longer_works_ends_the_client_instead_of_looping(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    settings = servers.current.settings
    add_account(settings, "gus", PW)
    gus = client(procs, servers.current, tmp_path, "--nick", "gus", "--password-stdin",
                 stdin_first=PW)
    gus.expect(r"#general -- gus joined$")
    servers.stop()
    gus.expect(r"reconnecting in")
    with Store(settings.db_file) as store:
        store.set_password_hash("gus", Passwords(settings).hash("another password"))
    servers.start()
    assert gus.wait(30) == 4
    assert "login as gus failed" in gus.stderr()
    assert sum(line.startswith("-!- connected to ") for line in gus.lines) == 2


def test_quit_while_waiting_to_reconnect_exits_0(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    ivy = client(procs, servers.current, tmp_path, "--nick", "ivy")
    ivy.expect(r"#general -- ivy joined$")
    servers.stop()  # and it stays down
    ivy.expect(r"reconnecting in \d+ s \(attempt 1\)")
    ivy.expect(r"cannot reconnect: connection refused .*; reconnecting in \d+ s \(attempt 2\)$")
    ivy.type("/quit")
    assert ivy.wait() == 0


def test_ctrl_c_while_waiting_to_reconnect_ends_cleanly(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    jo = client(procs, servers.current, tmp_path, "--nick", "jo")
    jo.expect(r"#general -- jo joined$")
    servers.stop()
    jo.expect(r"reconnecting in")
    jo.proc.send_signal(signal.SIGINT)
    assert jo.wait() == 130
    assert "Traceback" not in jo.stderr()


def test_no_reconnect_exits_1_when_the_server_goes_away(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    kim = client(procs, servers.current, tmp_path, "--nick", "kim", "--no-reconnect")
    kim.expect(r"#general -- kim joined$")
    servers.stop()
    assert kim.wait() == 1
    assert "Test over" in kim.stderr()
    assert not any("reconnecting" in line for line in kim.lines)


def test_own_message_is_shown_once_with_echo_message(
    servers: Servers, procs: list[ClientProcess], tmp_path: Path
) -> None:
    lea = client(procs, servers.current, tmp_path, "--nick", "lea")
    lea.expect(r"#general -- lea joined$")
    lea.type("said once", "/msg lea to myself", "/join #after")
    lea.expect(r"#after -- lea joined$")  # everything before it has been shown
    assert sum("said once" in line for line in lea.lines) == 1
    assert sum("to myself" in line for line in lea.lines) == 1
    assert lea.finish() == 0


def test_help_documents_no_reconnect() -> None:
    out = run_chaton("connect", "--help").stdout
    assert "--no-reconnect" in out and "reconnecting:" in out


def test_a_failed_certificate_check_is_not_worth_another_try(
    servers: Servers, tmp_path: Path
) -> None:
    """Reconnecting retries what may pass by itself; a certificate check that fails does not
    (nor does the first connection, as before)."""
    wrong_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong_ca))
    with pytest.raises(ClientExit) as info:
        asyncio.run(open_tls(Endpoint("127.0.0.1", servers.port, "localhost"), cafile=wrong_ca,
                             fingerprint=None))
    assert info.value.code == 3 and not info.value.transient
    servers.stop()
    with pytest.raises(ClientExit) as info:
        asyncio.run(open_tls(Endpoint("127.0.0.1", servers.port, "localhost"),
                             cafile=servers.current.ca_file, fingerprint=None))
    assert info.value.code == 1 and info.value.transient


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_password_typed_at_the_terminal_is_kept_in_memory_for_the_reconnect(
    servers: Servers, tmp_path: Path
) -> None:
    """Asked once, hidden; after the restart the client logs in again without asking, and
    the password is nowhere on disk or in its command line."""
    import pty

    add_account(servers.current.settings, "hal", PW)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaton.client", f"127.0.0.1:{servers.port}",
         "--cafile", str(servers.current.ca_file), "--nick", "hal"],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path,
        env=dict(_env(), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1"), close_fds=True,
    )
    os.close(slave)
    seen = b""

    def wait_for(text: bytes, count: int = 1, timeout: float = 20.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(text) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise AssertionError(f"no {text!r} x{count}; got {seen[-800:]!r}")
            ready, _, _ = select.select([master], [], [], min(remaining, 0.2))
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 65536)

    try:
        wait_for(b"Password for account hal")
        os.write(master, PW.encode() + b"\r")
        wait_for(b"#general -- hal joined")
        servers.stop()
        wait_for(b"reconnecting in")
        restart = len(seen)
        servers.start()
        # Nothing is typed from here on: logging in again cannot have asked anything.
        wait_for(b"You are now logged in as hal", count=2)
        wait_for(b"#general -- hal joined", count=2)
        assert b"Password for account" not in seen[restart:]
        assert PW.encode() not in seen
        assert PW not in " ".join(proc.args)
        assert not any(PW.encode() in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()
                       and f.suffix != ".db")
        os.write(master, b"/quit\r")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)


@run_async
async def test_rooms_joined_with_a_key_are_rejoined_with_it() -> None:
    memory = Memory()
    ui = FakeUI()
    async with connected(ui, reconnect=True, memory=memory) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        ui.type("/join #vault sesame")
        await peer.expect("JOIN #vault sesame")
        peer.send(":alice!u@h JOIN #vault", ":alice!u@h JOIN #dev", ":alice!u@h JOIN #general")
        await peer.close()
        result = await task
        assert isinstance(result, Lost) and result.rooms == ("#vault", "#dev", "#general")
    async with connected(FakeUI(), rooms=result.rooms, resumed=True, reconnect=True,
                         memory=memory) as (_, peer, _task):
        await register(peer)
        peer.send(":srv 001 alice :Welcome")
        await peer.expect("JOIN #vault sesame", "JOIN #dev,#general")
