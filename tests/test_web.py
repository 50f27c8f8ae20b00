"""The web side of the TLS listener: HTTPS for files and /metrics, IRC over WebSocket.

Real server, real TLS sockets; the browser-like clients are in ``web_clients``.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable

import h11
import pytest
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.frame_protocol import Opcode

from chaton.web.security_headers import CONTENT_SECURITY_POLICY
from chaton.web.static_files import Asset

from conftest import RunningServer, add_account, logged_in, sasl_login
from web_clients import (
    WsIrcClient,
    https_request,
    raw_frame,
    read_response,
    tls_socket,
    upgrade_headers,
)

PAGE = Asset(b"<!doctype html><title>chaton</title>", "text/html; charset=utf-8", '"abc"')


def _with_page(server: RunningServer) -> None:
    server.call(lambda: server.server.web_assets.update({"/": PAGE, "/index.html": PAGE}))


def ws(server: RunningServer, **kw: object) -> WsIrcClient:
    c = WsIrcClient(server.host, server.port, server.ca_file, **kw)  # type: ignore[arg-type]
    server.clients.append(c)
    return c


# --- HTTPS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("alpn", [True, False], ids=["alpn", "sniffed"])
def test_page_is_served_with_strict_headers(server: RunningServer, alpn: bool) -> None:
    _with_page(server)
    r = https_request(server.host, server.port, server.ca_file, "/", alpn=alpn)
    assert r.status == 200
    assert r.body == PAGE.body
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["etag"] == PAGE.etag


def test_the_packaged_web_client_is_there(server: RunningServer) -> None:
    r = https_request(server.host, server.port, server.ca_file, "/")
    assert r.status == 200, "chaton/web/static/index.html is missing from the package"
    assert b"<script" in r.body and b"type=\"module\"" in r.body
    script = https_request(server.host, server.port, server.ca_file, "/app.js")
    assert script.status == 200
    assert script.headers["content-type"].startswith("text/javascript")


def test_revalidation_and_head(server: RunningServer) -> None:
    _with_page(server)
    r = https_request(server.host, server.port, server.ca_file, "/",
                      headers=[("If-None-Match", PAGE.etag)])
    assert r.status == 304 and r.body == b""
    head = https_request(server.host, server.port, server.ca_file, "/", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(PAGE.body))


@pytest.mark.parametrize("target", ["/nope", "/../../etc/passwd", "/%2e%2e/pyproject.toml",
                                    "/static/../config.py", "//etc/passwd"])
def test_unknown_paths_are_404(server: RunningServer, target: str) -> None:
    r = https_request(server.host, server.port, server.ca_file, target)
    assert r.status == 404
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_only_get_and_head(server: RunningServer) -> None:
    r = https_request(server.host, server.port, server.ca_file, "/", method="POST",
                      headers=[("Content-Length", "0")])
    assert r.status == 405
    assert r.headers["allow"] == "GET, HEAD"


def _raw_exchange(server: RunningServer, data: bytes) -> bytes:
    with tls_socket(server.host, server.port, server.ca_file) as sock:
        sock.sendall(data)
        got = b""
        sock.settimeout(5)
        while True:
            try:
                chunk = sock.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            got += chunk
        return got


def test_hostile_requests_get_an_answer_then_a_close(server: RunningServer) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 40_000 + b"\r\n\r\n"
    assert _raw_exchange(server, huge).startswith(b"HTTP/1.1 431 ")
    assert _raw_exchange(server, b"GET / HTTP/1.1\r\n\x00bad\r\n\r\n").startswith(
        b"HTTP/1.1 400 ")
    # After all that, a normal IRC client and a normal page load are still served.
    server.client("alice")
    _with_page(server)
    assert https_request(server.host, server.port, server.ca_file, "/").status == 200


def test_keep_alive_until_the_request_limit(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(http_requests_per_connection=3)
    _with_page(server)
    with tls_socket(server.host, server.port, server.ca_file) as sock:
        conn = h11.Connection(h11.CLIENT)
        seen = []
        for _ in range(3):
            sock.sendall(conn.send(h11.Request(method="GET", target="/",
                                               headers=[("Host", "localhost")]))
                         + (conn.send(h11.EndOfMessage()) or b""))
            r = read_response(sock, conn)
            seen.append((r.status, r.headers.get("connection")))
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
        assert seen == [(200, None), (200, None), (200, "close")]
        sock.settimeout(5)
        assert sock.recv(100) == b""  # the server closed after the last one


def test_plain_http_to_the_tls_port_is_told_to_use_https(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = raw.recv(4096)
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"https://" in got


def _page_loaded(server: RunningServer) -> tuple[ssl.SSLSocket, h11.Connection]:
    """A connection that has fetched the page and stays open (keep-alive)."""
    sock = tls_socket(server.host, server.port, server.ca_file)
    conn = h11.Connection(h11.CLIENT)
    sock.sendall(conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                 + (conn.send(h11.EndOfMessage()) or b""))
    assert read_response(sock, conn).status == 200
    return sock, conn


def test_a_web_only_connection_is_never_told_irc_words(server: RunningServer) -> None:
    """Closing the server closes HTTP connections with close_notify, not an IRC ERROR."""
    _with_page(server)
    sock, _ = _page_loaded(server)
    server.stop()
    sock.settimeout(5)
    rest = b""
    while chunk := sock.recv(4096):
        rest += chunk
    assert rest == b""
    sock.close()


# --- WebSocket --------------------------------------------------------------------------------
def test_browser_and_tcp_client_talk(server: RunningServer) -> None:
    alice = ws(server)
    assert alice.handshake.headers["sec-websocket-protocol"] == "text.ircv3.net"
    alice.register("alice").join("#team")
    bob = server.client("bob").join("#team")
    bob.send("PRIVMSG #team :hello from tcp")
    got = alice.expect("PRIVMSG", "#team")
    assert got.params[1] == "hello from tcp"
    alice.send("PRIVMSG #team :héllo from the browser ✓")
    assert bob.expect("PRIVMSG", "#team").params[1] == "héllo from the browser ✓"
    alice.send("PRIVMSG bob :private")
    assert bob.expect("PRIVMSG", "bob").params[1] == "private"
    assert all(isinstance(f, TextMessage) for f in alice.frames)
    alice.send("QUIT :bye")
    assert bob.expect("QUIT").params[0] == "Quit: bye"
    alice.wait_closed()
    assert alice.close_code == 1000


def test_binary_subprotocol_gets_binary_frames(server: RunningServer) -> None:
    c = ws(server, protocols=["binary.ircv3.net", "text.ircv3.net"])
    assert c.handshake.headers["sec-websocket-protocol"] == "binary.ircv3.net"
    c.register("bin")
    assert c.frames and all(isinstance(f, BytesMessage) for f in c.frames)


def test_no_subprotocol_means_text(server: RunningServer) -> None:
    c = ws(server, protocols=[])
    assert "sec-websocket-protocol" not in c.handshake.headers
    c.register("plain")
    assert all(isinstance(f, TextMessage) for f in c.frames)


def test_sasl_login_over_websocket(server: RunningServer) -> None:
    add_account(server.settings, "carol", "correct horse battery")
    c = ws(server)
    assert sasl_login(c, "carol", "carol", "correct horse battery").command == "903"
    c.send("CAP END")
    c.expect("001", "carol")


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost",
                                    "https://localhost.evil.example"])
def test_foreign_origin_is_refused(server: RunningServer, origin: str) -> None:
    with pytest.raises(AssertionError, match="upgrade refused: 403"):
        ws(server, origin=origin)
    server.client("still-served")


def test_own_origins_and_programs_are_allowed(server: RunningServer) -> None:
    for origin in (f"https://localhost:{server.port}", f"https://127.0.0.1:{server.port}",
                   f"https://LOCALHOST:{server.port}/", None):
        ws(server, origin=origin).register(f"o{len(server.clients)}")


def test_configured_origins_replace_the_defaults(
    start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(web_origins="https://chat.example.com")
    ws(server, origin="https://chat.example.com").register("ok")
    with pytest.raises(AssertionError, match="403"):
        ws(server, origin=f"https://localhost:{server.port}")


def test_websocket_on_other_paths_or_without_upgrade(server: RunningServer) -> None:
    r = https_request(server.host, server.port, server.ca_file, "/ws")
    assert r.status == 426
    hdrs = [(k, "8" if k == "Sec-WebSocket-Version" else v)
            for k, v in upgrade_headers(server.port, origin=None, protocols=None)]
    r = https_request(server.host, server.port, server.ca_file, "/ws", headers=hdrs[1:])
    assert r.status == 426 and r.headers["sec-websocket-version"] == "13"


def test_oversized_message_gets_417_and_the_client_goes_on(server: RunningServer) -> None:
    c = ws(server).register("big")
    c.send("PRIVMSG big :" + "x" * 100_000)
    c.expect("417")
    c.sync()
    # A fragmented message is one line; a ping frame gets its pong.
    c.send_raw(raw_frame(Opcode.TEXT, b"PRIVMSG big ", fin=False)
               + raw_frame(Opcode.CONTINUATION, b":in two parts"))
    assert c.expect("PRIVMSG", "big").params[1] == "in two parts"
    c.send_raw(c.ws.send(Ping(payload=b"are you there")))
    c.sync()
    assert c.pongs == [b"are you there"]


def test_protocol_errors_close_with_a_reason(server: RunningServer) -> None:
    c = ws(server).register("sloppy")
    c.send_raw(raw_frame(Opcode.TEXT, b"PING unmasked", mask=False))
    c.wait_closed()
    assert c.close_code == 1002
    c2 = ws(server).register("badutf")
    c2.send_raw(raw_frame(Opcode.TEXT, b"PRIVMSG x :\xff\xfe"))
    c2.wait_closed()
    assert c2.close_code == 1007
    server.client("fine")


def test_a_browser_that_stops_reading_gets_sendq(
    start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(sendq_bytes=32_768, flood_exempt_admins=True, flood_rate=0)
    slow = ws(server).register("slow").join("#busy")
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    talker = server.client("talker").join("#busy")
    text = "y" * 400
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for _ in range(50):
            talker.send(f"PRIVMSG #busy :{text}")
        quits = [m for m in talker.sync() if m.command == "QUIT"]
        if quits:
            assert quits[0].params[0] == "SendQ exceeded"
            break
    else:
        raise AssertionError("the slow WebSocket reader was never dropped")
    assert server.call(lambda: server.server.metrics.disconnects["sendq"]) == 1


def test_per_address_limits_hold_for_browsers(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(max_clients_per_ip=2)
    ws(server).register("one")
    ws(server).register("two")
    third = ws(server)
    got = third.wait_closed()
    assert any(m.command == "ERROR" for m in got)


def test_registration_clock_starts_at_the_upgrade(
    start_server: Callable[..., RunningServer]
) -> None:
    """Time spent on HTTP before the upgrade does not count against the chat connection."""
    server = start_server()
    _with_page(server)
    sock, conn = _page_loaded(server)
    session = next(iter(server.server.sessions))
    before = server.call(lambda: session.deadline)
    conn.start_next_cycle()
    sock.sendall(conn.send(h11.Request(method="GET", target="/ws", headers=upgrade_headers(
        server.port, origin=None, protocols=["text.ircv3.net"]))))
    assert read_response(sock, conn).status == 101
    after = server.call(lambda: session.deadline)
    assert after > before
    assert server.call(lambda: session.linked)
    sock.close()


# --- metrics ----------------------------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name``."""
    for line in text.splitlines():
        sample, _, value = line.partition(" ")
        if sample == name:
            return float(value)
    raise AssertionError(f"{name} not in metrics")


def test_metrics_from_loopback_and_their_counters_move(server: RunningServer) -> None:
    get = lambda: https_request(server.host, server.port, server.ca_file, "/metrics")  # noqa: E731
    first = get()
    assert first.status == 200
    assert first.headers["content-type"].startswith("text/plain; version=")
    text = first.body.decode()
    before = _metric(text, "chaton_messages_total")
    delivered = _metric(text, "chaton_deliveries_total")
    a = server.client("a").join("#m")
    b = ws(server).register("b").join("#m")
    server.client("c").join("#m")
    for i in range(5):
        a.send(f"PRIVMSG #m :{i}")
    for _ in range(5):
        b.expect("PRIVMSG", "#m")
    text = get().body.decode()
    assert _metric(text, "chaton_messages_total") == before + 5
    assert _metric(text, "chaton_deliveries_total") == delivered + 10
    assert 'chaton_connections{state="registered"} 3.0' in text
    assert "chaton_websocket_connections 1.0" in text
    assert _metric(text, "chaton_registrations_total") >= 3
    assert "chaton_db_commit_seconds_count" in text
    assert _metric(text, "chaton_database_bytes") > 0
    if os.path.exists("/proc/self/stat"):
        assert _metric(text, "chaton_process_cpu_seconds_total") > 0
    # The row count is read off the loop: the scrape that asked for it, or the next, has it.
    deadline = time.monotonic() + 5
    while "chaton_history_rows " not in text and time.monotonic() < deadline:
        text = get().body.decode()
    assert _metric(text, "chaton_history_rows") >= 5  # the messages, and the JOIN events


def test_metrics_token_is_required_even_on_loopback(
    start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(metrics_token="s3cret-token")
    add_account(server.settings, "dave", "a long password")
    c = server.client()
    assert sasl_login(c, "dave", "dave", "wrong password!").command == "904"

    def get(auth: str | None) -> int:
        hdrs = [("Authorization", auth)] if auth else []
        return https_request(server.host, server.port, server.ca_file, "/metrics",
                             headers=hdrs).status

    assert get(None) == 401
    assert get("Bearer wrong") == 401
    assert get("Basic s3cret-token") == 401
    assert get("Bearer s3cret-token") == 200
    r = https_request(server.host, server.port, server.ca_file, "/metrics",
                      headers=[("Authorization", "Bearer s3cret-token")])
    assert 'chaton_logins_total{result="failed"} 1.0' in r.body.decode()
    assert b"s3cret" not in r.body


def test_metrics_refuse_non_loopback_peers_without_a_token() -> None:
    """Tests may only use loopback, so the rule for other peers is checked on its own."""
    from chaton.web.http_peer import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("127.9.9.9")
    assert not _is_loopback("10.0.0.1") and not _is_loopback("unknown")
    assert not _is_loopback("::ffff:10.0.0.1")


def test_web_can_be_switched_off(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(web=False)
    sock = tls_socket(server.host, server.port, server.ca_file)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    data = sock.recv(4096)
    assert data.startswith(b":") or data.startswith(b"ERROR"), data  # IRC, not HTTP
    sock.close()


def test_pipelined_requests_from_a_client_that_does_not_read_hit_sendq(
    start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(sendq_bytes=65536)
    big = Asset(b"x" * 100_000, "text/plain; charset=utf-8", '"big"')
    server.call(lambda: server.server.web_assets.update({"/big.txt": big}))
    sock = tls_socket(server.host, server.port, server.ca_file)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b"GET /big.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request * 99)  # ~10 MB of answers asked for, none read
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.call(lambda: server.server.metrics.disconnects["sendq"]) == 1:
            break
        time.sleep(0.05)  # polling the server's counter, not synchronising with a peer
    assert server.call(lambda: server.server.metrics.disconnects["sendq"]) == 1
    assert server.call(lambda: len(server.server.sessions)) == 0
    sock.close()
    assert https_request(server.host, server.port, server.ca_file, "/big.txt").status == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_separate_web_port_serves_browsers_too(
    start_server: Callable[..., RunningServer]
) -> None:
    web_port = _free_port()
    server = start_server(web_port=web_port)
    _with_page(server)
    assert https_request(server.host, web_port, server.ca_file, "/").status == 200
    c = WsIrcClient(server.host, web_port, server.ca_file)  # its own origin is allowed
    server.clients.append(c)
    c.register("viaweb").join("#x")
    server.client("viairc").join("#x").send("PRIVMSG #x :both ports, one server")
    assert c.expect("PRIVMSG", "#x").params[1] == "both ports, one server"


def test_reload_changes_the_allowed_origins(server: RunningServer) -> None:
    from chaton.server.reload import reload

    new = server.settings.replace(web_origins="https://team.example.com")
    assert server.call(lambda: reload(server.server, lambda: new))
    ws(server, origin="https://team.example.com").register("later")
    with pytest.raises(AssertionError, match="403"):
        ws(server, origin=f"https://localhost:{server.port}")


def test_a_banned_address_is_told_why_in_the_browser_too(server: RunningServer) -> None:
    """Bans reach WebSocket sessions the same way: refused at the upgrade, with the reason
    as an IRC ERROR the page can show, and a live session is cut off with it."""
    add_account(server.settings, "boss", "the admin's password", admin=True)
    boss = logged_in(server, "boss", "boss", "the admin's password")
    boss.send("OPER boss :the admin's password")
    boss.expect("381")
    victim = ws(server).register("victim")
    boss.send("UBAN ADD 127.0.0.1 FORCE :go away")
    boss.expect("465")  # FORCE: the admin's own connection goes too
    errors = [m.params[0] for m in victim.wait_closed() if m.command == "ERROR"]
    assert errors and "go away" in errors[0]
    assert victim.close_code == 1000
    late = ws(server)
    errors = [m.params[0] for m in late.wait_closed() if m.command == "ERROR"]
    assert errors and "go away" in errors[0]
