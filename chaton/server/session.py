"""One client as the server sees it: identity, capabilities, privileges and its input queue.

A session does not know what carries its bytes. Its :class:`Link` (the TLS stream today,
a WebSocket later) hands it framed lines and takes encoded lines to send; every handler
sees only the session, so every rule holds whatever the transport.

Invariants:
- Registration phases and their rules live in :class:`Registration` (the base class);
  nothing here changes ``phase`` except through its events.
- One client's commands run in the order sent: while a handler's awaitable (argon2 in a
  thread, a commit) is pending, further lines wait in the inbox, bounded by
  ``flood_max_backlog``; the flood bucket meters them ("fakelag"), and a command that
  made the server produce more than ``flood_reply_lines`` lines for this client pays one
  token per that many (at most a burst's worth), so NAMES/WHO/LIST spam is metered by
  its cost, not its line count. While a command waits for the message store (a commit
  when the writer is behind, a history read), a client that piles up more than
  ``flood_max_backlog`` lines is paused (not read until the backlog is worked off) rather
  than cut off: that wait is the server's. A backlog of its own rate is cut off.
- Anything going wrong inside a handler closes this session only; the traceback goes to
  the server log, the client gets a generic ``ERROR``.
- A session leaves the shared state (nickname, rooms) exactly once, in
  ``server.on_closing``, when it enters CLOSED.
- A labeled command (IRCv3 ``labeled-response``) swaps ``send`` for its
  :class:`LabeledReply` until the command ends, sync or awaited (``labels``).
- ``is_admin`` is a cache of the authority's answer for presence (LUSERS, admin notices,
  flood exemption); every use of an admin power asks the authority again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from chaton.protocol import numerics as num
from chaton.protocol.message import LINE_TOO_LONG, LineTooLong, Message, ProtocolError, parse
from chaton.server.addresses import address_group
from chaton.server.flood import TokenBucket
from chaton.server.hosts import cloak, visible_host
from chaton.server.labels import LabeledReply, wanted_label
from chaton.server.registration_state import Registration

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.state import Channel

__all__ = ["NO_FLAGS", "Link", "Session"]

log = logging.getLogger("chaton")

#: Shared by every client without capabilities or modes (``frozenset()`` is not a singleton).
NO_FLAGS: frozenset[str] = frozenset()

#: Commands whose delivery waits for the history commit (``server.history``) when the
#: writer is behind.
MESSAGE_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})
#: Commands that may wait for the message store: meanwhile a backlog is paused, not cut off.
STORE_COMMANDS = MESSAGE_COMMANDS | {"CHATHISTORY", "SEARCH", "MARKREAD", "REDACT"}


class Link(Protocol):
    """What a session needs from the wire it arrived on."""

    def send(self, line: bytes) -> None:
        """Queue one encoded line (with CR LF); dropped once the link is closing."""

    def close(self, farewell: bytes) -> None:
        """Deliver what is queued and ``farewell`` (if the link can still speak), then close."""

    def abort(self, *, deliver: bool = False) -> None:
        """Close at once; ``deliver`` lets bytes already written go out first."""

    def pause_reading(self) -> None:
        """Stop taking input until :meth:`resume_reading` (the peer's TCP window fills)."""

    def resume_reading(self) -> None:
        """Take input again."""

    def queued_bytes(self) -> int:
        """Bytes waiting to reach the client."""

    @property
    def sent_lines(self) -> int:
        """Lines queued to this client so far (what a command produced is the difference)."""

    async def drained(self, below: int) -> None:
        """Return once fewer than ``below`` bytes wait for the client, or the link is gone."""

    @property
    def description(self) -> str:
        """How the client is connected, for the log (protocol version, cipher)."""

    @property
    def restarts_clock(self) -> bool:
        """Whether the link became ready later than the connection (a WebSocket upgrade)."""


class Session(Registration):
    """A connected client and everything the server knows about it."""

    # Slots: a thousand idle clients should cost kilobytes each, not a dict apiece.
    __slots__ = (
        "_admin",
        "_bucket",
        "_busy",
        "_host",
        "_inbox",
        "_server_wait",
        "_wakeup",
        "away",
        "caps",
        "channels",
        "close_reason",
        "connected_at",
        "group",
        "ip",
        "last_active",
        "link",
        "linked",
        "monitoring",
        "oper_account",
        "oper_gen",
        "password_gen",
        "ping_sent_at",
        "refusal",
        "sasl_buffer",
        "send",
        "server",
        "signon",
        "tag_mode",
        "user_modes",
    )

    def __init__(self, server: ChatServer, link: Link, ip: str) -> None:
        s = server.settings
        now = time.monotonic()
        super().__init__(now, s.registration_timeout)
        self.server = server
        self.link = link
        self.linked = False  # the link became able to carry lines (TLS handshake done)
        self.send = link.send  # the fan-out hot path: one call per recipient, not two
        self.ip = ip
        self.group = sys.intern(address_group(ip, s.ipv4_prefix, s.ipv6_prefix))
        self.refusal: str | None = None
        self.close_reason = ""
        self.connected_at = now
        self.last_active = now
        self.ping_sent_at: float | None = None
        self.caps = NO_FLAGS  # replaced whole on change, so idle clients share one empty set
        self.tag_mode = 0  # which tags this client gets (bits of lines.SERVER_TIME...)
        self._admin = False
        self.oper_account: str | None = None  # the admin account whose powers this client has
        self._host: tuple[str | None, str] | None = None  # (account, its visible host)
        self.monitoring: set[str] = set()  # casefolded nicknames it MONITORs
        self.password_gen = 0  # the login account's password generation at login
        self.oper_gen = 0  # the oper account's password generation at OPER
        self.away: str | None = None
        self.user_modes = NO_FLAGS
        self.channels: dict[str, Channel] = {}
        self.signon = time.time()
        self.sasl_buffer: list[str] | None = None
        # Made only when needed and dropped when empty: most clients never have a backlog.
        self._inbox: deque[bytes] | None = None
        self._bucket = TokenBucket(s.flood_rate, s.flood_burst, now) if s.flood_rate > 0 else None
        self._busy = False
        self._server_wait = False  # its command waits for the store (a commit, a read)
        self._wakeup: asyncio.TimerHandle | None = None

    # --- identity ---------------------------------------------------------------------
    @property
    def is_admin(self) -> bool:
        """Has admin powers (logged in to an admin account, or OPER), as last derived."""
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
        """What others see as this client's host (``hosts.visible_host``), never the IP
        address; worked out once per account (a login changes it)."""
        cached = self._host
        if cached is None or cached[0] != self.account:
            server = self.server
            guest = cloak(server.cloak_key, self.group) if self.account is None else ""
            cached = self._host = (self.account,
                                   visible_host(server.settings, self.account, guest))
        return cached[1]

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
        return f"<Session {self.nick or '-'} {self.ip} {self.phase.name}>"

    # --- output -----------------------------------------------------------------------
    def send_msg(self, command: str, *params: str, source: str | None = None) -> None:
        self.send(self.server.encode(command, params, source or self.server.name))

    def numeric(self, code: str, *params: str) -> None:
        """Send numeric ``code`` to this client; all but the last param are made safe."""
        self.send(self.server.numeric_line(code, self.name, params))

    def queued_bytes(self) -> int:
        return self.link.queued_bytes()

    async def paced(self) -> None:
        """Wait, if need be, until the client has read most of what is queued: long replies
        call this between lines so they never outgrow ``sendq_bytes``."""
        low_water = self.server.settings.sendq_bytes // 4
        if self.link.queued_bytes() >= low_water:
            await self.link.drained(low_water)

    # --- input ------------------------------------------------------------------------
    def lines_received(self, lines: list[bytes | LineTooLong]) -> None:
        """Framed lines from the link: queue them, then run what the flood bucket allows."""
        if self.closing:
            return
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        for line in lines:
            if line is LINE_TOO_LONG:
                self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
            else:
                inbox.append(line)  # type: ignore[arg-type]
        self._process_inbox()
        if len(inbox) > self.server.settings.flood_max_backlog:
            if self._server_wait:
                # The client waits for the disk (a commit, a history read), which is the
                # server's doing, not a flood: take no more input until the backlog is
                # worked off (TCP pushes back on the client). A backlog the flood bucket
                # made (the client's own rate) is cut off.
                self.link.pause_reading()
            else:
                self.server.metrics.disconnects["flood"] += 1
                self.quit("Excess flood")

    def _process_inbox(self) -> None:
        inbox = self._inbox
        if inbox is None:
            if not self._server_wait:
                self.link.resume_reading()  # (if a commit wait had paused it)
            return
        bucket = self._meter()
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
        if not self._server_wait and len(inbox) <= self.server.settings.flood_max_backlog:
            self.link.resume_reading()

    def _meter(self) -> TokenBucket | None:
        """The flood bucket this client's input is metered by (``None``: flood control is
        off, or it is an admin and admins are exempt)."""
        bucket = self._bucket
        if bucket is not None and self._admin and self.server.settings.flood_exempt_admins:
            return None
        return bucket

    def _wake(self) -> None:
        self._wakeup = None
        self._process_inbox()

    def _handle_line(self, raw: bytes) -> None:
        s = self.server.settings
        if raw[0] == 0x40:  # '@': the tags have their own allowance
            space = raw.find(b" ")
            tag_len = space if space >= 0 else len(raw)
            body_len = len(raw) - tag_len - 1
            # The client's tag section, '@' and the space after it included, is at most
            # max_tag_bytes (IRCv3 message-tags: 4096).
            if tag_len + 1 > s.max_tag_bytes or body_len > s.max_line_bytes - 2:
                self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
                return
        elif len(raw) > s.max_line_bytes - 2:
            self.numeric(num.ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            if s.utf8_only:  # UTF8ONLY: refused, not silently changed
                command = text.split(" ", 2)[1 if text.startswith((":", "@")) else 0][:20]
                self.send_msg("FAIL", command.upper() or "*", "INVALID_UTF8",
                              "Message rejected: it is not valid UTF-8")
                return
        try:
            msg = parse(text)
        except ProtocolError as exc:
            self.numeric(num.ERR_UNKNOWNERROR, "*", f"Malformed line: {exc}")
            return
        self.last_active = time.monotonic()
        self.ping_sent_at = None
        before = self.link.sent_lines
        label = wanted_label(self, msg.tags) if msg.tags else None
        if label is not None:
            self._handle_labeled(msg, label, before)
            return
        try:
            pending = self.server.dispatch(self, msg)
        except Exception:
            self._crashed(msg.command)
            return
        if pending is None:
            self._charge(before)
        else:
            self.run_later(pending, msg.command, before)

    def _handle_labeled(self, msg: Message, label: str, before: int) -> None:
        """Run a command whose replies the client wants labeled (``labels``)."""
        reply = LabeledReply(self, label)
        reply.enter()
        try:
            pending = self.server.dispatch(self, msg)
            if pending is not None:  # its task inherits the labeled context
                self.run_later(pending, msg.command, before, reply)
        except Exception:
            reply.finish()
            self._crashed(msg.command)
            return
        finally:
            reply.leave()
        if pending is None:
            reply.finish()
            self._charge(before)

    def _charge(self, before: int) -> None:
        """Pay for what a command made the server produce for this client (NAMES, WHO,
        LIST...), not one token per line sent: at most a burst's worth per command."""
        s = self.server.settings
        produced = self.link.sent_lines - before
        if produced > s.flood_reply_lines and self._bucket is not None:
            self._bucket.spend(min(produced / s.flood_reply_lines, s.flood_burst))

    def run_later(self, pending: Awaitable[Any], command: str, before: int | None = None,
                  reply: LabeledReply | None = None) -> None:
        """Run ``pending`` while holding back this client's further input (logins, admin
        actions awaiting a commit, paced replies), so its commands still run in order."""
        self._busy = True
        self._server_wait = command in STORE_COMMANDS and (
            command not in MESSAGE_COMMANDS or isinstance(pending, asyncio.Future))
        task = asyncio.ensure_future(pending)
        start = self.link.sent_lines if before is None else before
        task.add_done_callback(lambda t: self._finished(t, command, start, reply))

    def _finished(self, task: asyncio.Future[Any], command: str, before: int,
                  reply: LabeledReply | None) -> None:
        self._busy = False
        self._server_wait = False
        if reply is not None:
            reply.finish()
        self._charge(before)
        if task.cancelled() or self.closing:
            return
        if task.exception() is not None:
            self._crashed(command, task.exception())
            return
        self._process_inbox()

    def _crashed(self, command: str, exc: BaseException | None = None) -> None:
        log.error(  # not budgeted: a bug must always be seen
            "handler-error nick=%s ip=%s command=%s", self.nick, self.ip, command,
            exc_info=exc if exc is not None else True,
        )
        self.quit("Internal server error")

    # --- closing ----------------------------------------------------------------------
    def quit(self, reason: str) -> None:
        """Say ``ERROR`` with ``reason``, deliver what is queued, then close."""
        if self.closing:
            return
        self.close_reason = reason
        self.server.on_closing(self)
        farewell = self.server.encode("ERROR", [f"Closing Link: {self.ip} ({reason})"], None)
        self.link.close(farewell)

    def abort(self, reason: str, *, deliver: bool = False) -> None:
        """Close without a goodbye (peer gone, SendQ, TLS failure)."""
        if not self.close_reason:
            self.close_reason = reason
        if not self.closing:
            self.server.on_closing(self)
        self.link.abort(deliver=deliver)

    def link_ready(self) -> None:
        """The link can carry lines now (the TLS handshake is done, or for a browser the
        WebSocket upgrade: the registration and first-line clocks start again then, so
        time spent loading the page is not counted against the chat connection)."""
        if self.linked:
            return
        self.linked = True
        if self.link.restarts_clock:
            now = time.monotonic()
            self.connected_at = self.last_active = now
            self.deadline = now + self.server.settings.registration_timeout
        self.server.on_link_ready(self)

    def link_dropped(self, reason: str) -> None:
        """The link stopped delivering (SendQ exceeded): leave the state on the next pass.

        This runs inside a fan-out loop over a room's members, so the room must not change
        under it; the link already drops further output.
        """
        if self.closing or self.close_reason:
            return
        self.close_reason = reason
        self.server.metrics.disconnects["sendq"] += 1
        asyncio.get_running_loop().call_soon(self.server.on_closing, self)

    def link_lost(self, exc: Exception | None) -> None:
        """The link is gone for good: forget this session everywhere."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if not self.close_reason:
            self.close_reason = "Connection reset" if exc else "Connection closed"
        self._inbox = None
        self.server.on_connection_lost(self)
