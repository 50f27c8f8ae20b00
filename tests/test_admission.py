"""Admission under attack: silent and unregistered connections cannot lock real users out."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

from chaton import tls
from chaton.server.addresses import address_group

from conftest import IrcClient, RunningServer

StartServer = Callable[..., RunningServer]


def _silent(server: RunningServer, bind: str) -> ssl.SSLSocket:
    """A connection that completes TLS and then says nothing, as a slot-exhaustion attack."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                   source_address=(bind, 0))
    return tls.client_context(server.ca_file).wrap_socket(raw, server_hostname="localhost")


def _count(server: RunningServer) -> int:
    return server.call(lambda: server.server.admission.open)


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_silent_connections_cannot_fill_the_server(start_server: StartServer) -> None:
    server = start_server(max_clients=30, max_unregistered=10, max_unregistered_per_ip=8,
                          connect_rate_per_ip=0)
    members = [server.client(f"member{i}") for i in range(5)]  # registered first
    attackers = [_silent(server, f"127.0.0.{2 + i % 6}") for i in range(40)]
    _wait_for(lambda: _count(server) <= 5 + 10)  # the oldest silent ones made room
    late = server.client("late-user")  # a real user still gets in and registers
    late.join("#general")
    for m in members:
        m.sync()  # registered users were never evicted
    for a in attackers:
        a.close()


def test_the_evicted_connection_is_told_why(start_server: StartServer) -> None:
    server = start_server(max_unregistered=2, connect_rate_per_ip=0)
    first = IrcClient("127.0.0.1", server.port, server.ca_file, bind="127.0.0.2")
    first.send("CAP LS 302")  # registering, slowly
    first.sync()
    second = IrcClient("127.0.0.1", server.port, server.ca_file, bind="127.0.0.3")
    second.sync()
    third = IrcClient("127.0.0.1", server.port, server.ca_file, bind="127.0.0.4")
    third.sync()
    lines = first.wait_closed()
    assert any("waited longest" in m.param(0) for m in lines if m.command == "ERROR")
    third.register("third")


def test_unregistered_cap_per_address_group(start_server: StartServer) -> None:
    server = start_server(max_unregistered_per_ip=3, connect_rate_per_ip=0, ipv4_prefix=24)
    held = [_silent(server, f"127.0.0.{10 + i}") for i in range(3)]  # one /24: one group
    _wait_for(lambda: _count(server) == 3)
    refused = IrcClient("127.0.0.1", server.port, server.ca_file, bind="127.0.0.20")
    lines = refused.wait_closed()
    assert any("still registering from your address" in m.param(0)
               for m in lines if m.command == "ERROR")
    server.client("elsewhere", bind="127.0.1.1")  # another /24 is not affected
    for h in held:
        h.close()


def test_a_connection_that_sends_nothing_is_closed_with_a_reason(
    start_server: StartServer,
) -> None:
    server = start_server(first_line_timeout=0.5)
    silent = IrcClient("127.0.0.1", server.port, server.ca_file)
    talking = IrcClient("127.0.0.1", server.port, server.ca_file)
    talking.send("CAP LS 302")  # it spoke: registration_timeout applies, not this one
    lines = silent.wait_closed(timeout=5)
    assert any("No command within" in m.param(0) for m in lines if m.command == "ERROR")
    talking.send("CAP END")
    talking.register("talker")


def test_address_groups() -> None:
    assert address_group("2001:db8::1") == address_group("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_group("2001:db8:0:1::1") != address_group("2001:db8::1")
    assert address_group("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_group("10.1.2.3") == "10.1.2.3"
    assert address_group("10.1.2.3", ipv4_prefix=24) == "10.1.2.0/24"
    assert address_group("2001:db8::1", ipv6_prefix=128) == "2001:db8::1"


def test_a_refused_connection_that_never_starts_tls_goes_soon(
    start_server: StartServer,
) -> None:
    """Refused (over its address's limit) and silent: closed after close_grace, not after
    the whole TLS handshake timeout, so such connections cannot pile up."""
    server = start_server(max_clients_per_ip=1, tls_handshake_timeout=30.0, close_grace=0.5)
    server.client("first", bind="127.0.0.8")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                   source_address=("127.0.0.8", 0))
    raw.settimeout(5)
    assert raw.recv(1) == b""  # closed by the server within seconds, not 30 s
    raw.close()
