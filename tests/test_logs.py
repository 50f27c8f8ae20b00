"""The server log cannot be forged or fed secrets by clients (a real ``chaton serve``)."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.crash import Irc, ServeProcess
from chaton.logsafe import shown

LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
FORGED = "2026-01-01 00:00:00,000 INFO login ip=10.9.9.9 account=boss role=admin"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path).start()
    yield server
    server.kill9()


def _wait_for_log(server: ServeProcess, needle: str) -> None:
    probe = Irc(server.port, server.ca_file)  # connect/disconnect lines follow ours
    probe.send("QUIT :" + needle)
    with pytest.raises(ConnectionError):
        probe.expect(lambda m: False, timeout=5)
    probe.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the log is read by another thread
        if any(needle in line for line in server.log):
            return
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} never logged; last: {server.log[-5:]}")


def test_clients_cannot_forge_log_lines_or_terminal_escapes(serve: ServeProcess) -> None:
    # A SASL account name is base64: it may hold CR/LF and a whole fake line.
    c = Irc(serve.port, serve.ca_file)
    c.send("CAP REQ :sasl")
    c.send("AUTHENTICATE PLAIN")
    c.expect(lambda m: m.command == "AUTHENTICATE")
    authcid = "x\r\n" + FORGED
    blob = base64.b64encode(f"\0{authcid}\0guess".encode()).decode()
    c.send(f"AUTHENTICATE {blob}")
    c.expect(lambda m: m.command == "904")
    c.send("NICK evil")
    c.send("USER e 0 * :e")
    c.send("CAP END")
    c.expect(lambda m: m.command == "001")
    c.send("OPER \x1b]0;pwned\x07 :guess")
    c.expect(lambda m: m.command == "464")
    c.send("QUIT :\x1b[2J\u202egone")
    with pytest.raises(ConnectionError):
        c.expect(lambda m: False, timeout=5)
    c.close()
    _wait_for_log(serve, "marker-after-the-attack")
    for line in serve.log:
        assert LINE_START.match(line) or line.startswith("  | ") or not line, line
        assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line, line
    assert not any(line.startswith(FORGED) for line in serve.log)
    assert any("\\x1b[2J" in line for line in serve.log)  # shown, not obeyed


def test_a_password_typed_as_the_account_name_is_not_logged(serve: ServeProcess) -> None:
    c = Irc(serve.port, serve.ca_file)
    c.send("PASS Tr0ub4dor:horse")  # meant as one password; the part before ':' is a name
    c.send("NICK someone")
    c.send("USER s 0 * :s")
    with pytest.raises(ConnectionError):
        c.expect(lambda m: False, timeout=10)
    _wait_for_log(serve, "marker-after-the-pass")
    assert any("login-failed" in line for line in serve.log)
    assert not any("Tr0ub4dor" in line or "horse" in line for line in serve.log)


@given(st.text())
def test_shown_text_is_one_printable_line(text: str) -> None:
    out = shown(text)
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out and "\x1b" not in out


def test_one_address_cannot_grow_the_log_without_end(tmp_path: Path) -> None:
    """40 plain-text connections from one address: a handful of lines, then one summary."""
    server = ServeProcess(tmp_path, extra="log_lines_per_ip = 5\nlog_window = 1.0\n").start()
    try:
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"NICK plain\r\n")
                while s.recv(4096):  # the server's one-line answer, then its close
                    pass
        deadline = time.monotonic() + 10
        while not any("more like this from 127.0.0.1" in line for line in server.log):
            assert time.monotonic() < deadline, server.log[-5:]
            time.sleep(0.05)
        plain = [line for line in server.log if "not-tls" in line or "disconnect" in line]
        assert len(plain) <= 5, plain
        summary = next(line for line in server.log if "more like this" in line)
        assert int(summary.split("... ")[1].split()[0]) >= 40 - 5
    finally:
        server.kill9()
