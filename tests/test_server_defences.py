"""Hostile or broken clients: each test sends the bad input, then proves chat still works."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest

from chaton.protocol.message import Message
from chaton.server.commands import Command

from conftest import IrcClient, RunningServer

StartServer = Callable[..., RunningServer]


def still_serves(server: RunningServer) -> None:
    """A fresh client can still register, join and talk."""
    a = server.client(f"ok{time.monotonic_ns() % 100000}").join("#check")
    b = server.client(f"ok{time.monotonic_ns() % 100000}b").join("#check")
    a.send("PRIVMSG #check :still here")
    assert b.expect("PRIVMSG", "#check").params[1] == "still here"


def _conn_of(server: RunningServer, nick: str):  # type: ignore[no-untyped-def]
    return server.call(lambda: server.server.state.find_nick(nick))


# --- line limits and odd bytes --------------------------------------------------------------


def test_overlong_line_gets_417_and_is_not_buffered(server: RunningServer) -> None:
    c = server.client("long").join("#r")
    c.send("PRIVMSG #r :" + "x" * 600)
    c.expect("417")
    # 100 KiB without a line end: one 417, and the framer holds at most one line.
    c.send_raw(b"PRIVMSG #r :" + b"y" * 100_000)
    c.expect("417")
    conn = _conn_of(server, "long")
    held = server.call(lambda: conn.link._framer.pending)
    assert held <= server.settings.max_line_total
    c.send_raw(b"\r\n")
    c.send("PRIVMSG #r :short again")
    assert not [m for m in c.sync() if m.command == "417"]
    still_serves(server)


def test_tags_have_their_own_allowance(server: RunningServer) -> None:
    a = server.client()
    a.register("tagger", caps=("message-tags",))
    a.join("#r")
    b = server.client("reader")
    b.send("CAP REQ :message-tags")
    b.expect("CAP")
    b.join("#r")
    big_tag = "+example/x=" + "v" * 3000
    a.send(f"@{big_tag} PRIVMSG #r :" + "z" * 400)  # 3 KB of tags + a 420-byte body: fine
    got = b.expect("PRIVMSG", "#r")
    assert got.tags["+example/x"] == "v" * 3000
    a.send("@+example/y=" + "v" * 5000 + " PRIVMSG #r :too many tags")
    a.expect("417")


def test_invalid_utf8_nul_and_bare_cr_are_defined(server: RunningServer) -> None:
    a = server.client("bytes").join("#r")
    b = server.client("reader").join("#r")
    a.send_raw(b"PRIVMSG #r :caf\xe9 \xff\r\n")  # Latin-1, not UTF-8: refused (UTF8ONLY)
    assert a.expect("FAIL").params[:2] == ("PRIVMSG", "INVALID_UTF8")
    a.send_raw(b"PRIVMSG #r :nul\x00byte\r\n")
    assert "NUL" in a.expect("400").params[-1]
    a.send_raw(b"PRIVMSG #r :first\rPRIVMSG #r :second\r\n")  # bare CR ends a line
    assert b.expect("PRIVMSG", "#r").params[1] == "first"
    assert b.expect("PRIVMSG", "#r").params[1] == "second"
    still_serves(server)


def test_echoed_input_cannot_forge_parameters(server: RunningServer) -> None:
    c = server.client("forger")
    c.send("WHOIS :evil 001 you :pwned")
    reply = c.expect("401")
    assert reply.params[1] == "*"
    c.send("NICK :two words")
    assert c.expect("432").params[1] == "*"
    c.send("JOIN :#a b")
    assert c.expect("476").params[1] == "*"  # a bad room name, echoed as "*"
    c.send("MODE :x y")
    assert c.expect("401").params[1] == "*"


# --- timeouts ------------------------------------------------------------------------------


def test_registration_timeout(start_server: StartServer) -> None:
    server = start_server(registration_timeout=0.4)
    c = server.client()
    c.send("NICK slowpoke")
    lines = c.wait_closed()
    assert any(m.command == "ERROR" and "Registration timeout" in m.params[0] for m in lines)
    still_serves(server)


def test_ping_timeout_drops_silent_client(start_server: StartServer) -> None:
    server = start_server(ping_interval=0.3, ping_timeout=0.4)
    silent = server.client("silent").join("#r")
    watcher = server.client("watcher").join("#r")
    seen: list[Message] = []
    deadline = time.monotonic() + 3
    while not any(m.command == "QUIT" for m in seen):  # the watcher keeps itself alive
        assert time.monotonic() < deadline
        seen += watcher.sync()
        time.sleep(0.05)
    lines = silent.wait_closed()
    assert any(m.command == "PING" for m in silent.log)
    assert any(m.command == "ERROR" and "Ping timeout" in m.params[0] for m in lines)
    quit_ = next(m for m in seen if m.command == "QUIT")
    assert (quit_.source or "").startswith("silent!") and "Ping timeout" in quit_.params[0]


def test_non_tls_bytes_are_closed_with_one_log_line(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chaton")
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while raw.recv(4096):
            pass
    time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == "chaton"]
    assert len([line for line in lines if line.startswith("not-tls")]) == 1
    assert "TLS" in next(line for line in lines if line.startswith("not-tls"))
    assert not [r for r in caplog.records if r.exc_info]
    still_serves(server)


# --- flood control -------------------------------------------------------------------------


def test_burst_is_delayed_not_dropped(start_server: StartServer) -> None:
    server = start_server(flood_burst=5, flood_rate=50.0, flood_max_backlog=40)
    a = server.client("chatty").join("#r")
    b = server.client("reader").join("#r")
    a.send_raw(b"".join(f"PRIVMSG #r :line {i}\r\n".encode() for i in range(30)))
    got = [b.expect("PRIVMSG", "#r").params[1] for _ in range(30)]
    assert got == [f"line {i}" for i in range(30)]


def test_flood_past_the_backlog_is_disconnected(start_server: StartServer) -> None:
    server = start_server(flood_burst=5, flood_rate=1.0, flood_max_backlog=20)
    a = server.client("flooder").join("#r")
    b = server.client("reader").join("#r")
    a.send_raw(b"".join(f"PRIVMSG #r :spam {i}\r\n".encode() for i in range(200)))
    lines = a.wait_closed()
    assert any(m.command == "ERROR" and "Excess flood" in m.params[0] for m in lines)
    got = [m for m in b.sync() if m.command == "PRIVMSG"]
    assert len(got) <= 6  # the burst, perhaps one refill; never the 200
    still_serves(server)


# --- slow consumers ------------------------------------------------------------------------


def test_reader_that_never_reads_is_dropped_and_others_are_not_delayed(
    start_server: StartServer,
) -> None:
    server = start_server(sendq_bytes=256 * 1024, flood_rate=0.0)
    # A client with a tiny receive buffer that never reads.
    stuck = IrcClient(server.host, server.port, server.ca_file)
    server.clients.append(stuck)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.register("stuck").join("#r")
    sender = server.client("sender").join("#r")
    reader = server.client("reader").join("#r")
    stuck_conn = _conn_of(server, "stuck")
    line = "PRIVMSG #r :" + "x" * 400 + "\r\n"
    total = 20_000  # about 8.5 MB towards a client that reads nothing
    peak = 0
    received = 0
    for start in range(0, total, 500):
        sender.send_raw((line * 500).encode())
        queued = server.call(stuck_conn.queued_bytes)
        peak = max(peak, queued)
        while received < start + 500:
            reader.expect("PRIVMSG", "#r")
            received += 1
    assert received == total  # the reader got everything, in step with the sender
    assert peak <= server.settings.sendq_bytes + 4096  # never more than the limit (+1 line)
    assert server.call(lambda: stuck_conn.closing)
    assert server.call(lambda: stuck_conn.close_reason) == "SendQ exceeded"
    assert server.call(lambda: server.server.state.find_nick("stuck")) is None


# --- connection limits ---------------------------------------------------------------------


def test_total_connection_limit(start_server: StartServer) -> None:
    server = start_server(max_clients=3)
    held = [server.client(f"c{i}") for i in range(3)]
    extra = server.client()
    lines = extra.wait_closed()
    assert any(m.command == "ERROR" and "Too many connections" in m.params[0] for m in lines)
    held[0].send("QUIT")
    held[0].wait_closed()
    deadline = time.monotonic() + 5
    while server.call(lambda: server.server.admission.open) > 2:  # a closing one counts no more
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.client("fits")


def test_per_ip_limit_leaves_other_addresses_alone(start_server: StartServer) -> None:
    server = start_server(max_clients_per_ip=2, host="127.0.0.1")
    a = [server.client(f"a{i}", bind="127.0.0.2") for i in range(2)]
    third = server.client(bind="127.0.0.2")
    lines = third.wait_closed()
    assert any("from your address" in m.params[0] for m in lines if m.command == "ERROR")
    server.client("other", bind="127.0.0.3")
    assert len(a) == 2


def test_connection_rate_per_ip(start_server: StartServer) -> None:
    server = start_server(connect_rate_per_ip=3, connect_rate_window=30.0)
    for i in range(3):
        c = server.client(f"r{i}", bind="127.0.0.4")
        c.send("QUIT")
        c.wait_closed()
    fast = server.client(bind="127.0.0.4")
    lines = fast.wait_closed()
    assert any("too fast" in m.params[0] for m in lines if m.command == "ERROR")
    server.client("elsewhere", bind="127.0.0.5")


# --- bugs stay contained -------------------------------------------------------------------


def test_handler_bug_closes_only_that_connection(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chaton")

    def broken(srv: object, conn: object, msg: Message) -> None:
        raise RuntimeError("secret internal detail")

    server.call(lambda: server.server.commands.__setitem__("BOOM", Command(broken)))
    victim = server.client("victim").join("#r")
    bystander = server.client("bystander").join("#r")
    victim.send("BOOM")
    lines = victim.wait_closed()
    errors = [m for m in lines if m.command == "ERROR"]
    assert errors and "Internal server error" in errors[0].params[0]
    assert not any("secret" in " ".join(m.params) for m in victim.log)
    assert bystander.expect("QUIT").source.startswith("victim!")  # type: ignore[union-attr]
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1])
               for r in caplog.records)
    still_serves(server)


# --- cost-aware flood control -------------------------------------------------------------


def test_a_target_named_twice_is_answered_and_delivered_once(server: RunningServer) -> None:
    asker = server.client("asker").join("#r")
    member = server.client("member").join("#r")
    asker.send("NAMES #r,#r,#R,#r")
    got = asker.sync()
    assert [m.command for m in got].count("366") == 1
    asker.send("PRIVMSG #r,#R,#r :once")
    asker.sync()  # its PING waits for its messages' delivery (history commit first)
    member.sync()
    assert [m.params[-1] for m in member.log if m.command == "PRIVMSG"] == ["once"]


def test_targmax_names_every_multi_target_command(server: RunningServer) -> None:
    c = server.client("probe")
    tokens = [t for m in c.log if m.command == "005" for t in m.params]
    targmax = next(t for t in tokens if t.startswith("TARGMAX="))
    for command in ("PRIVMSG", "NOTICE", "NAMES", "KICK", "JOIN", "PART", "WHOIS"):
        assert f"{command}:" in targmax and f"{command}:," not in targmax + ",", targmax


def test_replies_are_charged_by_what_they_produce(start_server: StartServer) -> None:
    """Six WHOs of a 30-member room cost far more than six lines: the flooder is cut off;
    six PINGs from the same kind of client are not."""
    server = start_server(flood_rate=0.5, flood_burst=10, flood_max_backlog=3,
                          flood_reply_lines=10, max_clients_per_ip=0,
                          connect_rate_per_ip=0)
    for i in range(30):
        server.client(f"m{i}").join("#big")
    who = server.client("who-spammer").join("#big")
    who.send_raw(b"WHO #big\r\n" * 6)
    lines = who.wait_closed(timeout=10)
    assert any("Excess flood" in m.param(0) for m in lines if m.command == "ERROR")
    pinger = server.client("pinger").join("#big")
    pinger.send_raw(b"PING :x\r\n" * 6)
    pinger.sync(timeout=20)


# --- long replies and junk rooms ------------------------------------------------------------


def test_list_of_many_rooms_is_paced_not_a_sendq_drop(start_server: StartServer) -> None:
    """Hundreds of rooms with long topics make a LIST far bigger than the send queue: it
    arrives whole, as the client reads it, and the asker stays connected."""
    server = start_server(sendq_bytes=16384, max_channels_per_user=400, flood_rate=0,
                          rooms_created_per_ip=0)
    junk = server.client("junk")
    topic = "t" * 300
    for batch in range(0, 300, 30):
        rooms = ",".join(f"#junk{i}" for i in range(batch, batch + 30))
        junk.send(f"JOIN {rooms}")
        for i in range(batch, batch + 30):
            junk.send(f"TOPIC #junk{i} :{topic}")
        junk.sync(timeout=20)
    asker = server.client("asker")
    asker.send("LIST")
    asker.expect("323", timeout=30)
    listed = [m for m in asker.log if m.command == "322"]
    listed = [m for m in listed if m.params[1] != "#general"]  # the registered default room
    assert len(listed) == 300  # ~100 KiB through a 16 KiB send queue
    asker.sync()  # still connected
    asker.send("LIST >0")
    asker.expect("323")
    asker.send("LIST #junk1*")
    got = asker.sync()
    assert sorted(m.params[1] for m in got if m.command == "322") == sorted(
        ["#junk1", *(f"#junk1{i}" for i in range(10)), *(f"#junk1{i:02d}" for i in range(100))]
    )


def test_room_creation_is_limited_per_address(start_server: StartServer) -> None:
    server = start_server(rooms_created_per_ip=3, rooms_created_window=600.0)
    c = server.client("maker", bind="127.0.0.6")
    c.send("JOIN #a1,#a2,#a3,#a4")
    c.expect("437", "maker", "#a4")
    other = server.client("other", bind="127.0.0.7")
    other.join("#b1")  # another address is not affected
    c.join("#b1")  # joining an existing room is not creating one


def test_who_of_a_room_bigger_than_the_send_queue_is_paced(start_server: StartServer) -> None:
    server = start_server(sendq_bytes=4096, max_clients_per_ip=0, connect_rate_per_ip=0,
                          max_unregistered_per_ip=0)
    for i in range(40):
        server.client(f"member{i:02d}-with-a-longish-nick").join("#big")
    asker = server.client("asker").join("#big")
    asker.send("WHO #big")
    asker.expect("315", timeout=20)
    assert len([m for m in asker.log if m.command == "352"]) == 41
    asker.sync()  # ~5 KiB of WHO through a 4 KiB send queue, and still connected
