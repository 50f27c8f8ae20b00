"""IRC over WebSocket (IRCv3 ``websocket`` spec): the handshake answer and the framing.

Inbound frames are parsed by wsproto (masking, fragmentation, control frames, UTF-8 of
text frames, close handshake); what it yields goes through the session's own line framer,
so a WebSocket client meets exactly the limits of a TCP one (``max_line_total``, 417 for
an over-long line) and memory per client stays bounded whatever frame sizes it claims.

Outbound, each IRC line is one unmasked data frame. The header is two to ten bytes that
depend only on the length, so it is built here directly rather than through wsproto's
general frame writer: a line sent to many browsers is framed once (:data:`_FRAMED`
remembers recent lines by identity-equal bytes) and the fan-out stays cheap.

Invariants:
- Subprotocol ``binary.ircv3.net`` gets binary frames with the line's bytes; anything else
  (``text.ircv3.net`` or none) gets text frames, which are always valid UTF-8.
- No frame carries CR or LF: the line terminator is dropped, an empty (blanked) line is
  not sent at all, and an item holding several lines (the welcome burst is queued as one)
  becomes one frame per line.
- No extension (permessage-deflate) is ever accepted: compression under TLS of secret and
  attacker-chosen text together leaks the secret, and it costs CPU per message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from chaton.protocol.message import LineBuffer, LineTooLong

__all__ = [
    "BINARY_SUBPROTOCOL",
    "TEXT_SUBPROTOCOL",
    "WebSocketLink",
    "accept_key",
    "choose_subprotocol",
    "frame_lines",
]

TEXT_SUBPROTOCOL = "text.ircv3.net"
BINARY_SUBPROTOCOL = "binary.ircv3.net"

_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode
_SHORT_TEXT = [bytes((_TEXT, n)) for n in range(126)]
_SHORT_BINARY = [bytes((_BINARY, n)) for n in range(126)]
#: Recently framed text lines (a fan-out line is the same bytes object for every browser).
_FRAMED: dict[bytes, bytes] = {}
_FRAMED_MAX = 1024


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return generate_accept_token(key.encode("ascii")).decode("ascii")


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The IRCv3 subprotocol to answer with (binary only if the client prefers it)."""
    for name in offered:
        if name in (BINARY_SUBPROTOCOL, TEXT_SUBPROTOCOL):
            return name
    return None


def _header(opcode: int, n: int) -> bytes:
    if n < 126:
        return bytes((opcode, n))
    if n < 65536:
        return struct.pack("!BBH", opcode, 126, n)
    return struct.pack("!BBQ", opcode, 127, n)


def _frame_text(line: bytes) -> bytes:
    framed = _FRAMED.get(line)
    if framed is not None:
        return framed
    payload = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\r\n")
    if b"\n" in payload:  # a block queued as one item (the welcome burst): a frame a line
        return b"".join([_frame_text(part) for part in payload.split(b"\r\n") if part])
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:  # never expected: the codec writes UTF-8; be safe anyway
            payload = payload.decode("utf-8", "replace").encode("utf-8")
    n = len(payload)
    framed = (_SHORT_TEXT[n] if n < 126 else _header(_TEXT, n)) + payload
    if len(_FRAMED) >= _FRAMED_MAX:
        _FRAMED.clear()
    _FRAMED[line] = framed
    return framed


def _frame_binary(line: bytes) -> bytes:
    payload = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\r\n")
    if b"\n" in payload:
        return b"".join([_frame_binary(part) for part in payload.split(b"\r\n") if part])
    n = len(payload)
    return (_SHORT_BINARY[n] if n < 126 else _header(_BINARY, n)) + payload


def frame_lines(lines: Iterable[bytes], binary: bool = False) -> bytes:
    """One data frame per non-empty line, joined for one write."""
    if binary:
        return b"".join([_frame_binary(line) for line in lines if line])
    get = _FRAMED.get  # the fan-out case: framed already for another browser, found in C
    return b"".join([get(line) or _frame_text(line) for line in lines if line])


class WebSocketLink:
    """The WebSocket half of one browser connection, after the HTTP upgrade."""

    __slots__ = ("_conn", "_framer", "binary", "closed_by_peer", "control")

    def __init__(self, subprotocol: str | None, max_line: int) -> None:
        self.binary = subprotocol == BINARY_SUBPROTOCOL
        self._framer = LineBuffer(max_line)
        self._conn = Connection(ConnectionType.SERVER)
        #: Control frames to send (pongs, the close answer), taken by the transport.
        self.control: list[bytes] = []
        #: Set when the peer sent a close frame (or broke the protocol): (code, reason).
        self.closed_by_peer: tuple[int, str] | None = None

    def receive(self, data: bytes) -> list[bytes | LineTooLong]:
        """Feed bytes from the TLS stream; return the IRC lines they complete."""
        if self.closed_by_peer is not None:
            return []
        self._conn.receive_data(data)
        return self._events()

    def _events(self) -> list[bytes | LineTooLong]:
        lines: list[bytes | LineTooLong] = []
        framer = self._framer
        for event in self._conn.events():
            if isinstance(event, TextMessage):
                lines += framer.feed(event.data.encode("utf-8"))
                if event.message_finished:
                    lines += framer.feed(b"\n")
            elif isinstance(event, BytesMessage):
                lines += framer.feed(bytes(event.data))
                if event.message_finished:
                    lines += framer.feed(b"\n")
            elif isinstance(event, Ping):
                self.control.append(self._conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed_by_peer = (event.code, event.reason or "")
                if self._conn.state is ConnectionState.REMOTE_CLOSING:
                    self.control.append(self._conn.send(event.response()))
                break
        return lines

    def frame(self, lines: Iterable[bytes]) -> bytes:
        return frame_lines(lines, self.binary)

    def close_frame(self, code: int = 1000, reason: str = "") -> bytes:
        """Our close frame, or nothing if the close handshake already happened."""
        if self._conn.state is not ConnectionState.OPEN:
            return b""
        return self._conn.send(CloseConnection(code=code, reason=reason[:100] or None))
