"""Blocking HTTPS and IRC-over-WebSocket clients for the tests, over real TLS sockets.

``https_request`` speaks HTTP/1.1 through h11; :class:`WsIrcClient` is an
:class:`~conftest.IrcClient` whose lines travel as WebSocket messages (wsproto as the
client), so every conversation helper of the suite works for a browser-like client too.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Pong,
    TextMessage,
)
from wsproto.events import (
    Message as WsMessage,
)
from wsproto.frame_protocol import Opcode

from chaton import tls
from chaton.protocol.message import parse

from conftest import IrcClient


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def tls_socket(host: str, port: int, ca_file: Path, *, alpn: bool = True) -> ssl.SSLSocket:
    ctx = tls.client_context(ca_file)
    if alpn:
        ctx.set_alpn_protocols(["h2", "http/1.1"])  # what a browser offers
    raw = socket.create_connection((host, port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_response(sock: ssl.SSLSocket, conn: h11.Connection) -> Response:
    """Read one response (head and body) from ``conn``."""
    head: h11.Response | h11.InformationalResponse | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            conn.receive_data(data)
            if not data and head is None:
                raise AssertionError("connection closed before a response")
            continue
        if isinstance(event, h11.InformationalResponse):
            head = event
            break
        if isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    assert head is not None
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
    return Response(head.status_code, headers, body, list(head.headers))


def https_request(
    host: str, port: int, ca_file: Path, target: str = "/", *, method: str = "GET",
    headers: list[tuple[str, str]] | None = None, alpn: bool = True,
) -> Response:
    """One request on a fresh connection."""
    with tls_socket(host, port, ca_file, alpn=alpn) as sock:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("Host", f"localhost:{port}"), *(headers or [])]
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=hdrs))
                     + (conn.send(h11.EndOfMessage()) or b""))
        return read_response(sock, conn)


def upgrade_headers(port: int, *, origin: str | None, protocols: list[str] | None,
                    key: str | None = None) -> list[tuple[str, str]]:
    key = key or base64.b64encode(os.urandom(16)).decode()
    hdrs = [("Host", f"localhost:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if origin is not None:
        hdrs.append(("Origin", origin))
    if protocols:
        hdrs.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    return hdrs


class WsIrcClient(IrcClient):
    """An IRC test client speaking through a WebSocket, as a browser page does."""

    def __init__(self, host: str, port: int, ca_file: Path, *,
                 origin: str | None = "default", protocols: list[str] | None = None) -> None:
        self.sock = tls_socket(host, port, ca_file)
        if origin == "default":
            origin = f"https://localhost:{port}"
        conn = h11.Connection(h11.CLIENT)
        hdrs = upgrade_headers(
            port, origin=origin, protocols=["text.ircv3.net"] if protocols is None else protocols)
        self.sock.sendall(conn.send(h11.Request(method="GET", target="/ws", headers=hdrs))
                          + (conn.send(h11.EndOfMessage()) or b""))
        self.handshake = read_response(self.sock, conn)
        if self.handshake.status != 101:
            raise AssertionError(f"upgrade refused: {self.handshake.status} "
                                 f"{self.handshake.body!r}")
        self.ws = Connection(ConnectionType.CLIENT)
        self.ws.receive_data(conn.trailing_data[0])
        self.pending = []
        self.log = []
        self.closed = False
        self.nick = None
        self._token = 0
        self.frames: list[WsMessage] = []  # every data message, as received
        self.close_code: int | None = None
        self.pongs: list[bytes] = []
        self._partial = ""
        self._take_events()

    def send(self, line: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=line)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _take_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self.frames.append(event)
                text = event.data if isinstance(event, TextMessage) else event.data.decode()
                assert "\r" not in text and "\n" not in text, f"CR/LF in a frame: {text!r}"
                self._partial += text
                if event.message_finished:
                    msg = parse(self._partial)
                    self._partial = ""
                    self.pending.append(msg)
                    self.log.append(msg)
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code

    def _take(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._take_events()


def raw_frame(opcode: Opcode, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame built by hand (for frames wsproto would refuse to write)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
