"""One browser's HTTPS connection: h11 parses, this answers (files, /metrics, /ws upgrade).

Invariants:
- Sans-IO: bytes come in through :meth:`HttpPeer.receive`; everything that goes out goes
  through the :class:`WebHost` (the TLS transport), which also owns closing.
- Only GET and HEAD are served, without bodies; a request head over
  ``http_max_header_bytes`` gets 431, a malformed one 400, and the connection closes.
  Keep-alive ends after ``http_requests_per_connection`` requests.
- Every response carries the security headers (:mod:`chaton.web.security_headers`).
- ``/ws`` becomes IRC over WebSocket only for a well-formed upgrade from an allowed
  origin (:mod:`chaton.web.origins`); from then on this object is done and the transport
  hands bytes to the :class:`~chaton.web.websocket.WebSocketLink`.
- ``/metrics`` answers only with the configured bearer token (compared in constant
  time), or, with no token configured, only loopback clients.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import h11

from chaton.web.origins import origin_allowed
from chaton.web.security_headers import SECURITY_HEADERS
from chaton.web.static_files import Asset
from chaton.web.websocket import WebSocketLink, accept_key, choose_subprotocol

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["HttpPeer", "WebHost", "looks_like_http"]

log = logging.getLogger("chaton")

#: The first bytes of an HTTP/1.x request; no IRC command is spelt like any of them.
_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
            b"CONNECT ", b"TRACE ")
_SNIFF_BYTES = max(len(m) for m in _METHODS)
_TEXT = b"text/plain; charset=utf-8"


def looks_like_http(first: bytes) -> bool | None:
    """True/False once ``first`` decides it; None while it is a prefix of a method."""
    head = first[:_SNIFF_BYTES]
    if any(head.startswith(m) for m in _METHODS):
        return True
    if len(head) < _SNIFF_BYTES and any(m.startswith(head) for m in _METHODS):
        return None
    return False


class WebHost(Protocol):
    """What the HTTP side needs from the transport under it."""

    @property
    def server(self) -> ChatServer: ...

    @property
    def peer_ip(self) -> str: ...

    def write_plain(self, data: bytes) -> None:
        """Encrypt and send ``data`` now."""

    def end_http(self) -> None:
        """Close the connection cleanly once what was written has gone."""

    def http_request(self) -> None:
        """A request arrived (the connection is not idle)."""

    def client_log(self, level: int, msg: str, *args: object) -> None:
        """Log within the client's address group's budget."""

    def upgrade(self, link: WebSocketLink, trailing: bytes) -> None:
        """Carry IRC over ``link`` from now on; ``trailing`` is its first bytes."""


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every comma-separated value of header ``name`` (h11 lower-cases names)."""
    out: list[str] = []
    for key, value in headers:
        if key == name:
            out += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
    return out


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class HttpPeer:
    """The HTTP/1.1 server side of one connection."""

    __slots__ = ("_assets", "_body", "_conn", "_host", "_request", "_requests", "done")

    def __init__(self, host: WebHost, assets: dict[str, Asset]) -> None:
        self._host = host
        self._assets = assets
        settings = host.server.settings
        self._conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=settings.http_max_header_bytes
        )
        self._request: h11.Request | None = None
        self._requests = 0
        self._body = 0
        self.done = False  # closing, or handed over to the WebSocket

    def receive(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self._conn.receive_data(data)
            self._pump()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._send(status, f"Bad request ({status}).\n".encode(), close=True)
            self._end()

    # --- the request cycle ---------------------------------------------------------------
    def _pump(self) -> None:
        conn = self._conn
        while not self.done:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self._requests += 1
                self._body = 0
                self._request = event
                self._host.http_request()
                if event.method not in (b"GET", b"HEAD"):
                    self._send(405, b"Only GET and HEAD are served here.\n",
                               extra=[(b"allow", b"GET, HEAD")], close=True)
                    self._end()
                    return
            elif isinstance(event, h11.Data):
                self._body += len(event.data)
                if self._body > self._host.server.settings.http_max_header_bytes:
                    self._send(413, b"Requests here carry no body.\n", close=True)
                    self._end()
                    return
            elif isinstance(event, h11.EndOfMessage):
                request, self._request = self._request, None
                if request is not None:
                    self._respond(request)
                if self.done:
                    return
                if conn.our_state is h11.MUST_CLOSE:
                    self._end()
                    return
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._end()
                return

    def _end(self) -> None:
        if not self.done:
            self.done = True
            self._host.end_http()

    def _respond(self, request: h11.Request) -> None:
        target = request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        head = request.method == b"HEAD"
        if path == "/ws":
            self._websocket(request)
        elif path == "/metrics":
            self._metrics(request, head)
        else:
            self._static(request, path, head)

    # --- routes ----------------------------------------------------------------------------
    def _static(self, request: h11.Request, path: str, head: bool) -> None:
        asset = self._assets.get(path)
        if asset is None:
            self._send(404, b"Not found.\n", head=head)
            return
        tags = _header_values(request.headers, b"if-none-match")
        if asset.etag in tags:
            self._send(304, b"", extra=[(b"etag", asset.etag.encode())], head=True)
            return
        self._send(200, asset.body, ctype=asset.content_type.encode(), head=head,
                   extra=[(b"etag", asset.etag.encode()), (b"cache-control", b"no-cache")])

    def _metrics(self, request: h11.Request, head: bool) -> None:
        server = self._host.server
        token = server.settings.metrics_token
        if token:
            given = _header(request.headers, b"authorization") or b""
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(
                value.strip(), token.encode("utf-8")
            ):
                self._send(401, b"A bearer token is required.\n", head=head,
                           extra=[(b"www-authenticate", b'Bearer realm="chaton"')])
                return
        elif not _is_loopback(self._host.peer_ip):
            self._send(403, b"Metrics answer loopback clients only; set metrics_token "
                            b"to let others in.\n", head=head)
            return
        body, ctype = server.metrics.render()
        self._send(200, body, ctype=ctype.encode(), head=head,
                   extra=[(b"cache-control", b"no-store")])

    def _websocket(self, request: h11.Request) -> None:
        headers = request.headers
        upgrade = [v.lower() for v in _header_values(headers, b"upgrade")]
        connection = [v.lower() for v in _header_values(headers, b"connection")]
        if request.method != b"GET" or "websocket" not in upgrade or "upgrade" not in connection:
            self._send(426, b"This address takes IRC over WebSocket only.\n",
                       extra=[(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
            return
        if _header_values(headers, b"sec-websocket-version") != ["13"]:
            self._send(426, b"WebSocket version 13 only.\n",
                       extra=[(b"sec-websocket-version", b"13")])
            return
        key = (_header(headers, b"sec-websocket-key") or b"").decode("latin-1").strip()
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            self._send(400, b"Missing or malformed Sec-WebSocket-Key.\n", close=True)
            self._end()
            return
        origin_raw = _header(headers, b"origin")
        origin = origin_raw.decode("latin-1") if origin_raw is not None else None
        server = self._host.server
        if not origin_allowed(origin, server.web_origins):
            self._host.client_log(logging.INFO, "websocket-refused ip=%s origin=%s",
                                  self._host.peer_ip, origin)
            self._send(403, b"This page's origin may not open a chat connection here.\n",
                       close=True)
            self._end()
            return
        subprotocol = choose_subprotocol(_header_values(headers, b"sec-websocket-protocol"))
        answer = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                  (b"sec-websocket-accept", accept_key(key).encode())]
        if subprotocol is not None:
            answer.append((b"sec-websocket-protocol", subprotocol.encode()))
        data = self._conn.send(h11.InformationalResponse(status_code=101, headers=answer))
        trailing = self._conn.trailing_data[0]
        self.done = True
        self._host.write_plain(data or b"")
        self._host.upgrade(WebSocketLink(subprotocol, server.settings.max_line_total), trailing)

    # --- writing ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, *, ctype: bytes = _TEXT, head: bool = False,
              extra: Sequence[tuple[bytes, bytes]] = (), close: bool = False) -> None:
        headers = [(b"server", b"chaton"), *SECURITY_HEADERS, *extra]
        if status != 304:
            headers += [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if close or self._requests >= self._host.server.settings.http_requests_per_connection:
            headers.append((b"connection", b"close"))
        try:
            out = self._conn.send(h11.Response(status_code=status, headers=headers)) or b""
            if body and not head and status != 304:
                out += self._conn.send(h11.Data(data=body)) or b""
            out += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # the state does not allow an answer: just close
            self._end()
            return
        self._host.write_plain(out)
