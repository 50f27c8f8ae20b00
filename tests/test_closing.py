"""A refused or dropped client reads why: the close delivers the last ERROR line.

Closing a socket with unread input makes the kernel reset it, which destroys the bytes
still in flight to the peer, the ERROR included. These tests send input the server will
never read, as real clients do (NICK and USER right after the handshake), and check that
every client still reads its reason.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from chaton.store import BanRecord, Store

from conftest import IrcClient, RunningServer

StartServer = Callable[..., RunningServer]


def _reason(client: IrcClient) -> str:
    client.wait_closed(timeout=10)
    errors = [m.param(0) for m in client.log if m.command == "ERROR"]
    return errors[0] if errors else ""


def test_every_client_of_a_banned_address_reads_the_reason(start_server: StartServer) -> None:
    server = start_server(loop="uvloop", connect_rate_per_ip=0, max_clients_per_ip=0,
                          max_unregistered_per_ip=0)
    with Store(server.settings.db_file) as store:
        store.add_ban(BanRecord("ip", "127.0.0.5", "no spam from here", "test", 1000.0))
    server.call(server.server.authority.apply_changes)  # type: ignore[union-attr]
    clients = [server.client(bind="127.0.0.5") for _ in range(10)]
    for c in clients:  # input the server will never read, some of it after its close
        c.send_raw(b"NICK spammer\r\nUSER s 0 * :s\r\n")
    for c in clients:
        with contextlib.suppress(OSError):
            for _ in range(20):
                c.send_raw(b"PRIVMSG #x :junk\r\n" * 200)
    reasons = [_reason(c) for c in clients]
    assert all("no spam from here" in r for r in reasons), reasons


def test_excess_flood_is_explained_to_the_flooder(start_server: StartServer) -> None:
    server = start_server(flood_rate=1.0, flood_burst=2, flood_max_backlog=5)
    clients = [server.client(f"flooder{i}") for i in range(5)]
    for c in clients:
        c.send_raw(b"PRIVMSG nobody :x\r\n" * 300)
    reasons = [_reason(c) for c in clients]
    assert all("Excess flood" in r for r in reasons), reasons
    server.client("after").sync()


def test_a_closing_server_half_closes_and_reads_on_until_the_grace_ends(
    start_server: StartServer,
) -> None:
    """After its last words the server sends FIN but keeps reading, so input still in
    flight cannot turn the close into a reset; after ``close_grace`` it lets go."""
    server = start_server(close_grace=1.0)
    c = server.client("leaver")
    c.send("QUIT :bye")
    c.wait_closed(timeout=5)  # ERROR, close_notify, then FIN
    assert any(m.command == "ERROR" for m in c.log)
    fd = c.sock.fileno()
    for _ in range(20):  # the server is still reading: no reset, however much arrives
        os.write(fd, b"late input the server discards\r\n" * 30)
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while server.call(lambda: len(server.server.sessions)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.call(lambda: len(server.server.sessions)) == 0
