"""TLS policy on the wire: old protocol versions and plain-text clients are refused."""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest

from chaton import tls

from conftest import IrcClient, RunningServer


def _can_offer_tls11() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        return False
    return True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(not _can_offer_tls11(), reason="this OpenSSL cannot offer TLS 1.1")
def test_client_limited_to_tls11_is_refused(server: RunningServer) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection((server.host, server.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)) as refused,
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")
    # Refused by the server (an alert or a reset), not by our own OpenSSL.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value).upper()
    # The server still serves a modern client.
    server.client("modern")


def test_negotiates_tls12_or_better_with_aead(server: RunningServer) -> None:
    c = server.client("alice")
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    name, _, _ = c.sock.cipher()
    assert "GCM" in name or "CHACHA20" in name


def test_tls12_client_gets_ecdhe_aead(server: RunningServer) -> None:
    ctx = tls.client_context(server.ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = IrcClient(server.host, server.port, server.ca_file, context=ctx)
    server.clients.append(c)
    c.register("old")
    name, version, _ = c.sock.cipher()
    assert version == "TLSv1.2"
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)


def test_plaintext_client_gets_a_hint_and_is_closed(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"NICK plain\r\nUSER p 0 * :p\r\n")
        data = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"ERROR :") and b"TLS" in data
    server.client("after")


def test_tls_handshake_timeout_drops_silent_client(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(tls_handshake_timeout=0.3)
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        assert raw.recv(10) == b""  # closed by the server without a byte from us
    server.client("after")
