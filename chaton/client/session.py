"""One IRC session over an open TLS connection: registration, login, then chat.

Registration and login, as implemented here (only standard replies are relied on):

1. Send ``CAP LS 302``, ``NICK``, ``USER`` at once. From the ``CAP LS`` reply request what is
   offered of :data:`WANTED_CAPS`.
2. After ``CAP ACK``/``NAK``: with a known password (``--password-stdin``, or a reconnect that
   carries one) log in first -- ``AUTHENTICATE PLAIN``, wait for ``AUTHENTICATE +``, send the
   payload (:mod:`chaton.client.sasl`), wait for 903/904... -- then ``CAP END``. Without a
   password send ``CAP END`` at once, so a normal registration is never delayed.
3. If the nickname is refused because it is registered (``FAIL NICK ACCOUNT_REQUIRED <nick>``,
   then ``433``) and the user is at a terminal: ask for the password (hidden), do SASL PLAIN
   on the same, still unregistered connection, re-send ``NICK``, and ``CAP END`` if it was
   held back. If the server will not do SASL at that point (421/451/462 or ``FAIL
   AUTHENTICATE``), reconnect and log in during CAP negotiation as in step 2, which every
   IRCv3 server accepts. The same applies to ``/nick`` after registration (the reconnect
   rejoins the rooms). Without a terminal the client exits with a hint to use
   ``--password-stdin``. An empty answer to the password question asks for another nickname.
4. ``433``/``432`` for other reasons: ask for another nickname (terminal) or exit.

After registration: our own JOIN of a room asks for its latest history (or, after a
reconnect, for what was said since the newest message seen); see :mod:`chaton.client.history`.
A connection lost without our QUIT ends the session with :class:`Lost`, and the caller
reconnects (see :mod:`chaton.client.reconnect`); a KILL or ban ends it for good.

Invariants:
- The read loop never waits on the user: questions run as tasks, so PINGs keep being answered
  while someone types a password. At most one question task runs at a time.
- The password lives only in :class:`Login` and is sent only inside ``AUTHENTICATE`` payloads.
- The session ends exactly once, through :meth:`Session._finish`.
- Lines of a history or search batch never reach the live handlers (see
  :class:`~chaton.client.history.Recall`), and a message id is shown at most once.
- With ``echo-message`` our own messages are shown only as the server echoes them (with its
  time and msgid); without it they are shown locally as they are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaton.client.commands import Context, interpret
from chaton.client.connection import EXIT_ERROR, EXIT_LOGIN, EXIT_OK, ClientExit
from chaton.client.history import Memory, Recall, SearchQuery
from chaton.client.reconnect import STABLE_AFTER, is_final
from chaton.client.safe_text import printable_lines, sanitize
from chaton.client.sasl import SaslOutcome, authenticate_lines, outcome_of, plain_payload
from chaton.client.ui import UserInterface, format_event, local_line
from chaton.protocol import numerics as N
from chaton.protocol.message import (
    LINE_TOO_LONG,
    MAX_LINE_BYTES,
    MAX_TAG_BYTES,
    LineBuffer,
    Message,
    ProtocolError,
    parse,
    serialize,
    split_source,
)
from chaton.protocol.names import casefold, room_key, valid_nick

__all__ = [
    "NICK_MAX",
    "WANTED_CAPS",
    "Login",
    "Lost",
    "Reconnect",
    "Session",
    "nick_rules",
]

#: Capabilities the client uses when the server offers them.
WANTED_CAPS = (
    "server-time",
    "message-tags",
    "echo-message",
    "sasl",
    "batch",
    "draft/chathistory",
    "draft/search",
)
#: Longest nickname the client accepts locally; the server's NICKLEN has the last word.
NICK_MAX = 64
#: Longest incoming line buffered (tags + 512), like the server's own framer.
MAX_INCOMING = MAX_TAG_BYTES + 2 + MAX_LINE_BYTES
SASL_TIMEOUT = 30.0
QUIT_WAIT = 5.0
AUTOJOIN_WAIT = 10.0
#: Client-side pacing of typed/piped lines, below the server's flood limit (20 burst, 4/s).
PACE_BURST = 15
PACE_RATE = 3.0
#: Silence from the server after which we PING it, and how long we then wait for anything.
IDLE_PING = 120.0
PING_WAIT = 60.0

_JOIN_ERRORS = {"403", "405", "471", "473", "474", "475", "476", "477", "489"}


def nick_rules() -> str:
    """The nickname rules, in words."""
    return (
        "letters, digits and [ ] \\ ` _ ^ { | } -, not starting with a digit or '-', "
        f"at most {NICK_MAX} characters"
    )


@dataclass(frozen=True, slots=True)
class Login:
    """Credentials for SASL PLAIN."""

    account: str
    password: str

    def __repr__(self) -> str:  # never print the password by accident
        return f"Login(account={self.account!r}, password=***)"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The session ended so that a new one can log in during CAP negotiation."""

    nick: str
    login: Login
    rooms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lost:
    """The connection went away without our QUIT, and not for good: connect again."""

    reason: str
    nick: str
    login: Login | None
    rooms: tuple[str, ...]
    #: The session had got in (001), and stayed in for :data:`STABLE_AFTER` seconds.
    registered: bool = False
    stable: bool = False


class _Pacer:
    """A token bucket so a pasted or piped burst is not cut off by the server's flood limit."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens = 1.0
            self.stamp = time.monotonic()
        self.tokens -= 1


class Session:
    """Drive one connection from ``CAP LS`` to ``QUIT``; :meth:`run` gives the exit code."""

    def __init__(
        self,
        *,
        ui: UserInterface,
        writer: asyncio.StreamWriter,
        nick: str,
        rooms: tuple[str, ...] = (),
        login: Login | None = None,
        account: str | None = None,
        realname: str | None = None,
        memory: Memory | None = None,
        resumed: bool = False,
        reconnect: bool = False,
    ) -> None:
        self.ui = ui
        self._writer = writer
        self.nick = nick
        self.realname = realname or nick
        self.login = login
        self.account = account  # explicit --account, else a nick's owner is its own name
        self.initial_rooms = rooms
        self.rooms: list[str] = []
        self.room: str | None = None
        self.source_len: int | None = None
        self.registered = False
        self.logged_in = False
        self.quitting = False
        # CAP negotiation
        self.offered: dict[str, str] = {}
        self.acked: set[str] = set()
        self.cap_done = False
        self.cap_end_sent = False
        # nickname and login state before registration
        self._login_pending = False
        self._nick_refused = False
        self._needs_account: str | None = None
        self._login_tried: set[str] = set()
        self._sasl_future: asyncio.Future[SaslOutcome] | None = None
        self._sasl_payload: bytes | None = None
        self._sasl_mechs: set[str] | None = None
        # lifetime
        self._done: asyncio.Future[int | Reconnect | Lost] | None = None
        self._exit_message = ""
        self._server_error = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._question: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._autojoin: set[str] = set()
        self._pacer = _Pacer(PACE_BURST, PACE_RATE)
        # memory and coming back
        self.memory = memory if memory is not None else Memory()
        self._recall = Recall(self.memory)
        self.resumed = resumed  # this session replaces a lost one
        self.reconnect = reconnect  # a lost connection ends with Lost, not an exit
        self._rejoin = {room_key(r) for r in rooms} if resumed else set()
        self._final = False  # killed or banned: never come back
        self._lost_reason = ""
        self._registered_at: float | None = None
        self._outbox: asyncio.Queue[Message] | None = None

    # --- lifetime ---------------------------------------------------------------------------
    async def run(self, reader: asyncio.StreamReader) -> int | Reconnect | Lost:
        """Register, chat until the end; return the exit code, a :class:`Reconnect` or
        :class:`Lost`.

        Raises :class:`ClientExit` when the session ends with a message for the user.
        """
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.send(Message("CAP", ("LS", "302")))
        self.send(Message("NICK", (self.nick,)))
        self.send(Message("USER", (self.nick, "0", "*", self.realname)))
        self._spawn(self._read_loop(reader))
        try:
            result = await self._done
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close()
        if self._exit_message:
            raise ClientExit(result if isinstance(result, int) else EXIT_ERROR, self._exit_message)
        return result

    def _finish(self, result: int | Reconnect | Lost, message: str = "") -> None:
        if self._done is None or self._done.done():
            return
        self._exit_message = message
        self._done.set_result(result)

    async def _close(self) -> None:
        writer = self._writer
        if writer.is_closing():
            return
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        writer.transport.abort()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            if isinstance(exc, ClientExit):
                self._finish(exc.code, exc.message)
            else:  # a bug: show it (its text may quote the server's), and end cleanly
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(printable_lines("".join(traceback.format_exception(exc))))
                self._finish(EXIT_ERROR, f"internal error: {exc!r}")

    def _ask_once(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start a question task unless one is already on screen."""
        if self._question is not None and not self._question.done():
            coro.close()
            return
        self._question = self._spawn(coro)

    # --- output -----------------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        """Write one line; the caller built it with commands/sasl, so it is already safe."""
        if self._writer.is_closing():
            return
        self._writer.write(serialize(msg).encode("utf-8") + b"\r\n")

    def send_paced(self, msg: Message) -> None:
        """Send ``msg`` within the client's flood budget, after what is queued before it:
        for requests the client makes by itself (history after a JOIN of many rooms, gap
        fill for many conversations), which must never get it cut off for flooding."""
        if self._outbox is None:
            self._outbox = asyncio.Queue()
            self._spawn(self._drain_outbox(self._outbox))
        self._outbox.put_nowait(msg)

    async def _drain_outbox(self, outbox: asyncio.Queue[Message]) -> None:
        while True:
            msg = await outbox.get()
            await self._pacer.wait()
            self.send(msg)

    def show(self, text: str) -> None:
        self.ui.show(local_line(text))

    def _display(self, msg: Message) -> None:
        line = format_event(msg, self.nick)
        if line is not None:
            self.ui.show(line)

    # --- input ------------------------------------------------------------------------------
    def context(self) -> Context:
        return Context(self.nick, self.room, tuple(self.rooms), self.source_len)

    async def _input_loop(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives just as the event is set, and this task would then never end.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AUTOJOIN_WAIT):
                await self._ready.wait()
        while not self.quitting:
            text = await self.ui.read_line()
            if text is None:
                self._quit(Message("QUIT"))
                return
            await self.handle_input(text)

    async def handle_input(self, text: str) -> None:
        """Act on one typed line: local notes, questions, messages to send."""
        action = interpret(text, self.context())
        for note in action.show:
            self.show(note)
        if action.switch_room is not None:
            self._set_room(action.switch_room)
        if action.oper is not None:
            await self._oper(action.oper)
        if action.history is not None:
            await self._ask_history(*action.history)
        if action.search is not None:
            await self._search(action.search)
        for msg in action.send:
            if msg.command == "QUIT":
                self._quit(msg)
                return
            await self._pacer.wait()
            self.send(msg)
            if msg.command == "JOIN" and len(msg.params) == 2:  # a key: kept for a rejoin
                for room, key in zip(msg.param(0).split(","), msg.param(1).split(","),
                                     strict=False):
                    self.memory.remember_key(room, key)
            if msg.command in ("PRIVMSG", "NOTICE") and "echo-message" not in self.acked:
                self._display(Message(msg.command, msg.params, self.nick))

    async def _ask_history(self, target: str, count: int) -> None:
        if not self._recall.chathistory:
            self.show("this server keeps no history for clients (no draft/chathistory)")
            return
        msg = self._recall.more(target, count)
        if msg is None:
            self.show("cannot ask for that history now; nothing was sent")
            return
        await self._pacer.wait()
        self.send(msg)

    async def _search(self, query: SearchQuery) -> None:
        if not self._recall.search:
            self.show("this server cannot search its history (no draft/search)")
            return
        msg = self._recall.find(query)
        if msg is None:
            self.show("too many requests in flight; nothing was sent")
            return
        await self._pacer.wait()
        self.send(msg)

    async def _oper(self, name: str) -> None:
        if not self.ui.interactive:
            self.show("/oper needs a terminal to ask for the password; nothing was sent")
            return
        password = await self.ui.ask(f"Operator password for {name}: ", secret=True)
        if not password:
            self.show("no password given; nothing was sent")
            return
        self.send(Message("OPER", (name, password)))

    def _quit(self, msg: Message) -> None:
        if self.quitting:
            return
        self.quitting = True
        self.send(msg)
        asyncio.get_running_loop().call_later(QUIT_WAIT, self._finish, EXIT_OK)

    # --- reading ----------------------------------------------------------------------------
    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        framer = LineBuffer(MAX_INCOMING)
        pinged = False
        while True:
            try:
                async with asyncio.timeout(PING_WAIT if pinged else IDLE_PING):
                    data = await reader.read(65536)
            except TimeoutError:
                if not pinged:  # silence: is the server still there?
                    pinged = True
                    self.send(Message("PING", ("chaton-keepalive",)))
                    continue
                waited = IDLE_PING + PING_WAIT
                self._lost_reason = f"no answer from the server for {waited:g} s (ping timeout)"
                data = b""
            except (OSError, ssl.SSLError) as exc:
                self._lost_reason = f"connection error: {sanitize(str(exc) or type(exc).__name__)}"
                data = b""
            pinged = False
            if not data:
                self._on_eof()
                return
            for item in framer.feed(data):
                if item is LINE_TOO_LONG or not isinstance(item, bytes):
                    continue
                try:
                    msg = parse(item.decode("utf-8", "replace"))
                except ProtocolError:
                    continue
                self.on_message(msg)

    def _on_eof(self) -> None:
        if self.quitting:
            self._finish(EXIT_OK)
        elif self.reconnect and not self._final and (self.registered or self.resumed):
            self._finish(self._lost())
        elif self._server_error:
            reason = sanitize(self._server_error)
            self._finish(EXIT_ERROR, f"disconnected by the server: {reason}")
        else:
            self._finish(EXIT_ERROR, self._lost_reason or "the server closed the connection")

    def _lost(self) -> Lost:
        if self._server_error:
            why = f"the server closed the connection: {sanitize(self._server_error)}"
        else:
            why = self._lost_reason or "the server closed the connection"
        stable = (
            self._registered_at is not None
            and time.monotonic() - self._registered_at >= STABLE_AFTER
        )
        # Rooms still being joined, then the joined ones, the current room last (the last
        # JOIN confirmed becomes current again).
        pending = [r for r in self.initial_rooms if room_key(r) in self._autojoin]
        others = [r for r in self.rooms if r != self.room]
        current = [self.room] if self.room in self.rooms else []
        rooms = tuple(pending + others + current)
        return Lost(
            reason=why,
            nick=self.nick,
            login=self.login,
            rooms=rooms if self.registered else self.initial_rooms,
            registered=self.registered,
            stable=stable,
        )

    def on_message(self, msg: Message) -> None:
        """React to one message from the server (display, state, replies)."""
        cmd = msg.command
        if self._recall.take(msg):
            return  # history or a search result: shown when its batch ends
        if cmd == "BATCH":
            answer = self._recall.on_batch(msg, self.nick)
            if answer is not None:
                for line in answer.show:
                    self.ui.show(line)
                for request in answer.send:
                    self.send_paced(request)
            return
        if cmd == "PING":
            self.send(Message("PONG", msg.params or ("",)))
            return
        if cmd == "CAP":
            self._on_cap(msg)
            return
        if cmd == "AUTHENTICATE":
            self._on_authenticate(msg)
            return
        if cmd == N.RPL_SASLMECHS:
            self._sasl_mechs = {m.upper() for m in msg.param(1).split(",") if m}
        if self._sasl_future is not None and not self._sasl_future.done():
            outcome = outcome_of(msg, self._sasl_mechs)
            if outcome is not None:
                self._sasl_future.set_result(outcome)
        if cmd in (N.ERR_NICKNAMEINUSE, N.ERR_ERRONEUSNICKNAME) and self._on_nick_error(msg):
            return
        if not self._recall.live(msg, self.nick):
            return  # already shown (an echo of a message to ourselves, or from history)
        self._display(msg)
        handler = _HANDLERS.get(cmd)
        if handler is not None:
            handler(self, msg)
        elif cmd in _JOIN_ERRORS:
            self._autojoin.discard(room_key(msg.param(1)))
            if not self._autojoin:
                self._ready.set()

    # --- capability negotiation -------------------------------------------------------------
    def _on_cap(self, msg: Message) -> None:
        sub = msg.param(1).upper()
        if sub == "LS":
            for token in msg.params[-1].split():
                name, _, value = token.partition("=")
                self.offered[name] = value
            if len(msg.params) >= 4 and msg.param(2) == "*":
                return  # more LS lines follow
            wanted = [c for c in WANTED_CAPS if c in self.offered]
            mechs = self.offered.get("sasl", "")
            if "sasl" in wanted and mechs and "PLAIN" not in mechs.upper().split(","):
                wanted.remove("sasl")
            if wanted:
                self.send(Message("CAP", ("REQ", " ".join(wanted))))
            else:
                self._caps_ready()
        elif sub == "ACK":
            self.acked |= {c for c in msg.params[-1].split() if not c.startswith("-")}
            batches = "batch" in self.acked
            self._recall.chathistory = batches and "draft/chathistory" in self.acked
            self._recall.search = batches and "draft/search" in self.acked
            self._caps_ready()
        elif sub == "NAK":
            self._caps_ready()

    def _caps_ready(self) -> None:
        if self.cap_done:
            return
        self.cap_done = True
        if self.login is not None:
            if "sasl" not in self.acked:
                account = sanitize(self.login.account)
                self._finish(
                    EXIT_LOGIN, f"cannot log in as {account}: the server offers no SASL PLAIN"
                )
                return
            self._login_pending = True
            self._ask_once(self._initial_login())
        elif self._needs_account is not None and not self.registered:
            self._ask_once(self._claim(self._needs_account))
        else:
            self._maybe_cap_end()

    def _maybe_cap_end(self) -> None:
        if self.cap_done and not self.cap_end_sent and not self._login_pending:
            self.cap_end_sent = True
            self.send(Message("CAP", ("END",)))

    # --- SASL -------------------------------------------------------------------------------
    def _on_authenticate(self, msg: Message) -> None:
        if msg.param(0) == "+" and self._sasl_payload is not None:
            payload, self._sasl_payload = self._sasl_payload, None
            for line in authenticate_lines(payload):
                self.send(line)

    async def _authenticate(self, login: Login) -> SaslOutcome:
        """One SASL PLAIN exchange on this connection."""
        future: asyncio.Future[SaslOutcome] = asyncio.get_running_loop().create_future()
        self._sasl_future = future
        self._sasl_payload = plain_payload(login.account, login.password)
        self._sasl_mechs = None
        self.send(Message("AUTHENTICATE", ("PLAIN",)))
        try:
            async with asyncio.timeout(SASL_TIMEOUT):
                return await future
        except TimeoutError:
            self.send(Message("AUTHENTICATE", ("*",)))  # abort the exchange
            return SaslOutcome.FAILED
        finally:
            self._sasl_future = None
            self._sasl_payload = None

    async def _initial_login(self) -> None:
        """Log in with a known password before ``CAP END`` (step 2 of the module doc)."""
        assert self.login is not None
        login = self.login
        for attempt in range(3):
            outcome = await self._authenticate(login)
            if outcome is SaslOutcome.SUCCESS:
                self._logged_in_as(login)
                self._login_pending = False
                if self._nick_refused:
                    self._nick_refused = False
                    self.send(Message("NICK", (self.nick,)))
                self._maybe_cap_end()
                return
            if outcome is SaslOutcome.UNSUPPORTED:
                raise ClientExit(EXIT_LOGIN, "the server does not accept SASL PLAIN logins")
            if outcome is SaslOutcome.REFUSED:
                raise ClientExit(EXIT_LOGIN, "the server refused to log you in")
            if not self.ui.interactive or attempt == 2:
                break
            password = await self.ui.ask(
                f"Login as {sanitize(login.account)} failed. Password (empty to give up): ",
                secret=True,
            )
            if not password:
                break
            login = Login(login.account, password)
        account = sanitize(login.account)
        raise ClientExit(EXIT_LOGIN, f"login as {account} failed: wrong account name or password")

    def _logged_in_as(self, login: Login) -> None:
        self.login = login
        self.logged_in = True
        self._login_tried.add(casefold(self.nick))

    # --- nicknames --------------------------------------------------------------------------
    def _on_nick_fail(self, msg: Message) -> None:
        if msg.param(0).upper() != "NICK" or msg.param(1).upper() != "ACCOUNT_REQUIRED":
            if msg.param(0).upper() == "JOIN":
                self._ready.set()
            return
        nick = msg.param(2)
        if not nick or casefold(nick) in self._login_tried:
            return  # logging in did not help: the 433 that follows asks for another nick
        self._needs_account = nick
        if self.registered:
            if self.ui.interactive:
                self._ask_once(self._claim(nick))
            else:
                self._needs_account = None
            return
        self._nick_refused = True
        if self._login_pending or not self.cap_done:
            return  # the login, or the end of CAP negotiation, continues from here
        self._ask_once(self._claim(nick))

    def _on_nick_error(self, msg: Message) -> bool:
        """433/432; return True when the line is already handled (and not to be shown)."""
        nick = msg.param(1)
        if self._needs_account is not None and casefold(nick) == casefold(self._needs_account):
            return True
        if self.registered:
            return False
        if self.resumed and self.reconnect and msg.command == N.ERR_NICKNAMEINUSE:
            # Most likely our old connection, which the server has not noticed is gone yet.
            self._lost_reason = f"the nickname {sanitize(nick)} is still in use"
            self._finish(self._lost())
            return True
        self._nick_refused = True
        if not self._login_pending:
            shown, reason = sanitize(nick), sanitize(msg.params[-1])
            why = (
                f"the nickname {shown} is already in use"
                if msg.command == N.ERR_NICKNAMEINUSE
                else f"the server does not accept the nickname {shown} ({reason})"
            )
            self._ask_once(self._choose_nick(why))
        return False

    async def _choose_nick(self, why: str) -> None:
        if not self.ui.interactive:
            raise ClientExit(EXIT_LOGIN, f"{why}; choose another one with --nick")
        question = f"{why[0].upper()}{why[1:]}. Choose another nickname: "
        while True:
            answer = await self.ui.ask(question)
            if answer is None:
                raise ClientExit(EXIT_LOGIN, "no nickname chosen")
            new = answer.strip()
            if valid_nick(new, NICK_MAX):
                break
            question = f"A nickname has {nick_rules()}. Choose a nickname: "
        self.nick = new
        self._nick_refused = False
        self.send(Message("NICK", (new,)))
        self._maybe_cap_end()

    async def _claim(self, nick: str) -> None:
        """The nickname is registered: log in to its account (step 3 of the module doc)."""
        account = self.account or nick
        shown, shown_account = sanitize(nick), sanitize(account)  # the nick is the server's
        if not self.ui.interactive:
            raise ClientExit(
                EXIT_LOGIN,
                f"the nickname {shown} is registered. Log in by putting the password of "
                f"account {shown_account} on the first line of stdin with --password-stdin, "
                "or choose another --nick",
            )
        if "sasl" not in self.acked:
            self.show("this server offers no SASL login, so the nickname cannot be claimed")
        else:
            for _attempt in range(3):
                password = await self.ui.ask(
                    f"{shown} is registered. Password for account {shown_account} "
                    "(empty: other nickname): ",
                    secret=True,
                )
                if not password:
                    break
                login = Login(account, password)
                outcome = await self._authenticate(login)
                if outcome is SaslOutcome.SUCCESS:
                    self._needs_account = None
                    self.login = login
                    self.logged_in = True
                    self._login_tried.add(casefold(nick))
                    self.send(Message("NICK", (nick,)))
                    if not self.registered:
                        self.nick = nick
                        self._nick_refused = False
                        self._maybe_cap_end()
                    return
                if outcome is SaslOutcome.REFUSED:
                    self.show("the server wants the login at connection time: reconnecting")
                    rooms = tuple(self.rooms) if self.registered else self.initial_rooms
                    self._quit_for_reconnect(Reconnect(nick, login, rooms))
                    return
                if outcome is SaslOutcome.UNSUPPORTED:
                    self.show("the server does not accept SASL PLAIN logins")
                    break
                self.show(f"login as {shown_account} failed")
        self._needs_account = None
        if not self.registered:
            await self._choose_nick(f"the nickname {shown} is registered")

    def _quit_for_reconnect(self, reconnect: Reconnect) -> None:
        self.quitting = True
        self.send(Message("QUIT", ("Reconnecting to log in",)))
        self._finish(reconnect)

    # --- events that change state ------------------------------------------------------------
    def _on_welcome(self, msg: Message) -> None:
        self.registered = True
        self._registered_at = time.monotonic()
        self.nick = msg.param(0) or self.nick
        self._needs_account = None
        self._nick_refused = False
        rooms = [r for r in self.initial_rooms if r]
        if rooms:
            self._autojoin = {room_key(r) for r in rooms}
            for line in self._join_lines(rooms):
                self.send(line)
        else:
            self._ready.set()
        self._spawn(self._input_loop())
        if self.resumed:
            self._fill_private_gaps()

    def _join_lines(self, rooms: list[str]) -> list[Message]:
        """JOIN lines for ``rooms`` in their order (the last joined becomes current): one per
        run of rooms with or without a key, since keys pair with the first names of a line."""
        lines: list[Message] = []
        run: list[str] = []
        for i, room in enumerate(rooms):
            run.append(room)
            keyed = self.memory.key(room) is not None
            if i + 1 == len(rooms) or (self.memory.key(rooms[i + 1]) is not None) != keyed:
                names = ",".join(run)
                if keyed:
                    keys = ",".join(self.memory.key(r) or "" for r in run)
                    lines.append(Message("JOIN", (names, keys)))
                else:
                    lines.append(Message("JOIN", (names,)))
                run = []
        return lines

    def _fill_private_gaps(self) -> None:
        """After a reconnect: what was said privately while we were away (rooms are filled
        as they are rejoined), and which conversations started meanwhile (TARGETS)."""
        for target in self.memory.private_targets():
            since = self.memory.newest(target)
            ask = self._recall.gap(target, since) if since else None
            if ask is not None:
                self.send_paced(ask)
        ask = self._recall.targets(datetime.now(UTC))
        if ask is not None:
            self.send_paced(ask)

    def _is_me(self, msg: Message) -> bool:
        return bool(msg.source) and casefold(split_source(msg.source or "")[0]) == casefold(
            self.nick
        )

    def _on_join(self, msg: Message) -> None:
        if not self._is_me(msg):
            return
        room = msg.param(0)
        self.source_len = len(msg.source or "")
        if self._find_room(room) is None:
            self.rooms.append(room)
        self._set_room(room)
        self._autojoin.discard(room_key(room))
        if not self._autojoin:
            self._ready.set()
        gap = room_key(room) in self._rejoin
        self._rejoin.discard(room_key(room))
        ask = self._recall.join_history(room, gap=gap)
        if ask is not None:
            self.send_paced(ask)
        if self.memory.newest(room) is None:  # where a later gap starts if nobody speaks
            self.memory.touch(room, msg.tags.get("time", ""))

    def _find_room(self, room: str) -> str | None:
        key = room_key(room)
        return next((r for r in self.rooms if room_key(r) == key), None)

    def _leave_room(self, room: str) -> None:
        known = self._find_room(room)
        if known is None:
            return
        self.rooms.remove(known)
        if self.room == known:
            self._set_room(self.rooms[-1] if self.rooms else None)

    def _set_room(self, room: str | None) -> None:
        self.room = room
        self.ui.set_room(room)

    def _on_part(self, msg: Message) -> None:
        if self._is_me(msg):
            self._leave_room(msg.param(0))

    def _on_kick(self, msg: Message) -> None:
        if casefold(msg.param(1)) == casefold(self.nick):
            self._leave_room(msg.param(0))

    def _on_nick(self, msg: Message) -> None:
        if self._is_me(msg):
            self.nick = msg.param(0)
            if self.source_len is not None and msg.source:
                self.source_len += len(self.nick) - len(split_source(msg.source)[0])

    def _on_error(self, msg: Message) -> None:
        self._server_error = self._server_error or msg.param(0) or "closing"
        if is_final(msg.param(0)):
            self._final = True
        # The server closes right after ERROR; don't hang if it does not.
        asyncio.get_running_loop().call_later(QUIT_WAIT, self._on_eof)

    def _on_banned(self, msg: Message) -> None:
        self._server_error = msg.params[-1] if msg.params else "you are banned"
        self._final = True

    def _on_kill(self, msg: Message) -> None:
        if casefold(msg.param(0)) == casefold(self.nick):
            self._final = True

    def _on_isupport(self, msg: Message) -> None:
        for token in msg.params[1:-1]:
            name, _, value = token.partition("=")
            if name.upper() == "CHATHISTORY" and value.isdigit():
                self._recall.max_limit = int(value)

    def _on_fail(self, msg: Message) -> None:
        if msg.param(0).upper() in ("CHATHISTORY", "SEARCH"):
            self._recall.on_refusal(msg.param(0))
            return
        self._on_nick_fail(msg)

    def _on_cap_unknown(self, msg: Message) -> None:
        if msg.param(1).upper() == "CAP":
            self._caps_ready()  # no IRCv3 here: nothing to negotiate
        elif msg.param(1).upper() in ("CHATHISTORY", "SEARCH"):
            self._recall.on_refusal(msg.param(1))


_HANDLERS = {
    N.RPL_WELCOME: Session._on_welcome,
    "JOIN": Session._on_join,
    "PART": Session._on_part,
    "KICK": Session._on_kick,
    "NICK": Session._on_nick,
    "ERROR": Session._on_error,
    "FAIL": Session._on_fail,
    N.ERR_YOUREBANNEDCREEP: Session._on_banned,
    N.RPL_ISUPPORT: Session._on_isupport,
    "KILL": Session._on_kill,
    N.ERR_UNKNOWNCOMMAND: Session._on_cap_unknown,
}
