"""Fan-out: one message, many recipients, each tag variant encoded once.

The wire format itself (quoting, CR/LF/NUL, length) belongs to ``chaton.protocol.message``;
this module only decides which variant each recipient gets.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaton.protocol.message import encode_line, escape_tag_value

if TYPE_CHECKING:
    from chaton.server.session import Session

__all__ = ["ACCOUNT_TAG", "MESSAGE_TAGS", "SERVER_TIME", "Outgoing", "new_msgid", "server_time"]

#: ``Session.tag_mode`` bits: which tags a client gets (one encoded variant per value).
SERVER_TIME = 1  # ``time``
MESSAGE_TAGS = 2  # the sender's ``+client`` tags and ``msgid``
ACCOUNT_TAG = 4  # ``account`` of a logged-in sender

_MSGID_PREFIX = secrets.token_hex(4)  # per process: ids never repeat across restarts
_msgids = itertools.count(1)


def new_msgid() -> str:
    """A message id unique on this server (IRCv3 ``msgid``): cheap, short, never reused."""
    return f"{_MSGID_PREFIX}{next(_msgids):x}"


def server_time(now: float | None = None) -> str:
    """The IRCv3 ``time`` tag value: UTC with milliseconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Outgoing:
    """One message for many recipients, encoded at most once per tag variant.

    ``Session.tag_mode`` picks the variant (bits ``SERVER_TIME``, ``MESSAGE_TAGS``,
    ``ACCOUNT_TAG``): a ``time`` tag, the sender's client-only ``+tags`` and the ``msgid``,
    the sender's ``account``. A client that negotiated none gets the plain line.
    """

    __slots__ = ("_account", "_at", "_bot", "_client_tags", "_lines", "msgid", "plain")

    def __init__(
        self,
        source: str | None,
        command: str,
        params: Sequence[str],
        client_tags: dict[str, str] | None = None,
        *,
        msgid: str | None = None,
        account: str | None = None,
        bot: bool = False,
    ) -> None:
        self.plain = encode_line(source, command, params)
        # Whole milliseconds, as the ``time`` tag says: a ``timestamp=`` reference then
        # names exactly the messages whose tag it copied.
        self._at = int(time.time() * 1000) / 1000
        self._client_tags = client_tags
        self.msgid = msgid
        self._account = account
        self._bot = bot
        self._lines: list[bytes | None] = [self.plain, None, None, None, None, None, None, None]

    @property
    def at(self) -> float:
        """When the message was accepted (its ``time`` tag, and its time in history)."""
        return self._at

    def line_for(self, conn: Session) -> bytes:
        mode = conn.tag_mode
        line = self._lines[mode]
        if line is None:
            tags: list[str] = []
            if mode & ACCOUNT_TAG and self._account:
                tags.append("account=" + escape_tag_value(self._account))
            if mode & MESSAGE_TAGS and self.msgid:
                tags.append("msgid=" + self.msgid)
            if mode & MESSAGE_TAGS and self._bot:
                tags.append("bot")
            if mode & SERVER_TIME:
                tags.append("time=" + server_time(self._at))
            if mode & MESSAGE_TAGS and self._client_tags:
                tags.extend(
                    f"{k}={escape_tag_value(v)}" if v else k for k, v in self._client_tags.items()
                )
            line = ("@" + ";".join(tags) + " ").encode() + self.plain if tags else self.plain
            self._lines[mode] = line
        return line

    def encoded(self) -> list[bytes]:
        """Every variant encoded so far (the very objects queued to recipients)."""
        return [line for line in self._lines if line is not None]

    def send_to(self, conns: Iterable[Session], skip: Session | None = None) -> None:
        """Queue the message to every connection but ``skip`` (the hot loop of fan-out)."""
        lines = self._lines
        for conn in conns:
            if conn is not skip:
                conn.send(lines[conn.tag_mode] or self.line_for(conn))

    def send_to_tagged(self, conns: Iterable[Session], skip: Session | None = None) -> None:
        """Like :meth:`send_to`, but only to clients that negotiated ``message-tags``
        (TAGMSG: a message that is nothing but tags)."""
        for conn in conns:
            if conn is not skip and conn.tag_mode & MESSAGE_TAGS:
                conn.send(self.line_for(conn))
