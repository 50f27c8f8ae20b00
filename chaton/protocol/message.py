"""IRC messages: parse, serialize and frame lines, with no I/O.

Invariants:
- :func:`parse` and :meth:`LineBuffer.feed` raise nothing but :class:`ProtocolError`
  (``feed`` raises nothing at all), whatever bytes arrive.
- Nothing written by this module ever holds CR, LF or NUL inside a line, so no parameter can
  smuggle a second command onto the wire: :func:`serialize` (strict, for clients) raises
  :class:`ProtocolError`; :func:`encode_line` (the server's fast path) turns them into
  spaces, makes unsafe middle parameters ``*`` and cuts to :data:`MAX_LINE_BYTES`.
- The line and tag limits are defined here, once; the server's settings default to them.
- The framer never buffers more than ``max_line`` bytes of one line: the rest of an
  over-long line is dropped and reported once as :data:`LINE_TOO_LONG`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CLIENT_TAG_BYTES",
    "LINE_TOO_LONG",
    "MAX_LINE_BYTES",
    "MAX_TAG_BYTES",
    "LineBuffer",
    "LineTooLong",
    "Message",
    "ProtocolError",
    "encode_line",
    "escape_tag_value",
    "parse",
    "parse_tags",
    "safe_param",
    "serialize",
    "split_source",
]

#: Longest line, CR LF included, tags excluded (RFC 1459, Modern IRC).
MAX_LINE_BYTES: Final = 512
#: What a client may send as tags: 4094 bytes plus the ``@`` and the space (IRCv3 message-tags).
CLIENT_TAG_BYTES: Final = 4096
#: The tags of one line in total, server-added ones included (IRCv3 message-tags).
MAX_TAG_BYTES: Final = 8191
_CONTENT_BYTES = MAX_LINE_BYTES - 2


class ProtocolError(ValueError):
    """A line that is not a well-formed IRC message (or cannot be written as one)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message. ``tags`` values are unescaped; a tag without a value maps to ``""``."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def param(self, index: int, default: str = "") -> str:
        """The parameter at ``index``, or ``default`` when the message has fewer."""
        return self.params[index] if index < len(self.params) else default


_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+\Z")
_COMMAND = re.compile(r"(?:[A-Za-z]+|[0-9]{3})\Z")
# What is read as a command is looser than what is written: an unknown ``FOO_BAR`` should
# get 421 (unknown command), not 400 (malformed line).
_COMMAND_IN = re.compile(r"(?:[0-9]{3}|[A-Za-z][A-Za-z0-9_.-]{0,63})\Z")
_FORBIDDEN = re.compile(r"[\x00\r\n]")
_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
# NUL has no escape and may never be on the wire: it becomes a space, as in parameters.
_ESCAPE_OUT = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n",
                             "\0": "\\s"})


def _unescape_tag_value(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")  # a trailing lone backslash is dropped
        out.append(_ESCAPES.get(nxt, nxt))
    return "".join(out)


def parse_tags(raw: str) -> dict[str, str]:
    """``key=value;key`` pairs with tag-value escaping (also SEARCH's attribute list);
    :class:`ProtocolError` on a malformed key."""
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not _TAG_KEY.match(key):
            raise ProtocolError(f"invalid tag key {key[:40]!r}")
        tags[key] = _unescape_tag_value(value)
    return tags


def parse(line: str) -> Message:
    """Parse one line (a trailing CR LF is allowed) into a :class:`Message`."""
    line = line.rstrip("\r\n")
    if _FORBIDDEN.search(line):
        raise ProtocolError("line contains NUL, CR or LF")
    tags: dict[str, str] = {}
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        tags = parse_tags(raw_tags)
        rest = rest.lstrip(" ")
    source: str | None = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        if not source:
            raise ProtocolError("empty source")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    if not _COMMAND_IN.match(command):
        raise ProtocolError("missing or invalid command" if command else "empty message")
    params: list[str] = []
    rest = rest.lstrip(" ")
    while rest:
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
        rest = rest.lstrip(" ")
    return Message(command.upper(), tuple(params), source, tags)


def escape_tag_value(value: str) -> str:
    """A tag value as it goes on the wire (IRCv3 escaping; NUL, which has none, is sent as
    an escaped space)."""
    return value.translate(_ESCAPE_OUT)


def safe_param(text: str) -> str:
    """A middle parameter that could forge others (empty, ``:``-led, spaced) becomes ``*``."""
    if not text or text[0] == ":" or " " in text:
        return "*"
    return text


_LINE_BREAKING = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


def _fit(line: str) -> bytes:
    """Encode ``line`` with CR LF, cut to :data:`MAX_LINE_BYTES` on a character boundary.

    CR, LF and NUL become spaces whatever their origin (a path in an error message, a
    stored string), so no text can ever end a line early or smuggle a second one in.
    """
    if "\r" in line or "\n" in line or "\0" in line:
        line = line.translate(_LINE_BREAKING)
    data = line.encode()
    if len(data) > _CONTENT_BYTES:
        data = data[:_CONTENT_BYTES].decode("utf-8", "ignore").encode()
    return data + b"\r\n"


def encode_line(source: str | None, command: str, params: Sequence[str]) -> bytes:
    """``:source COMMAND p1 p2 :last`` with CR LF, never more than one line (see top)."""
    head = f":{source} {command}" if source else command
    if not params:
        return _fit(head)
    last = params[-1]
    if not last or last[0] == ":" or " " in last:
        last = ":" + last
    if len(params) == 1:
        return _fit(f"{head} {last}")
    middle = " ".join(map(safe_param, params[:-1]))
    return _fit(f"{head} {middle} {last}")


def _format_tags(tags: dict[str, str]) -> str:
    parts = []
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            raise ProtocolError(f"invalid tag key {key[:40]!r}")
        parts.append(f"{key}={escape_tag_value(value)}" if value else key)
    return "@" + ";".join(parts) + " "


def serialize(msg: Message) -> str:
    """Write ``msg`` as one line without the trailing CR LF."""
    head = _format_tags(msg.tags) if msg.tags else ""
    if msg.source is not None:
        if not msg.source or " " in msg.source or _FORBIDDEN.search(msg.source):
            raise ProtocolError("invalid source")
        head += ":" + msg.source + " "
    if not _COMMAND.match(msg.command):
        raise ProtocolError(f"invalid command {msg.command[:40]!r}")
    parts = [head + msg.command]
    params = msg.params
    last = len(params) - 1
    for i, param in enumerate(params):
        if _FORBIDDEN.search(param):
            raise ProtocolError("parameter contains NUL, CR or LF")
        if i == last and (not param or " " in param or param[0] == ":"):
            parts.append(":" + param)
        elif not param or " " in param or param[0] == ":":
            raise ProtocolError("only the last parameter may be empty, hold spaces or start ':'")
        else:
            parts.append(param)
    return " ".join(parts)


def split_source(source: str) -> tuple[str, str | None, str | None]:
    """Split ``nick!user@host`` into its parts (missing parts are ``None``)."""
    nick, _, host = source.partition("@")
    nick, _, user = nick.partition("!")
    return nick, user or None, host or None


class LineTooLong:
    """Marker type for :data:`LINE_TOO_LONG`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


#: Yielded by :meth:`LineBuffer.feed` once for each line that exceeded the limit.
LINE_TOO_LONG: Final = LineTooLong()


class LineBuffer:
    """Cut a byte stream into lines; CR, LF or CR LF end a line, empty lines are skipped.

    ``max_line`` bounds one line's bytes (terminator excluded). Memory held between calls
    is at most ``max_line`` bytes, whatever the peer sends.
    """

    __slots__ = ("_buf", "_discarding", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held right now."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """Add ``data``; return the complete lines (and over-long markers) it finished."""
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        parts = data.split(b"\n")
        out: list[bytes | LineTooLong] = []
        limit = self.max_line
        tail = parts.pop()
        if parts:
            first = parts[0]
            if self._discarding:
                self._discarding = False
                parts[0] = b""
            elif self._buf:
                parts[0] = self._buf + first
            self._buf = b""
            for line in parts:
                if len(line) > limit:
                    out.append(LINE_TOO_LONG)
                elif line:
                    out.append(line)
        if self._discarding:
            return out
        if len(self._buf) + len(tail) > limit:
            self._buf = b""
            self._discarding = True
            out.append(LINE_TOO_LONG)
        elif tail:
            self._buf += tail
        return out
