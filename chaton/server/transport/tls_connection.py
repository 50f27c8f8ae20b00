"""The TLS transport: bytes in through TLS and the line framer, lines out through a bounded queue.

It knows nothing of nicknames, accounts or IRC commands: framed lines go up to the
client's :class:`~chaton.server.session.Session`, encoded lines come down from it.

Invariants:
- The transport never awaits. Reads are handled in ``data_received``.
- Memory per client is bounded by settings: the framer holds at most one line, the send
  queue at most ``sendq_bytes``; past that the reader is dropped, its backlog discarded.
- Output is queued with :meth:`send` and written by :meth:`flush`, which the server calls
  once per event-loop pass for every transport with output: many messages, one TLS
  record, one ``write()``. With history on, the server may :meth:`hold` the queue
  instead; the group commit then releases it up to the mark once the messages
  in it are committed (``chaton.server.history``), so lines leave in the order queued.
- ``_written`` + ``len(_out)`` == ``sent_lines``: marks are counts of lines queued.
- Nothing is written in plain text except the one-line hint to a client that is not
  speaking TLS; after a close starts, nothing more is queued.
- A close delivers its last words: after the final ``ERROR`` (and TLS close_notify) the
  socket is half-closed and further input is read and discarded until the peer closes or
  ``close_grace`` expires. Closing a socket with unread input would make the kernel reset
  it and destroy the bytes still in flight, the reason included.
- A handshake not finished within ``tls_handshake_timeout`` is aborted by this transport's
  own timer; registration and ping timeouts belong to the session.
- Browsers share the listener: a connection whose ALPN is ``http/1.1``, or whose first
  plaintext bytes are an HTTP request line, is handed to an :class:`HttpPeer` (files,
  ``/metrics``); a WebSocket upgrade turns it into an IRC link whose lines travel as
  WebSocket frames (:class:`WebSocketLink`). The session only learns of the link when it
  can carry IRC (``link_ready``), so an HTTP-only connection never talks IRC. Everything
  above (bounded queue, SendQ, marks, farewell) holds the same for a WebSocket link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import sys
import time
from typing import TYPE_CHECKING, cast

from chaton.server.session import Session
from chaton.server.transport.tls_stream import TLS_RECORD_HANDSHAKE, TlsClosed, TlsStream
from chaton.web.http_peer import HttpPeer, looks_like_http
from chaton.web.websocket import WebSocketLink

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["TlsConnection", "peer_ip"]

log = logging.getLogger("chaton")

PLAINTEXT_REPLY = (
    b"ERROR :chaton speaks TLS only. Connect with TLS (e.g. chaton connect, or your IRC "
    b"client's TLS option) to this port.\r\n"
)
_PLAINTEXT_HTTP_BODY = b"chaton speaks TLS only: open this address with https:// instead.\n"
PLAINTEXT_HTTP_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_PLAINTEXT_HTTP_BODY)).encode()
    + b"\r\n\r\n" + _PLAINTEXT_HTTP_BODY
)
#: WebSocket close codes that are a normal goodbye, not an error.
_NORMAL_CLOSE = (1000, 1001, 1005)


def peer_ip(transport: asyncio.BaseTransport) -> str:
    """The client's address as text, IPv4-mapped IPv6 shown as plain IPv4."""
    peer = transport.get_extra_info("peername")
    if not peer:
        return "unknown"
    try:
        addr = ipaddress.ip_address(peer[0])
    except ValueError:
        return str(peer[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class TlsConnection(asyncio.Protocol):
    """One TCP connection speaking TLS, carrying one session's lines."""

    __slots__ = (
        "_backlog",
        "_closed",
        "_dirty",
        "_drain",
        "_farewell",
        "_framer",
        "_fresh",
        "_handshake_timer",
        "_out",
        "_out_bytes",
        "_paused",
        "_sniff",
        "_written",
        "sent_lines",
        "server",
        "session",
        "tls",
        "tls_ready",
        "transport",
        "web",
        "ws",
    )

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.tls: TlsStream | None = None
        self.tls_ready = False
        self._closed = False
        self._framer = server.new_line_buffer()
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self.sent_lines = 0  # lines queued so far (the session charges big replies by it)
        self._backlog = 0  # transport's unsent bytes at the last flush (refreshed when near)
        self._dirty = False
        self._drain: tuple[int, asyncio.Future[None]] | None = None
        self._paused = False  # reading paused by the session (resume is called often)
        self._written = 0  # lines taken from the queue so far (written or discarded)
        self._farewell: bytes | None = None  # a close waiting for held lines to go first
        self._fresh = True  # no plaintext yet: it may still turn out to be HTTP
        self._sniff = b""  # the first plaintext bytes, while too few to tell
        self.web: HttpPeer | None = None  # a browser's HTTP requests (before any upgrade)
        self.ws: WebSocketLink | None = None  # IRC over WebSocket

    @property
    def description(self) -> str:
        tls = self.tls
        text = f"tls={tls.version} cipher={tls.cipher}" if tls is not None else "tls=none"
        ws = self.ws
        return text if ws is None else f"{text} websocket={'binary' if ws.binary else 'text'}"

    @property
    def restarts_clock(self) -> bool:
        return self.ws is not None

    @property
    def peer_ip(self) -> str:
        return self.session.ip if self.session is not None else "unknown"

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack the same.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ip = sys.intern(peer_ip(transport))  # one string per address, not per client
        self.session = Session(self.server, self, ip)
        self.server.admit(self.session)
        s = self.server.settings
        # A refused connection only waits to be told why: it gets the shorter of the two
        # deadlines, so refused connections cannot hold slots for a whole handshake timeout.
        deadline = min(s.tls_handshake_timeout, s.close_grace) if self.session.refusal else (
            s.tls_handshake_timeout
        )
        self._handshake_timer = asyncio.get_running_loop().call_later(
            deadline, self._handshake_timeout
        )

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused:  # a flag test: the session calls this after every batch of input
            self._paused = False
            if self.transport is not None and not self._closed:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self._closed:
            return  # closing: input is read and discarded (see the invariants)
        tls = self.tls
        if tls is None:
            if data[0] != TLS_RECORD_HANDSHAKE:
                self._refuse_plaintext(session, data)
                return
            tls = self.tls = TlsStream(self.server.ssl_context)
        try:
            plain = tls.receive(data)
        except TlsClosed:
            self._write_raw(tls.outgoing())
            session.abort("Client closed TLS")
            return
        except ssl.SSLError as exc:
            self._write_raw(tls.outgoing())
            reason = exc.reason or exc.__class__.__name__
            self.server.client_log(session.group, logging.INFO, "tls-failed ip=%s reason=%s",
                                   session.ip, reason)
            session.abort(f"TLS error: {reason}", deliver=True)
            return
        if not self.tls_ready:
            self._write_raw(tls.outgoing())
            if not tls.handshaken:
                return
            self.tls_ready = True
            self._cancel_handshake_timer()
            if tls.alpn == "http/1.1" and self.server.settings.web:
                self._fresh = False
                self.web = HttpPeer(self, self.server.web_assets)
            else:
                session.link_ready()
                if session.closing:
                    return
        if plain:
            if self._fresh:
                plain = self._first_plaintext(plain)
                if not plain:
                    return
            if self.ws is not None:
                self._ws_received(self.ws, session, plain)
            elif self.web is not None:
                self.web.receive(plain)
            else:
                session.lines_received(self._framer.feed(plain))

    def _first_plaintext(self, plain: bytes) -> bytes:
        """Tell a browser from an IRC client by its first bytes (for clients without ALPN);
        return the bytes to go on with (none while too few to tell)."""
        if not self.server.settings.web:
            self._fresh = False
            return plain
        plain = self._sniff + plain
        verdict = looks_like_http(plain)
        if verdict is None:
            self._sniff = plain  # fewer bytes than the longest method name: wait
            return b""
        self._fresh = False
        self._sniff = b""
        if verdict:
            self.web = HttpPeer(self, self.server.web_assets)
        return plain

    def eof_received(self) -> bool | None:
        if self._closed:  # the peer read our last words and closed: finish politely
            return None
        if self.session is not None:
            self.session.abort("Connection closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_handshake_timer()
        self._closed = True
        self._discard()
        self._check_drain()
        if self.session is not None:
            self.session.link_lost(exc)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if not self.tls_ready and self.session is not None:
            self.server.client_log(self.session.group, logging.INFO, "tls-timeout ip=%s",
                                   self.session.ip)
            self.session.abort("TLS handshake timeout")

    def _refuse_plaintext(self, session: Session, data: bytes) -> None:
        self.server.client_log(
            session.group, logging.INFO,
            "not-tls ip=%s hint=the client sent plain text to the TLS port; "
            "enable TLS in the client",
            session.ip,
        )
        browser = self.server.settings.web and looks_like_http(data)
        self._write_raw(PLAINTEXT_HTTP_REPLY if browser else PLAINTEXT_REPLY)
        session.abort("Not TLS", deliver=True)

    # --- the web side (WebHost for HttpPeer) ----------------------------------------------
    def write_plain(self, data: bytes) -> None:
        """Encrypt and write ``data`` now (HTTP responses and WebSocket control frames)."""
        tls = self.tls
        if data and tls is not None and self.tls_ready and not self._closed:
            try:
                self._write_raw(tls.encrypt(data))
            except ssl.SSLError:
                if self.session is not None:
                    self.session.abort("TLS error")
                return
            transport = self.transport
            if transport is not None and (
                transport.get_write_buffer_size() > self.server.settings.sendq_bytes
            ):  # pipelined requests from a client that does not read: SendQ as for IRC
                self._sendq_exceeded()

    def end_http(self) -> None:
        """The HTTP side is done with this connection: close_notify, then close."""
        session = self.session
        if self._closed or session is None:
            return
        if self.tls is not None and self.tls_ready:
            self._write_raw(self.tls.close())
        session.abort("HTTP connection done", deliver=True)

    def http_request(self) -> None:
        self.server.metrics.http_requests += 1
        if self.session is not None:
            self.session.last_active = time.monotonic()

    def client_log(self, level: int, msg: str, *args: object) -> None:
        if self.session is not None:
            self.server.client_log(self.session.group, level, msg, *args)

    def upgrade(self, link: WebSocketLink, trailing: bytes) -> None:
        """The browser's connection carries IRC from now on."""
        session = self.session
        self.web = None
        self.ws = link
        self.server.metrics.websocket_upgrades += 1
        if session is None:
            return
        session.link_ready()
        if trailing and not session.closing:
            self._ws_received(link, session, trailing)

    def _ws_received(self, ws: WebSocketLink, session: Session, data: bytes) -> None:
        lines = ws.receive(data)
        if ws.control:
            self.write_plain(b"".join(ws.control))
            ws.control.clear()
        if lines:
            session.lines_received(lines)
        closed = ws.closed_by_peer
        if closed is not None and not session.closing:
            code, reason = closed
            if code in _NORMAL_CLOSE:
                session.abort("Connection closed", deliver=True)
            else:  # a protocol error wsproto found: say so in a close frame
                self.write_plain(ws.close_frame(code, reason))
                session.abort(f"WebSocket error: {reason or code}", deliver=True)

    # --- output ---------------------------------------------------------------------------
    def send(self, line: bytes) -> None:
        """Queue one encoded line (with CR LF) for the next flush."""
        if self._closed:
            return
        self._out.append(line)
        self._out_bytes += len(line)
        self.sent_lines += 1
        if not self._dirty:
            self._dirty = True
            self.server.schedule_flush(self)
        limit = self.server.settings.sendq_bytes
        if self._out_bytes + self._backlog > limit:
            # The cached backlog may be stale (the client read since): look again first.
            transport = self.transport
            self._backlog = transport.get_write_buffer_size() if transport is not None else 0
            if self._out_bytes + self._backlog > limit:
                self._sendq_exceeded()

    def flush(self) -> None:
        """Encrypt everything queued as one TLS record (per 4 KiB) and write it once."""
        self._dirty = False
        self._emit(len(self._out))

    def hold(self) -> None:
        """Keep what is queued until :meth:`release` (its messages are being committed)."""
        self._dirty = False  # a line queued from now on asks for a flush of its own

    def release(self, mark: int) -> None:
        """Write the lines queued before ``mark`` (a count of :attr:`sent_lines`)."""
        count = mark - self._written  # <= 0: written already (or discarded)
        if count > 0 or self._farewell is not None:
            self._emit(max(count, 0))

    def blank(self, lines: set[int]) -> None:
        """Drop the queued lines whose ``id`` is in ``lines``: a failed commit's messages
        (each is replaced by an empty line, so every mark still counts right)."""
        out = self._out
        for i, line in enumerate(out):
            if id(line) in lines:
                self._out_bytes -= len(line)
                out[i] = b""

    def _emit(self, count: int) -> None:
        """Write the first ``count`` queued lines (all of them if ``count`` is more)."""
        out = self._out
        ws = self.ws
        if count >= len(out):
            if ws is not None:
                data = ws.frame(out)
            elif len(out) == 1:
                data = out[0]
            else:
                data = b"".join(out)
            self._written += len(out)
            out.clear()
            self._out_bytes = 0
        else:
            part = out[:count]
            del out[:count]
            self._written += count
            if ws is None:
                data = b"".join(part)
                self._out_bytes -= len(data)
            else:
                self._out_bytes -= sum(map(len, part))
                data = ws.frame(part)
        transport = self.transport
        tls = self.tls
        if data and transport is not None and tls is not None and self.tls_ready:
            try:
                cipher = tls.encrypt(data)
            except ssl.SSLError:
                if self.session is not None:
                    self.session.abort("TLS error")
                return
            transport.write(cipher)
            backlog = self._backlog = transport.get_write_buffer_size()
            if backlog and backlog > self.server.settings.sendq_bytes:
                self._sendq_exceeded()
            if self._drain is not None:
                self._check_drain()
        if self._farewell is not None and not out:
            farewell, self._farewell = self._farewell, None
            self._say_goodbye(farewell)

    def queued_bytes(self) -> int:
        """Bytes waiting to reach this client (our queue plus the transport's)."""
        buffered = self.transport.get_write_buffer_size() if self.transport else 0
        return self._out_bytes + buffered

    async def drained(self, below: int) -> None:
        """Return once fewer than ``below`` bytes wait for this client (or it is gone).

        Long replies (LIST) are produced this way, as the client reads them, so they
        never outgrow the send queue (the SAFELIST contract).
        """
        if self._closed or self.queued_bytes() < below:
            return
        if self._drain is not None:
            raise RuntimeError("one drain waiter at a time")
        future = asyncio.get_running_loop().create_future()
        self._drain = (below, future)
        try:
            await future
        finally:
            self._drain = None

    def _check_drain(self) -> None:
        drain = self._drain
        if drain is not None and not drain[1].done() and (
            self._closed or self.queued_bytes() < drain[0]
        ):
            drain[1].set_result(None)

    def resume_writing(self) -> None:
        self._check_drain()

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- closing --------------------------------------------------------------------------
    def _sendq_exceeded(self) -> None:
        """Drop a reader that fell behind: its backlog is discarded, not delivered."""
        if self._closed:
            return
        self._closed = True
        self._discard()
        self._check_drain()
        if self.session is not None:
            self.session.link_dropped("SendQ exceeded")
        asyncio.get_running_loop().call_soon(self._abort_now)

    def _abort_now(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self, farewell: bytes) -> None:
        """Deliver what is queued and ``farewell``, send close_notify, then close. While
        queued lines wait for a history commit, the farewell waits behind them."""
        if self._closed:
            return
        self._closed = True  # nothing more is queued
        history = self.server.history
        if self._out and history is not None and history.busy:
            self._farewell = farewell  # said by _emit once the queue is written
            return
        self._dirty = False
        self._say_goodbye(farewell)

    def _say_goodbye(self, farewell: bytes) -> None:
        out = self._out
        if self.tls is not None and self.tls_ready and self.transport is not None:
            ws = self.ws
            if ws is not None:  # the last lines, ERROR among them, then a close frame
                out.append(farewell)
                data = ws.frame(out) + ws.close_frame(1000)
            elif self.web is not None:
                data = b""  # an HTTP connection is not told IRC words
            else:
                out.append(farewell)
                data = b"".join(out)
            if data:
                with contextlib.suppress(ssl.SSLError):
                    self._write_raw(self.tls.encrypt(data))
            self._write_raw(self.tls.close())
        self._discard()
        self._linger()

    def _discard(self) -> None:
        """Forget everything queued (the link is gone or being reset)."""
        self._out.clear()
        self._out_bytes = 0
        self._written = self.sent_lines
        self._farewell = None

    def _linger(self) -> None:
        """Half-close, keep reading (and discarding) until the peer closes or the grace ends."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        grace = self.server.settings.close_grace
        if transport.can_write_eof():
            transport.write_eof()  # FIN after what is buffered; reading goes on
            asyncio.get_running_loop().call_later(grace, transport.close)
        else:
            transport.close()
        asyncio.get_running_loop().call_later(2 * grace, transport.abort)

    def abort(self, *, deliver: bool = False) -> None:
        """Close without a goodbye (peer gone, SendQ, TLS failure).

        ``deliver`` lets bytes already written (a TLS alert, the plain-text hint) go out
        first; otherwise the socket is reset and its buffers freed at once.
        """
        self._closed = True
        self._discard()
        if deliver:
            self._linger()
        elif self.transport is not None:
            self.transport.abort()
