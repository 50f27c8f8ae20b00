"""Encoding server lines: one message, many recipients, each variant encoded once."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaton.server.connection import Connection

__all__ = ["MAX_LINE", "Outgoing", "encode_line", "server_time"]


#: Longest line we send, CR LF excluded (tags are extra, as in the IRCv3 spec).
MAX_LINE = 510


def server_time(now: float | None = None) -> str:
    """The IRCv3 ``time`` tag value: UTC with milliseconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _escape_tag(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
        .replace("\r", "\\r").replace("\n", "\\n")
    )


_LINE_BREAKING = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


def _fit(line: str) -> bytes:
    """Encode ``line`` with CR LF, cut to :data:`MAX_LINE` bytes on a character boundary.

    CR, LF and NUL become spaces whatever their origin (a path in an error message, a
    stored string), so no text can ever end a line early or smuggle a second one in.
    """
    if "\r" in line or "\n" in line or "\0" in line:
        line = line.translate(_LINE_BREAKING)
    data = line.encode()
    if len(data) > MAX_LINE:
        data = data[:MAX_LINE].decode("utf-8", "ignore").encode()
    return data + b"\r\n"


def encode_line(source: str | None, command: str, params: Sequence[str]) -> bytes:
    """Build ``:source COMMAND p1 p2 :last`` (callers guarantee middle params are clean)."""
    head = f":{source} {command}" if source else command
    if not params:
        return _fit(head)
    last = params[-1]
    if not last or last[0] == ":" or " " in last:
        last = ":" + last
    if len(params) == 1:
        return _fit(f"{head} {last}")
    return _fit(f"{head} {' '.join(params[:-1])} {last}")


class Outgoing:
    """One message for many recipients, encoded at most once per tag variant.

    ``Connection.tag_mode`` picks the variant: bit 1 adds the ``time`` tag (server-time),
    bit 2 adds the sender's client-only ``+tags`` (message-tags).
    """

    __slots__ = ("_at", "_client_tags", "_lines", "plain")

    def __init__(
        self,
        source: str | None,
        command: str,
        params: Sequence[str],
        client_tags: dict[str, str] | None = None,
    ) -> None:
        self.plain = encode_line(source, command, params)
        self._at = time.time()
        self._client_tags = client_tags
        self._lines: list[bytes | None] = [self.plain, None, None, None]

    def line_for(self, conn: Connection) -> bytes:
        mode = conn.tag_mode
        line = self._lines[mode]
        if line is None:
            tags: list[str] = []
            if mode & 1:
                tags.append("time=" + server_time(self._at))
            if mode & 2 and self._client_tags:
                tags.extend(
                    f"{k}={_escape_tag(v)}" if v else k for k, v in self._client_tags.items()
                )
            line = ("@" + ";".join(tags) + " ").encode() + self.plain if tags else self.plain
            self._lines[mode] = line
        return line

    def send_to(self, conns: Iterable[Connection], skip: Connection | None = None) -> None:
        """Queue the message to every connection but ``skip`` (the hot loop of fan-out)."""
        lines = self._lines
        for conn in conns:
            if conn is not skip:
                conn.send(lines[conn.tag_mode] or self.line_for(conn))
