"""The chaton client against a real chaton server: clients run as subprocesses, as users would.

Non-interactive clients (stdin a pipe) print one line per event, which the tests read; one
test drives the interactive client through a pseudo-terminal to claim a registered nickname.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from conftest import RunningServer, add_account, logged_in

REPO = Path(__file__).resolve().parent.parent
PW = "correct horse battery staple"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


class ClientProcess:
    """``python -m chaton.client`` in non-interactive mode, its stdout collected line by line."""

    def __init__(self, server: RunningServer, cwd: Path, *args: str, stdin_first: str = "") -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chaton.client",
                f"{server.host}:{server.port}",
                "--cafile",
                str(server.ca_file),
                *args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=_env(),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        if stdin_first:
            self.type(stdin_first)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait for a line matching the regular expression ``pattern`` (searched)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines[-15:]}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"client ended before {pattern!r}; got {self.lines[-15:]}; "
                    f"stderr {self.stderr()!r}"
                )
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def finish(self, timeout: float = 15.0) -> int:
        """Close stdin (the client then quits) and wait for the exit status."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        return self.wait(timeout)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


class StartClient(Protocol):
    def __call__(self, *args: str, stdin_first: str = "") -> ClientProcess: ...


@pytest.fixture
def clients(server: RunningServer, tmp_path: Path) -> Iterator[StartClient]:
    started: list[ClientProcess] = []

    def start(*args: str, stdin_first: str = "") -> ClientProcess:
        c = ClientProcess(server, tmp_path, *args, stdin_first=stdin_first)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def test_room_message_and_private_message_reach_exactly_their_targets(clients: StartClient) -> None:
    bob = clients("--nick", "bob")
    bob.expect(r"^\d\d:\d\d #general -- bob joined$")
    carol = clients("--nick", "carol")
    carol.expect(r"#general -- carol joined$")
    alice = clients("--nick", "alice")
    alice.expect(r"#general -- alice joined$")
    bob.expect(r"#general -- alice joined$")
    carol.expect(r"#general -- alice joined$")

    alice.type("hello room", "/msg bob psst, just for you", "/me waves")
    for who in (bob, carol):
        who.expect(r"^\d\d:\d\d #general <alice> hello room$")
    bob.expect(r"^\d\d:\d\d \*alice\* psst, just for you$")
    for who in (bob, carol):
        who.expect(r"^\d\d:\d\d #general \* alice waves$")
    alice.expect(r"^\d\d:\d\d #general <alice> hello room$")  # echo-message
    alice.expect(r"^\d\d:\d\d -> \*bob\* psst, just for you$")

    assert alice.finish() == 0
    bob.expect(r"-- alice quit")
    carol.expect(r"-- alice quit")
    assert bob.finish() == 0
    assert carol.finish() == 0
    assert not any("psst" in line for line in carol.lines)
    assert sum("psst" in line for line in bob.lines) == 1


def test_commands_reach_the_server(clients: StartClient) -> None:
    dave = clients("--nick", "dave", "--join", "#ops")
    dave.expect(r"#ops -- dave joined$")
    dave.type("/nosuch", "/topic Deploy at noon", "/who", "/part #ops done here", "/nick dave2")
    dave.expect(r"^-!- unknown command /nosuch")  # local: no time, nothing sent
    dave.expect(r"#ops -- dave changed the topic to: Deploy at noon$")
    dave.expect(r"#ops -- dave \(")
    dave.expect(r"#ops -- dave left \(done here\)$")
    dave.expect(r"-- you are now known as dave2$")
    assert dave.finish() == 0


def test_password_stdin_logs_in_to_a_registered_nick(
    server: RunningServer,
    clients: StartClient,
) -> None:
    add_account(server.settings, "erin", PW)
    erin = clients("--nick", "erin", "--password-stdin", stdin_first=PW)
    erin.expect(r"-!- You are now logged in as erin$")
    erin.expect(r"#general -- erin joined$")
    erin.type("logged in and talking")
    erin.expect(r"#general <erin> logged in and talking$")
    assert erin.finish() == 0
    assert not any(PW in line for line in erin.lines)


def test_registered_nick_without_password_exits_4(
    server: RunningServer, clients: StartClient
) -> None:
    add_account(server.settings, "fay", PW)
    fay = clients("--nick", "fay")
    assert fay.wait() == 4
    err = fay.stderr()
    assert "nickname fay is registered" in err and "--password-stdin" in err


def test_wrong_password_exits_4(server: RunningServer, clients: StartClient) -> None:
    add_account(server.settings, "gus", PW)
    gus = clients("--nick", "gus", "--password-stdin", stdin_first="not it")
    assert gus.wait() == 4
    assert "login as gus failed" in gus.stderr()


def test_admin_kill_and_ban_end_the_victim_with_status_1(
    server: RunningServer,
    clients: StartClient,
) -> None:
    add_account(server.settings, "root", PW, admin=True)
    mallory = clients("--nick", "mallory")
    mallory.expect(r"#general -- mallory joined$")
    root = clients("--nick", "root", "--password-stdin", stdin_first=PW)
    root.expect(r"#general -- root joined$")
    root.type("/kill mallory flooding the room")
    mallory.expect(r"-!- ERROR: .*flooding the room")
    assert mallory.wait() == 1
    assert "flooding the room" in mallory.stderr()

    victim = clients("--nick", "victim")
    victim.expect(r"#general -- victim joined$")
    root.type("/ban victim 1h spam links", "/bans")
    victim.expect(r"banned|Banned")
    assert victim.wait() == 1
    root.expect(r"victim")
    root.type("/unban victim")
    assert root.finish() == 0


def test_hostile_kill_reason_never_reaches_the_terminal_raw(
    server: RunningServer, clients: StartClient
) -> None:
    """An admin's KILL reason that would retitle and clear the victim's terminal is shown
    escaped, in the chat view (stdout) and in the exit message (stderr) alike."""
    add_account(server.settings, "root", PW, admin=True)
    mallory = clients("--nick", "mallory")
    mallory.expect(r"#general -- mallory joined$")
    root = logged_in(server, "root", "root", PW)
    root.send("KILL mallory :\x1b]0;pwned\x07\x1b[2J\x9b2J\u202etxet desrever")
    mallory.expect(r"-!- ERROR: .*pwned")
    assert mallory.wait() == 1
    err = mallory.stderr()
    out = "\n".join(mallory.lines)
    assert "disconnected by the server" in err and "pwned" in err, err
    for text in (out, err):
        bad = [c for c in text if c not in "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)]
        assert not bad and "\u202e" not in text, ascii(text)
    # Shown, not dropped (and proof the hostile bytes really made the round trip):
    assert "^[]0;pwned^G^[[2J<U+009B>2J<U+202E>txet desrever" in err, ascii(err)
    assert "^[]0;pwned^G" in out, ascii(out)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("term", ["xterm", "dumb"])
def test_interactive_client_asks_for_the_password_of_a_registered_nick(
    server: RunningServer, tmp_path: Path, term: str
) -> None:
    import pty

    add_account(server.settings, "hal", PW)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaton.client",
            f"{server.host}:{server.port}",
            "--cafile",
            str(server.ca_file),
            "--nick",
            "hal",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=dict(_env(), TERM=term, PROMPT_TOOLKIT_NO_CPR="1"),
        close_fds=True,
    )
    os.close(slave)
    seen = b""

    def wait_for(text: bytes, timeout: float = 15.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise AssertionError(f"no {text!r} on the terminal; got {seen[-800:]!r}")
            ready, _, _ = select.select([master], [], [], min(remaining, 0.2))
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 65536)

    try:
        wait_for(b"Password for account hal")
        os.write(master, PW.encode() + b"\r")
        wait_for(b"You are now logged in as hal")
        wait_for(b"#general -- hal joined")
        assert PW.encode() not in seen  # typed hidden, never echoed
        os.write(master, b"/quit\r")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
