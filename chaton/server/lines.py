"""Fan-out: one message, many recipients, each tag variant encoded once.

The wire format itself (quoting, CR/LF/NUL, length) belongs to ``chaton.protocol.message``;
this module only decides which variant each recipient gets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaton.protocol.message import encode_line, escape_tag_value

if TYPE_CHECKING:
    from chaton.server.session import Session

__all__ = ["Outgoing", "server_time"]


def server_time(now: float | None = None) -> str:
    """The IRCv3 ``time`` tag value: UTC with milliseconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Outgoing:
    """One message for many recipients, encoded at most once per tag variant.

    ``Session.tag_mode`` picks the variant: bit 1 adds the ``time`` tag (server-time),
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

    def line_for(self, conn: Session) -> bytes:
        mode = conn.tag_mode
        line = self._lines[mode]
        if line is None:
            tags: list[str] = []
            if mode & 1:
                tags.append("time=" + server_time(self._at))
            if mode & 2 and self._client_tags:
                tags.extend(
                    f"{k}={escape_tag_value(v)}" if v else k for k, v in self._client_tags.items()
                )
            line = ("@" + ";".join(tags) + " ").encode() + self.plain if tags else self.plain
            self._lines[mode] = line
        return line

    def send_to(self, conns: Iterable[Session], skip: Session | None = None) -> None:
        """Queue the message to every connection but ``skip`` (the hot loop of fan-out)."""
        lines = self._lines
        for conn in conns:
            if conn is not skip:
                conn.send(lines[conn.tag_mode] or self.line_for(conn))
