"""One client: bytes in through TLS and the line framer, lines out through a bounded queue.

Invariants:
- The connection never awaits. Reads are handled in ``data_received``; a handler that must
  wait (argon2 in a thread) returns an awaitable, and the connection stops processing input
  until it finishes, so one client's commands always run in the order they were sent.
- Memory per client is bounded by settings: the framer holds at most one line, the flood
  backlog at most ``flood_max_backlog`` lines, the send queue at most ``sendq_bytes``.
- Output is queued with :meth:`send` and written by :meth:`flush`, which the server calls
  once per event-loop pass for every connection with output: many messages, one TLS
  record, one ``write()``.
- Anything going wrong inside a handler closes this connection only; the traceback goes to
  the server log, the client gets a generic ``ERROR``.
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
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from chaton.protocol import numerics as num
from chaton.protocol.message import LINE_TOO_LONG, Message, ProtocolError, parse
from chaton.server.flood import TokenBucket
from chaton.server.tls_stream import TLS_RECORD_HANDSHAKE, TlsClosed, TlsStream

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.state import Channel

__all__ = ["Connection"]

log = logging.getLogger("chaton")

PLAINTEXT_REPLY = (
    b"ERROR :chaton speaks TLS only. Connect with TLS (e.g. chaton connect, or your IRC "
    b"client's TLS option) to this port.\r\n"
)
#: Shared by every client without capabilities or modes (``frozenset()`` is not a singleton).
NO_FLAGS: frozenset[str] = frozenset()
#: How long a closing connection may take to deliver its last words before it is aborted.
CLOSE_GRACE = 5.0


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


class Connection(asyncio.Protocol):
    """A client connection and everything the server knows about it."""

    # Slots: a thousand idle clients should cost kilobytes each, not a dict apiece.
    __slots__ = (
        "_admin",
        "_backlog",
        "_bucket",
        "_busy",
        "_dirty",
        "_framer",
        "_inbox",
        "_out",
        "_out_bytes",
        "_wakeup",
        "account",
        "away",
        "cap_negotiating",
        "caps",
        "channels",
        "close_reason",
        "closing",
        "connected_at",
        "ip",
        "last_active",
        "nick",
        "oper_account",
        "oper_gen",
        "pass_login",
        "password_gen",
        "ping_sent_at",
        "realname",
        "refusal",
        "registered",
        "sasl_buffer",
        "server",
        "signon",
        "tag_mode",
        "tls",
        "tls_ready",
        "transport",
        "user",
        "user_modes",
        "wanted_nick",
    )

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        s = server.settings
        now = time.monotonic()
        self.transport: asyncio.Transport | None = None
        self.ip = "unknown"
        self.tls: TlsStream | None = None
        self.tls_ready = False
        self.refusal: str | None = None
        self.closing = False
        self.close_reason = ""
        self.connected_at = now
        self.last_active = now
        self.ping_sent_at: float | None = None
        # identity
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.registered = False
        self.cap_negotiating = False
        self.caps = NO_FLAGS  # replaced whole on change, so idle clients share one empty set
        self.tag_mode = 0  # bit 1: server-time, bit 2: message-tags (see app.Broadcast)
        self.account: str | None = None
        self._admin = False
        self.oper_account: str | None = None  # the admin account whose powers this client has
        self.password_gen = 0  # the login account's password generation at login
        self.oper_gen = 0  # the oper account's password generation at OPER
        self.away: str | None = None
        self.user_modes = NO_FLAGS
        self.channels: dict[str, Channel] = {}
        self.signon = time.time()
        self.pass_login: tuple[str, str] | None = None
        self.wanted_nick: str | None = None  # a reserved nick refused before login
        self.sasl_buffer: list[str] | None = None
        # input side
        self._framer = server.new_line_buffer()
        # Made only when needed and dropped when empty: most clients never have a backlog.
        self._inbox: deque[bytes] | None = None
        self._bucket = TokenBucket(s.flood_rate, s.flood_burst, now) if s.flood_rate > 0 else None
        self._busy = False
        self._wakeup: asyncio.TimerHandle | None = None
        # output side
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._backlog = 0  # transport's unsent bytes at the last flush (refreshed when near)
        self._dirty = False

    # --- identity helpers ---------------------------------------------------------------
    @property
    def is_admin(self) -> bool:
        """Has admin powers (logged in to an admin account, or OPER)."""
        return self._admin

    @is_admin.setter
    def is_admin(self, value: bool) -> None:
        self._admin = value
        if value:
            self.server.admins.add(self)
        else:
            self.server.admins.discard(self)

    @property
    def host(self) -> str:
        """What others see as this client's host: the account, never the IP address."""
        return f"user/{self.account}" if self.account else "chaton/guest"

    @property
    def source(self) -> str:
        return f"{self.nick}!{self.user or self.nick}@{self.host}"

    @property
    def ip_param(self) -> str:
        """The address as an IRC parameter: ``::1`` would read as a trailing, so ``0::1``."""
        return "0" + self.ip if self.ip.startswith(":") else self.ip

    @property
    def name(self) -> str:
        """The nickname for numerics, ``*`` before one is chosen."""
        return self.nick or "*"

    def __repr__(self) -> str:
        return f"<Connection {self.nick or '-'} {self.ip}>"

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack the same.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ip = sys.intern(peer_ip(transport))  # one string per address, not per client
        self.refusal = self.server.admit(self)

    def data_received(self, data: bytes) -> None:
        if self.closing and self.tls_ready:
            return
        tls = self.tls
        if tls is None:
            if data[0] != TLS_RECORD_HANDSHAKE:
                self._refuse_plaintext()
                return
            tls = self.tls = TlsStream(self.server.ssl_context)
        try:
            plain = tls.receive(data)
        except TlsClosed:
            self._write_raw(tls.outgoing())
            self.abort("Client closed TLS")
            return
        except ssl.SSLError as exc:
            self._write_raw(tls.outgoing())
            reason = exc.reason or exc.__class__.__name__
            log.info("tls-failed ip=%s reason=%s", self.ip, reason)
            self.abort(f"TLS error: {reason}", deliver=True)
            return
        if not self.tls_ready:
            self._write_raw(tls.outgoing())
            if not tls.handshaken:
                return
            self.tls_ready = True
            self.server.on_tls_ready(self)
            if self.closing:
                return
        if plain:
            self._receive_plaintext(plain)

    def eof_received(self) -> bool | None:
        self.abort("Connection closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if not self.close_reason:
            self.close_reason = "Connection reset" if exc else "Connection closed"
        self.closing = True
        self._out.clear()
        self._inbox = None
        self.server.on_connection_lost(self)

    # --- input ----------------------------------------------------------------------------
    def _refuse_plaintext(self) -> None:
        log.info(
            "not-tls ip=%s hint=the client sent plain text to the TLS port; "
            "enable TLS in the client",
            self.ip,
        )
        self._write_raw(PLAINTEXT_REPLY)
        self.abort("Not TLS", deliver=True)

    def _receive_plaintext(self, plain: bytes) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        for line in self._framer.feed(plain):
            if line is LINE_TOO_LONG:
                self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
            else:
                inbox.append(line)  # type: ignore[arg-type]
        self._process_inbox()
        if len(inbox) > self.server.settings.flood_max_backlog:
            self.quit("Excess flood")

    def _process_inbox(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        bucket = self._bucket
        if bucket is not None and self._admin and self.server.settings.flood_exempt_admins:
            bucket = None
        while inbox and not self._busy and not self.closing:
            if bucket is not None:
                wait = bucket.take(time.monotonic())
                if wait > 0:
                    if self._wakeup is None:
                        loop = asyncio.get_running_loop()
                        self._wakeup = loop.call_later(wait, self._wake)
                    return
            self._handle_line(inbox.popleft())
        if not inbox and self._inbox is inbox:
            self._inbox = None

    def _wake(self) -> None:
        self._wakeup = None
        self._process_inbox()

    def _handle_line(self, raw: bytes) -> None:
        s = self.server.settings
        if raw[0] == 0x40:  # '@': the tags have their own allowance
            space = raw.find(b" ")
            tag_len = space if space >= 0 else len(raw)
            body_len = len(raw) - tag_len - 1
            if tag_len > s.max_tag_bytes + 1 or body_len > s.max_line_bytes - 2:
                self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
                return
        elif len(raw) > s.max_line_bytes - 2:
            self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
            return
        text = raw.decode("utf-8", "replace")
        try:
            msg = parse(text)
        except ProtocolError as exc:
            self.numeric(num.ERR_UNKNOWNERROR, "*", f"Malformed line: {exc}")
            return
        self.last_active = time.monotonic()
        self.ping_sent_at = None
        try:
            pending = self.server.dispatch(self, msg)
        except Exception:
            self._crashed(msg)
            return
        if pending is not None:
            self.run_later(pending, msg)

    def _finished(self, task: asyncio.Future[Any], msg: Message) -> None:
        self._busy = False
        if task.cancelled() or self.closing:
            return
        if task.exception() is not None:
            self._crashed(msg, task.exception())
            return
        self._process_inbox()

    def _crashed(self, msg: Message, exc: BaseException | None = None) -> None:
        log.error(
            "handler-error nick=%s ip=%s command=%s", self.nick, self.ip, msg.command,
            exc_info=exc if exc is not None else True,
        )
        self.quit("Internal server error")

    def run_later(self, pending: Awaitable[Any], msg: Message) -> None:
        """Run ``pending`` while holding back this client's further input (logins, admin
        actions awaiting a commit), so its commands still run in the order sent."""
        self._busy = True
        task = asyncio.ensure_future(pending)
        task.add_done_callback(lambda t: self._finished(t, msg))

    # --- output ---------------------------------------------------------------------------
    def send(self, line: bytes) -> None:
        """Queue one encoded line (with CR LF) for the next flush."""
        if self.closing:
            return
        self._out.append(line)
        self._out_bytes += len(line)
        if not self._dirty:
            self._dirty = True
            self.server.schedule_flush(self)
        if self._out_bytes + self._backlog > self.server.settings.sendq_bytes:
            # The cached backlog may be stale (the client read since): look again first.
            transport = self.transport
            self._backlog = transport.get_write_buffer_size() if transport is not None else 0
            if self._out_bytes + self._backlog > self.server.settings.sendq_bytes:
                self.sendq_exceeded()

    def send_msg(self, command: str, *params: str, source: str | None = None) -> None:
        self.send(self.server.encode(command, params, source or self.server.name))

    def numeric(self, code: str, *params: str) -> None:
        """Send numeric ``code`` to this client; all but the last param are made safe."""
        self.send(self.server.numeric_line(code, self.name, params))

    def flush(self) -> None:
        """Encrypt everything queued as one TLS record (per 4 KiB) and write it once."""
        self._dirty = False
        out = self._out
        transport = self.transport
        tls = self.tls
        if not out or transport is None or tls is None:
            out.clear()
            self._out_bytes = 0
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_bytes = 0
        try:
            cipher = tls.encrypt(data)
        except ssl.SSLError:
            self.abort("TLS error")
            return
        transport.write(cipher)
        backlog = self._backlog = transport.get_write_buffer_size()
        if backlog and backlog > self.server.settings.sendq_bytes:
            self.sendq_exceeded()

    def queued_bytes(self) -> int:
        """Bytes waiting to reach this client (our queue plus the transport's)."""
        buffered = self.transport.get_write_buffer_size() if self.transport else 0
        return self._out_bytes + buffered

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- closing --------------------------------------------------------------------------
    def sendq_exceeded(self) -> None:
        """Drop a reader that fell behind: its backlog is discarded, not delivered.

        This runs inside a fan-out loop over a room's members, so the room must not change
        under it: the client stops receiving now and leaves the shared state a moment later.
        """
        if self.closing:
            return
        self.closing = True
        self.close_reason = "SendQ exceeded"
        self._out.clear()
        self._out_bytes = 0
        asyncio.get_running_loop().call_soon(self._drop_slow_reader)

    def _drop_slow_reader(self) -> None:
        self.server.on_closing(self)
        if self.transport is not None:
            self.transport.abort()

    def quit(self, reason: str) -> None:
        """Say ``ERROR`` with ``reason``, deliver what is queued, then close."""
        if self.closing:
            return
        self.close_reason = reason
        self.server.on_closing(self)
        if self.tls_ready:
            self.send_msg("ERROR", f"Closing Link: {self.ip} ({reason})", source="")
        self.closing = True
        self._dirty = False
        if self._out and self.tls is not None and self.transport is not None:
            data = b"".join(self._out)
            self._out.clear()
            with contextlib.suppress(ssl.SSLError):
                self._write_raw(self.tls.encrypt(data))
        if self.tls is not None and self.tls_ready:
            self._write_raw(self.tls.close())
        if self.transport is not None:
            self.transport.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)

    def abort(self, reason: str, *, deliver: bool = False) -> None:
        """Close without a goodbye (peer gone, SendQ, TLS failure).

        ``deliver`` lets bytes already written (a TLS alert, the plain-text hint) go out
        first; otherwise the socket is reset and its buffers freed at once.
        """
        if not self.close_reason:
            self.close_reason = reason
        if not self.closing:
            self.closing = True
            self.server.on_closing(self)
        if self.transport is not None:
            if deliver:
                self.transport.close()
                asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)
            else:
                self.transport.abort()
