"""The load generator's IRC client: many of them on one event loop, over verified TLS.

Invariants:
- Every wait has a deadline; a client that cannot finish a step raises instead of hanging.
- Bench messages carry their send time: ``PRIVMSG <target> :b <sender> <seq> <perf_counter_ns>``.
  A receiver records ``now - t`` into the shared :class:`Recorder` without a full parse (the
  generator is often the bottleneck); every other line goes through :func:`parse`.
- A sender keeps at most ``window`` messages unconfirmed: after each ``window`` messages it
  sends a ``PING`` and waits for the ``PONG``, so it measures the server, not kernel buffers.
- A :class:`Target` with ``websocket`` set gets :class:`WsIrcClient` objects: the same client, its
  lines carried as WebSocket messages (``text.ircv3.net``) inside the TLS stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from chaton.protocol.message import (
    LINE_TOO_LONG,
    LineBuffer,
    LineTooLong,
    Message,
    ProtocolError,
    parse,
    serialize,
)

__all__ = [
    "WS_SUBPROTOCOL",
    "BenchError",
    "ConnectResult",
    "IrcClient",
    "Recorder",
    "Target",
    "WsIrcClient",
    "close_all",
    "connect_many",
    "listen_drops",
    "masked_frame",
    "open_client",
    "percentile",
    "send_messages",
    "server_errors",
    "sync",
    "ws_accept",
]

_MAX_LINE = 16384  # generous: NAMES replies of a 1000-member room arrive as many such lines
_SASL_FAIL = frozenset({"902", "904", "905", "906"})
_NICK_FAIL = frozenset({"431", "432", "433", "436", "437"})


class BenchError(Exception):
    """A step of a scenario failed; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """Where the server under test listens and how to verify it."""

    host: str
    port: int
    ssl_context: ssl.SSLContext
    server_hostname: str = "localhost"
    #: speak IRC over WebSocket (``GET /ws``, ``text.ircv3.net``) instead of raw lines
    websocket: bool = False


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted sequence; 0 if empty."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


class Recorder:
    """Delivery latencies of bench messages, shared by every receiver of a scenario."""

    __slots__ = (
        "_event", "_lag_waiters", "_next_wake", "count", "expected", "issued", "latency_ns",
        "sent_ns",
    )  # fmt: skip

    def __init__(self) -> None:
        self.latency_ns = array("q")
        self.sent_ns = array("q")
        self.count = 0  # deliveries received
        self.expected = 0  # deliveries :meth:`wait` waits for
        self.issued = 0  # deliveries the messages sent so far will cause
        self._event = asyncio.Event()
        self._lag_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._next_wake = 1 << 62

    def expect(self, total: int) -> None:
        """Raise the number of deliveries :meth:`wait` waits for to ``total``."""
        self.expected = total
        if self.count >= total:
            self._event.set()
        else:
            self._event.clear()

    def add(self, sent_ns: int, now_ns: int) -> None:
        self.latency_ns.append(now_ns - sent_ns)
        self.sent_ns.append(sent_ns)
        self.count += 1
        if self.count >= self.expected:
            self._event.set()
        if self.count >= self._next_wake:
            self._wake()

    def _wake(self) -> None:
        waiting = []
        for threshold, fut in self._lag_waiters:
            if threshold <= self.count:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((threshold, fut))
        self._lag_waiters = waiting
        self._next_wake = min((t for t, _ in waiting), default=1 << 62)

    async def caught_up(self, max_lag: int, timeout: float) -> None:
        """Wait until at most ``max_lag`` of the :attr:`issued` deliveries are outstanding."""
        threshold = self.issued - max_lag
        if self.count >= threshold:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lag_waiters.append((threshold, fut))
        self._next_wake = min(self._next_wake, threshold)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BenchError(
                f"receivers stalled: {self.count:,} of {self.issued:,} deliveries arrived"
            ) from None

    async def wait(self, *, timeout: float, stall: float) -> bool:
        """Wait until the expected count arrived; False after ``timeout`` or ``stall`` idle s."""
        deadline = time.monotonic() + timeout
        last, last_change = self.count, time.monotonic()
        while not self._event.is_set():
            now = time.monotonic()
            if self.count != last:
                last, last_change = self.count, now
            if now >= deadline or now - last_change >= stall:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(0.2, deadline - now))
        return True

    def latencies(self, sent_from: int | None = None, sent_to: int | None = None) -> list[int]:
        """Sorted latencies (ns), optionally only of messages sent in ``[sent_from, sent_to]``."""
        if sent_from is None and sent_to is None:
            return sorted(self.latency_ns)
        lo = sent_from if sent_from is not None else -(1 << 62)
        hi = sent_to if sent_to is not None else 1 << 62
        return sorted(
            lat for lat, t in zip(self.latency_ns, self.sent_ns, strict=True) if lo <= t <= hi
        )


class IrcClient(asyncio.Protocol):
    """One IRC connection driven by the generator: registration, SASL, JOIN, PING windows."""

    def __init__(self, nick: str, recorder: Recorder | None = None) -> None:
        self.nick = nick
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: str | None = None  # text of an ERROR line, or why the connection dropped
        self.numerics: Counter[str] = Counter()  # 4xx/5xx replies seen (unexpected in a bench)
        self.caps: set[str] = set()
        self.quits = 0  # QUIT lines of other clients seen
        self._buf = LineBuffer(_MAX_LINE)
        self._waiters: dict[str, asyncio.Future[object]] = {}
        self._ping_seq = 0
        self._closing = False

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; don't check the type.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = self.error or (f"connection lost: {exc}" if exc else "connection closed")
        if not self._closing:
            self.numerics["dropped: " + reason[:60]] += 1
        self._fail_all(BenchError(f"{self.nick}: {reason}"))

    def data_received(self, data: bytes) -> None:
        self._take_lines(self._buf.feed(data), time.perf_counter_ns())

    def _take_lines(self, lines: Sequence[bytes | LineTooLong], now: int) -> None:
        """Handle complete lines (no CR LF) that arrived at ``now`` (perf_counter_ns)."""
        recorder = self.recorder
        for line in lines:
            if line is LINE_TOO_LONG:
                self.numerics["line-too-long"] += 1
                continue
            assert isinstance(line, bytes)
            # Fast path for "[@tags ]:src PRIVMSG target :b <sender> <seq> <t>" (a tag
            # value never holds a space, so " :b " is the text's start either way).
            i = line.find(b" :b ")
            if i > 0 and recorder is not None and line[0] in (58, 64) and (
                    b" PRIVMSG " in line[:i]):
                try:
                    recorder.add(int(line[i + 4 :].split(b" ")[2]), now)
                except (IndexError, ValueError):
                    self.numerics["bad-bench-line"] += 1
                continue
            self._control(line)

    # --- incoming control lines ----------------------------------------------------------
    def _control(self, raw: bytes) -> None:
        try:
            msg = parse(raw.decode("utf-8", "replace"))
        except ProtocolError:
            self.numerics["unparsable"] += 1
            return
        cmd = msg.command
        if cmd == "PING":
            self.send("PONG", *msg.params)
        elif cmd == "PONG":
            self._resolve("pong:" + msg.param(len(msg.params) - 1), True)
        elif cmd == "001":
            self._resolve("welcome", True)
        elif cmd == "366":
            self._resolve("joined:" + msg.param(1).lower(), True)
        elif cmd == "QUIT":
            self.quits += 1
        elif cmd == "CAP":
            self._cap(msg)
        elif cmd == "AUTHENTICATE":
            self._resolve("authenticate", msg.param(0))
        elif cmd == "903":
            self._resolve("sasl", True)
        elif cmd in _SASL_FAIL:
            self._reject("sasl", f"SASL failed: {cmd} {msg.param(len(msg.params) - 1)}")
        elif cmd in _NICK_FAIL:
            self.numerics[cmd] += 1
            self._reject("welcome", f"nickname refused: {cmd} {msg.param(len(msg.params) - 1)}")
        elif cmd == "FAIL":
            self.numerics[f"FAIL {msg.param(0)} {msg.param(1)}"] += 1
        elif cmd in ("421", "451"):  # unknown / not allowed yet: what we wait for won't come
            self.numerics[cmd] += 1
            why = "does not know" if cmd == "421" else "refuses before registration"
            self._fail_all(BenchError(f"{self.nick}: the server {why} {msg.param(1)}"))
        elif cmd == "ERROR":
            self.error = f"ERROR {msg.param(0)}"
            self._fail_all(BenchError(f"{self.nick}: {self.error}"))
        elif len(cmd) == 3 and cmd[0] in "45":
            self.numerics[cmd] += 1

    def _cap(self, msg: Message) -> None:
        sub = msg.param(1).upper()
        if sub == "LS":
            more = len(msg.params) > 3 and msg.params[2] == "*"
            self.caps.update(c.split("=", 1)[0] for c in msg.params[-1].split())
            if not more:
                self._resolve("cap-ls", True)
        elif sub == "ACK":
            self._resolve("cap-req", True)
        elif sub == "NAK":
            self._reject("cap-req", f"CAP REQ refused: {msg.params[-1]}")

    # --- waiters ---------------------------------------------------------------------------
    def _want(self, key: str) -> asyncio.Future[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(BenchError(f"{self.nick}: {self.error or 'connection closed'}"))
        self._waiters[key] = fut
        return fut

    def _resolve(self, key: str, value: object) -> None:
        fut = self._waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(value)

    def _reject(self, key: str, why: str) -> None:
        fut = self._waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_exception(BenchError(f"{self.nick}: {why}"))

    def _fail_all(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    async def _await(self, fut: asyncio.Future[object], what: str, timeout: float) -> object:
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BenchError(f"{self.nick}: no answer to {what} within {timeout:g}s") from None

    # --- outgoing --------------------------------------------------------------------------
    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None:
        """Write one message (dropped silently if the connection is gone)."""
        if self.transport is not None and not self.closed:
            msg = Message(command, params, tags=tags or {})
            self.transport.write(self._wire(serialize(msg).encode()))

    def _wire(self, line: bytes) -> bytes:
        """What one line (without CR LF) is on the wire."""
        return line + b"\r\n"

    async def handshake(self, target: Target, timeout: float) -> None:
        """What the client does between the TLS handshake and IRC (nothing over raw TLS)."""

    async def register(self, timeout: float) -> None:
        """Plain registration: ``NICK``/``USER``, then wait for ``001``."""
        welcome = self._want("welcome")
        self.send("NICK", self.nick)
        self.send("USER", self.nick, "0", "*", "chaton bench")
        await self._await(welcome, "NICK/USER", timeout)

    async def register_sasl(self, account: str | None, password: str, timeout: float,
                            caps: tuple[str, ...] = ()) -> None:
        """``CAP LS 302``, ``CAP REQ`` (``sasl`` and ``caps``), ``AUTHENTICATE PLAIN``,
        ``CAP END``, ``001``; with no ``account``, only the capabilities."""
        ls = self._want("cap-ls")
        self.send("CAP", "LS", "302")
        self.send("NICK", self.nick)
        self.send("USER", self.nick, "0", "*", "chaton bench")
        await self._await(ls, "CAP LS", timeout)
        wanted = (*caps, "sasl") if account else caps
        if missing := [c for c in wanted if c not in self.caps]:
            raise BenchError(f"{self.nick}: the server does not offer {' '.join(missing)}")
        req = self._want("cap-req")
        self.send("CAP", "REQ", " ".join(wanted))
        await self._await(req, f"CAP REQ {' '.join(wanted)}", timeout)
        if not account:
            welcome = self._want("welcome")
            self.send("CAP", "END")
            await self._await(welcome, "CAP END", timeout)
            return
        plus = self._want("authenticate")
        self.send("AUTHENTICATE", "PLAIN")
        if await self._await(plus, "AUTHENTICATE PLAIN", timeout) != "+":
            raise BenchError(f"{self.nick}: unexpected AUTHENTICATE challenge")
        sasl = self._want("sasl")
        welcome = self._want("welcome")
        blob = base64.b64encode(f"\0{account}\0{password}".encode()).decode()
        self.send("AUTHENTICATE", blob)
        await self._await(sasl, "AUTHENTICATE (credentials)", timeout)
        self.send("CAP", "END")
        await self._await(welcome, "CAP END", timeout)

    async def join(self, channel: str, timeout: float) -> None:
        """``JOIN`` and wait for the end of ``NAMES`` (366)."""
        joined = self._want("joined:" + channel.lower())
        self.send("JOIN", channel)
        await self._await(joined, f"JOIN {channel}", timeout)

    async def ping(self, timeout: float) -> None:
        """Round trip: every line sent before has been processed by the server."""
        self._ping_seq += 1
        token = f"w{self._ping_seq}"
        pong = self._want("pong:" + token)
        self.send("PING", token)
        await self._await(pong, "PING", timeout)

    def quit(self, reason: str = "bench done") -> None:
        """Send ``QUIT`` and let the server close the connection (not counted as a drop)."""
        self._closing = True
        self.send("QUIT", reason)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.closed:
            self.transport.abort()


#: RFC 6455 section 1.3: the server proves it read the key by hashing it with this GUID.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_SUBPROTOCOL = "text.ircv3.net"
_WS_MAX_HEAD = 16384  # the server's 101 answer is a few hundred bytes
_WS_TEXT, _WS_BINARY, _WS_CLOSE, _WS_PING, _WS_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


def masked_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One unfragmented client-to-server frame, masked as RFC 6455 section 5.3 requires.

    A fresh 4-byte key per frame (``os.urandom``); the XOR is one big-integer operation,
    which for IRC-sized payloads costs less than a byte loop or a ``bytes.translate`` table.
    """
    if key is None:
        key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if n:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            n, "big")
    return head + key + payload


class WsIrcClient(IrcClient):
    """An :class:`IrcClient` whose lines are WebSocket text messages (IRCv3 ``websocket``).

    After TLS (ALPN ``http/1.1``, as a browser offers), :meth:`handshake` sends the HTTP/1.1
    upgrade to ``GET /ws`` with ``Sec-WebSocket-Protocol: text.ircv3.net`` and the page's
    ``Origin``, and checks the ``101`` (accept token, subprotocol, no extension). Then each
    line goes out as one masked text frame without CR LF (:func:`masked_frame`), and each
    frame that comes in is one line for the same handling as over raw TLS.

    Why a hand-written reader for server frames rather than wsproto's client ``Connection``:
    the generator reads every delivery (199 frames per message in a room of 200), so its
    per-frame cost decides whether it, not the server, limits the run. Server frames are
    never masked and chaton sends each line as one unfragmented frame, so reading one is two
    header bytes, a length and a slice; wsproto validates UTF-8 incrementally and builds an
    event object and a ``str`` per frame (which the fast path would encode back to bytes).
    Measured on chaton's frames of 55-byte bench lines read 16 KiB at a time: wsproto 17-20
    µs a frame, this reader 0.4 µs, against about 3 µs for the rest of a delivery's handling
    (the same as over raw TLS).

    What this reader still checks: no mask bit (a server must not mask), no RSV bit (no
    extension was agreed), frame and message sizes (``_MAX_LINE``), fragmentation
    (continuations, control frames between fragments), ping (answered with a masked pong)
    and close (answered with a masked close). It does not validate UTF-8 of text frames:
    the bench text is ASCII, every other line is decoded with ``replace``, and chaton's own
    tests check its framing.
    """

    def __init__(self, nick: str, recorder: Recorder | None = None) -> None:
        super().__init__(nick, recorder)
        self._head: bytes | None = b""  # the HTTP answer so far; None once upgraded
        self._accept = b""
        self._rest = b""  # an incomplete frame
        self._frag: list[bytes] | None = None  # fragments of an unfinished message
        self._frag_bytes = 0
        self._close_sent = False
        self._broken = False

    def _wire(self, line: bytes) -> bytes:
        return masked_frame(_WS_TEXT, line)

    async def handshake(self, target: Target, timeout: float) -> None:
        """The HTTP/1.1 upgrade to IRC over WebSocket; BenchError unless it is accepted."""
        assert self.transport is not None
        key = base64.b64encode(os.urandom(16))
        self._accept = ws_accept(key)
        host = f"{target.server_hostname}:{target.port}"
        upgraded = self._want("upgrade")
        self.transport.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {WS_SUBPROTOCOL}\r\n"
            f"Origin: https://{host}\r\n\r\n".encode()
        )
        await self._await(upgraded, "the WebSocket upgrade", timeout)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._head is not None:
            data = self._http_answer(data)
            if not data:
                return
        if self._broken:
            return
        buf = self._rest + data if self._rest else data
        lines: list[bytes] = []
        append = lines.append
        i, end = 0, len(buf)
        last = end - 1
        while i < last:
            n = buf[i + 1]
            if n < 126 and buf[i] == 0x81:  # FIN + text, short: one whole line (most frames)
                stop = i + 2 + n
                if stop > end:
                    break
                append(buf[i + 2 : stop])
                i = stop
                continue
            after = self._frame(buf, i, lines)
            if after < 0:
                return
            if after == i:  # incomplete
                break
            i = after
        self._rest = buf[i:] if i < end else b""
        if lines:
            self._take_lines(lines, now)

    def _frame(self, buf: bytes, i: int, lines: list[bytes]) -> int:
        """Read the frame at ``buf[i:]`` other than a short whole text frame: where the next
        frame starts, ``i`` if this one is incomplete, -1 if the connection was failed."""
        end = len(buf)
        op, n = buf[i], buf[i + 1]
        if n < 126:
            start = i + 2
        elif n == 126:
            if end - i < 4:
                return i
            n, start = (buf[i + 2] << 8) | buf[i + 3], i + 4
        elif n == 127:
            if end - i < 10:
                return i
            n, start = int.from_bytes(buf[i + 2 : i + 10], "big"), i + 10
        else:
            self._ws_fail("masked frame from the server")
            return -1
        if n > _MAX_LINE:
            self._ws_fail(f"frame of {n} bytes")
            return -1
        stop = start + n
        if stop > end:
            return i
        if op == 0x81 or op == 0x82:  # FIN + text or binary: one whole line
            lines.append(buf[start:stop])
            return stop
        return stop if self._odd_frame(op, buf[start:stop], lines) else -1

    def _odd_frame(self, op: int, payload: bytes, lines: list[bytes]) -> bool:
        """A fragment or a control frame; False if the connection was failed."""
        if op & 0x70:
            self._ws_fail("RSV bit set (no extension was negotiated)")
            return False
        fin, opcode = op & 0x80, op & 0x0F
        if opcode in (_WS_TEXT, _WS_BINARY):  # FIN clear: the first fragment
            if self._frag is not None:
                self._ws_fail("new message inside a fragmented one")
                return False
            self._frag, self._frag_bytes = [payload], len(payload)
        elif opcode == 0:
            if self._frag is None:
                self._ws_fail("continuation frame without a message")
                return False
            self._frag.append(payload)
            self._frag_bytes += len(payload)
            if self._frag_bytes > _MAX_LINE:
                self._ws_fail(f"message of over {_MAX_LINE} bytes")
                return False
            if fin:
                lines.append(b"".join(self._frag))
                self._frag = None
        elif not fin or len(payload) > 125:
            self._ws_fail("fragmented or long control frame")
            return False
        elif opcode == _WS_PING:
            self._write_frame(_WS_PONG, payload)
        elif opcode == _WS_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if code not in (1000, 1001) and self.error is None:
                reason = payload[2:].decode("utf-8", "replace")
                self.error = f"WebSocket close {code} {reason}".strip()
            if not self._close_sent:
                self._close_sent = True
                self._write_frame(_WS_CLOSE, payload[:2])
        elif opcode != _WS_PONG:
            self._ws_fail(f"unknown opcode {opcode}")
            return False
        return True

    def _write_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(masked_frame(opcode, payload))

    def _ws_fail(self, why: str) -> None:
        """The server broke RFC 6455: count it and drop the connection."""
        self._broken = True
        self._rest = b""
        self.numerics[f"websocket: {why}"] += 1
        self.error = self.error or f"WebSocket protocol error: {why}"
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _http_answer(self, data: bytes) -> bytes:
        """Collect the server's answer to the upgrade; the bytes after it once complete."""
        assert self._head is not None
        head = self._head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            self._head = head
            if len(head) > _WS_MAX_HEAD:
                self._upgrade_failed(f"HTTP answer head over {_WS_MAX_HEAD} bytes")
            return b""
        self._head = None
        status, *rows = head[:end].decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for row in rows:
            name, _, value = row.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            self._upgrade_failed(f"upgrade refused: {status[:80]}")
        elif headers.get("upgrade", "").lower() != "websocket":
            self._upgrade_failed("101 without Upgrade: websocket")
        elif headers.get("sec-websocket-accept", "").encode() != self._accept:
            self._upgrade_failed("wrong Sec-WebSocket-Accept")
        elif headers.get("sec-websocket-protocol") != WS_SUBPROTOCOL:
            self._upgrade_failed(f"subprotocol {headers.get('sec-websocket-protocol')!r}")
        elif "sec-websocket-extensions" in headers:
            self._upgrade_failed("an extension nobody asked for")
        else:
            self._resolve("upgrade", True)
            return head[end + 4 :]
        return b""

    def _upgrade_failed(self, why: str) -> None:
        self._broken = True
        self._head = None
        self._reject("upgrade", why)
        self.close()


def listen_drops() -> int:
    """The kernel's count of connections dropped by full listen queues (``ListenDrops``).

    System-wide, but everything here runs on one loopback: a rise during a setup phase means
    the server's accept backlog overflowed and clients waited for a SYN retransmit (1 s).
    """
    try:
        with open("/proc/net/netstat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(fields.get("ListenDrops", 0))
    return 0


@dataclass
class ConnectResult:
    """Clients that finished their setup, and how long it took."""

    clients: list[IrcClient]
    elapsed: float
    durations: list[float] = field(default_factory=list)
    listen_drops: int = 0

    @property
    def per_second(self) -> float:
        return len(self.clients) / self.elapsed if self.elapsed > 0 else 0.0


async def open_client(
    target: Target, client: IrcClient, timeout: float, source: str | None = None
) -> IrcClient:
    """Connect ``client`` (TCP + verified TLS handshake) to the server.

    ``source`` binds the client's socket to that local address (any of 127.0.0.0/8 works on
    loopback), so per-address limits see distinct hosts.
    """
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(
        loop.create_connection(
            lambda: client,
            target.host,
            target.port,
            ssl=target.ssl_context,
            server_hostname=target.server_hostname,
            ssl_handshake_timeout=timeout,
            local_addr=(source, 0) if source else None,
        ),
        timeout,
    )
    await client.handshake(target, timeout)
    return client


async def connect_many(
    target: Target,
    nicks: Sequence[str],
    setup: Callable[[IrcClient], Awaitable[None]],
    *,
    recorder: Recorder | None,
    concurrency: int,
    timeout: float,
    progress: Callable[[str], None] | None = None,
    sources: Sequence[str] = (),
) -> ConnectResult:
    """Connect and set up one client per nick, at most ``concurrency`` at a time.

    ``setup`` registers (and maybe joins); any failure closes every client and raises
    :class:`BenchError` with a summary of what went wrong. With ``sources``, client ``i``
    connects from local address ``sources[i % len(sources)]``.
    """
    sem = asyncio.Semaphore(max(1, concurrency))
    done: list[IrcClient] = []
    durations: list[float] = []
    failures: Counter[str] = Counter()
    opened: list[IrcClient] = []
    next_report = time.monotonic() + 2.0

    async def one(i: int, nick: str) -> None:
        async with sem:
            client = (WsIrcClient if target.websocket else IrcClient)(nick, recorder)
            opened.append(client)
            t0 = time.perf_counter()
            source = sources[i % len(sources)] if sources else None
            try:
                await open_client(target, client, timeout, source)
                await setup(client)
            except (OSError, ssl.SSLError, TimeoutError, BenchError) as exc:
                failures[_short(exc)] += 1
                return
            durations.append(time.perf_counter() - t0)
            done.append(client)
            nonlocal next_report
            if progress is not None and time.monotonic() >= next_report:
                next_report = time.monotonic() + 2.0
                progress(f"{len(done)}/{len(nicks)} set up")

    drops0 = listen_drops()
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(i, n) for i, n in enumerate(nicks)))
    except BaseException:
        close_all(opened)
        raise
    elapsed = time.perf_counter() - t0
    if failures:
        close_all(opened)
        summary = "; ".join(f"{why} (x{n})" for why, n in failures.most_common(3))
        raise BenchError(f"{sum(failures.values())}/{len(nicks)} clients failed setup: {summary}")
    return ConnectResult(done, elapsed, durations, listen_drops() - drops0)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, BenchError):
        # "nick123: reason" -> "reason", so identical failures group together
        text = text.split(": ", 1)[-1]
    return text[:120]


async def sync(clients: Sequence[IrcClient], timeout: float) -> None:
    """PING every client and wait for all PONGs: the server has caught up with everything."""
    await asyncio.gather(*(c.ping(timeout) for c in clients))


async def send_messages(
    client: IrcClient,
    target: str,
    sender_id: int,
    count: int,
    *,
    window: int,
    timeout: float,
    rate: float | None = None,
    stop: asyncio.Event | None = None,
    recorder: Recorder | None = None,
    fanout: int = 1,
    max_in_flight: int = 0,
    labeled: bool = False,
) -> int:
    """Send up to ``count`` bench messages to ``target``; return how many were sent.

    With ``rate`` (messages/s) sends are paced on a fixed schedule; ``stop`` ends early.
    After every ``window`` messages (and at the end) waits for a PING round trip. With
    ``max_in_flight``, no message is sent while receivers are more than that many deliveries
    behind (each message counts ``fanout`` deliveries in ``recorder``, shared by all senders).
    ``labeled`` puts an IRCv3 ``label`` on each message (the server answers each with ACK).
    """
    start = time.perf_counter()
    sent = 0
    for seq in range(count):
        if stop is not None and stop.is_set():
            break
        if rate:
            delay = start + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if recorder is not None:
            if max_in_flight and recorder.issued - recorder.count > max_in_flight:
                await recorder.caught_up(max_in_flight, timeout)
            recorder.issued += fanout
        client.send("PRIVMSG", target, f"b {sender_id} {seq} {time.perf_counter_ns()}",
                    tags={"label": str(seq)} if labeled else None)
        sent += 1
        if sent % window == 0:
            await client.ping(timeout)
    if sent % window:
        await client.ping(timeout)
    return sent


def close_all(clients: Sequence[IrcClient]) -> None:
    for c in clients:
        c.close()


def server_errors(clients: Sequence[IrcClient]) -> dict[str, int]:
    """Error numerics and oddities the clients saw, summed (a clean run has none)."""
    total: Counter[str] = Counter()
    for c in clients:
        total.update(c.numerics)
    return dict(total)
