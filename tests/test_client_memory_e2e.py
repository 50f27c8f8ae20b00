"""The client's team memory against a real chaton server that keeps history: what it shows
on join, ``/history``, ``/search``, and the gap it fills after the server really restarted.

To be sure that something is said while the client is away -- after the restart, before
it is back -- its connection goes through a small TCP relay that can hold it off for a
while, as a network would. The server and its data directory are the real ones.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_client_e2e import ClientProcess
from test_client_reconnect import Servers

from conftest import RunningServer

STAMP = r"\[history (?:\d{4}-\d\d-\d\d )?\d\d:\d\d\]"


class Relay:
    """Forwards TCP connections on its own loopback port to the server's; while ``held``,
    new connections are closed at once (the client sees a failed handshake and retries)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.held = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.held:
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            with self._lock:
                self._sockets += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


class _Via:
    """What ClientProcess needs of a server: where to connect and the CA to trust."""

    def __init__(self, port: int, ca_file: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.ca_file = ca_file


@pytest.fixture
def procs() -> Iterator[list[ClientProcess]]:
    started: list[ClientProcess] = []
    yield started
    for c in started:
        c.kill()


def start_client(procs: list[ClientProcess], server: RunningServer | _Via, cwd: Path,
                 *args: str) -> ClientProcess:
    c = ClientProcess(server, cwd, *args)  # type: ignore[arg-type]
    procs.append(c)
    return c


def test_history_is_shown_on_join_marked_and_apart_from_live_messages(
    start_server: Callable[..., RunningServer], procs: list[ClientProcess], tmp_path: Path
) -> None:
    server = start_server(history=True)
    bob = server.client().register("bob", caps=("message-tags", "server-time"))
    bob.join("#general")
    bob.send("PRIVMSG #general :first words")
    bob.send("PRIVMSG #general :alice: when you come, read this")
    bob.sync()
    alice = start_client(procs, server, tmp_path, "--nick", "alice")
    alice.expect(r"#general -- alice joined$")
    alice.expect(rf"^{STAMP} #general <bob> first words$")
    alice.expect(rf"^{STAMP} #general <bob> alice: when you come, read this$")
    bob.send("PRIVMSG #general :live now")
    alice.expect(r"^\d\d:\d\d #general <bob> live now$")
    assert alice.finish() == 0
    assert sum("first words" in line for line in alice.lines) == 1


def test_history_command_goes_back_before_what_is_shown(
    start_server: Callable[..., RunningServer], procs: list[ClientProcess], tmp_path: Path
) -> None:
    server = start_server(history=True, chathistory_max=3)  # join shows 3, /history 3 more
    bob = server.client().register("bob", caps=("message-tags",))
    bob.join("#general")
    for n in range(1, 7):
        bob.send(f"PRIVMSG #general :number {n}")
    bob.sync()
    alice = start_client(procs, server, tmp_path, "--nick", "alice")
    alice.expect(rf"^{STAMP} #general <bob> number 4$")
    alice.expect(rf"^{STAMP} #general <bob> number 6$")
    alice.type("/history")
    for n in (1, 2, 3):
        alice.expect(rf"^{STAMP} #general <bob> number {n}$")
    alice.type("/history")
    alice.expect(r"^-!- #general: no earlier messages$")
    alice.type("/history bob 2")  # a private conversation that never happened
    alice.expect(r"^-!- bob: no earlier messages$|history request failed")
    alice.type("/quit")
    assert alice.wait() == 0
    assert sum("number 5" in line for line in alice.lines) == 1


def test_after_a_restart_the_client_shows_what_was_said_while_it_was_away(
    start_server: Callable[..., RunningServer], procs: list[ClientProcess], tmp_path: Path
) -> None:
    servers = Servers(start_server, history=True)
    relay = Relay(servers.port)
    try:
        via = _Via(relay.port, servers.current.ca_file)
        alice = start_client(procs, via, tmp_path, "--nick", "alice")
        alice.expect(r"#general -- alice joined$")
        bob = servers.current.client().register("bob", caps=("message-tags",))
        bob.join("#general")
        bob.send("PRIVMSG #general :before the restart")
        alice.expect(r"^\d\d:\d\d #general <bob> before the restart$")

        relay.held = True  # alice stays away until bob has spoken
        servers.stop()
        alice.expect(r"^-!- connection lost: .*reconnecting in \d+ s \(attempt 1\)$")
        server = servers.start()
        bob = server.client().register("bob", caps=("message-tags",))
        bob.join("#general")
        bob.send("PRIVMSG #general :while you were away")
        bob.send("NOTICE #general :and this too")
        bob.sync()
        alice.expect(r"cannot reconnect: .*; reconnecting in")  # held off at least once
        relay.held = False

        alice.expect(r"#general -- alice joined$", timeout=30)
        alice.expect(r"^-!- #general: \u2014 2 messages while you were away \u2014$")
        alice.expect(rf"^{STAMP} #general <bob> while you were away$")
        alice.expect(rf"^{STAMP} #general -bob- and this too$")
        bob.send("PRIVMSG #general :welcome back")
        alice.expect(r"^\d\d:\d\d #general <bob> welcome back$")
        assert alice.finish() == 0
        assert sum("before the restart" in line for line in alice.lines) == 1
    finally:
        relay.close()


def test_search_lists_what_the_server_kept_with_time_place_and_sender(
    start_server: Callable[..., RunningServer], procs: list[ClientProcess], tmp_path: Path
) -> None:
    server = start_server(history=True)
    bob = server.client().register("bob", caps=("message-tags",))
    carol = server.client().register("carol", caps=("message-tags",))
    for c in (bob, carol):
        c.join("#general")
    bob.send("PRIVMSG #general :the release is friday")
    carol.send("PRIVMSG #general :release notes are late")
    bob.send("PRIVMSG #general :lunch?")
    bob.sync()
    carol.sync()
    alice = start_client(procs, server, tmp_path, "--nick", "alice")
    alice.expect(r"#general -- alice joined$")
    # Two words: the space goes as \s inside the one SEARCH parameter.
    alice.type("/search release is in #general from bob")
    alice.expect(r'^-!- search "release is" in #general from bob: 1 result$')
    found = r"\[found (?:\d{4}-\d\d-\d\d )?\d\d:\d\d\]"
    alice.expect(rf"^{found} #general <bob> the release is friday$")
    alice.type("/search release")
    alice.expect(r'^-!- search "release": 2 results$')
    alice.expect(rf"^{found} #general <(bob|carol)> ")
    alice.type("/search nowhere-to-be-found")
    alice.expect(r'^-!- search "nowhere-to-be-found": nothing found$')
    assert alice.finish() == 0
