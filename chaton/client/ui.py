"""What the user sees and types: one line per event, and the two front ends.

Formatting is pure (:func:`format_event` takes the clock's zone as an argument) so every
line shape is tested without a terminal. Line shapes, ``HH:MM`` from the ``time`` tag
(server-time) when present, else the local clock::

    12:01 #room <alice> hello                  room message
    12:01 #room * alice waves                  action (/me)
    12:01 *alice* psst                         private message to you
    12:01 -> *bob* psst                        your own private message
    12:01 #room -alice- text                   notice to a room (-alice- text: private notice)
    12:01 #room -- alice joined                joins, parts, kicks, topic, names
    12:01 -- alice quit (bye)                  quits and nick changes (no room)
    12:01 -!- No such nick                     server numerics, notices and errors
    -!- unknown command /foo                   local feedback (no time)
    [history 09:14] #room <bob> morning        from history (CHATHISTORY), never live
    [history 2024-05-01 09:14] *bob* psst      ... from another day
    [found 2024-05-01 09:14] #room <bob> hi    a /search result

Text from other people passes through :func:`~chaton.client.safe_text.sanitize`: IRC
colour/format codes are dropped and other control characters (and bidirectional overrides)
are shown escaped, so nobody can move the cursor, clear the screen or reverse the line in
someone else's terminal. The front ends also pass every line and question they write through
:func:`~chaton.client.safe_text.printable`, so a line built without it is still safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import threading
from datetime import UTC, datetime, tzinfo
from typing import IO, Protocol

from chaton.client.safe_text import printable, sanitize
from chaton.protocol import numerics as N
from chaton.protocol.message import Message, serialize, split_source
from chaton.protocol.names import casefold, is_channel

__all__ = [
    "InputPump",
    "PipeUI",
    "TerminalUI",
    "UserInterface",
    "event_time",
    "format_event",
    "format_history",
    "history_time",
    "local_line",
    "sanitize",
]


# --- time ------------------------------------------------------------------------------------
def _server_time(msg: Message) -> datetime | None:
    """The ``time`` tag (server-time, always UTC) as an aware datetime, if it is valid."""
    stamp = msg.tags.get("time")
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def event_time(msg: Message, tz: tzinfo | None = None, now: datetime | None = None) -> str:
    """``HH:MM`` of the event: the server's ``time`` tag if valid, else ``now`` (local clock)."""
    when = _server_time(msg)
    if when is None:
        when = now if now is not None else datetime.now(UTC)
        if when.tzinfo is None:
            return when.strftime("%H:%M")
    return when.astimezone(tz).strftime("%H:%M")


def history_time(msg: Message, tz: tzinfo | None = None, now: datetime | None = None) -> str:
    """When a message from history was sent: ``HH:MM`` today, else ``YYYY-MM-DD HH:MM``;
    empty without a valid ``time`` tag (history is never stamped with the local clock)."""
    when = _server_time(msg)
    if when is None:
        return ""
    local = when.astimezone(tz)
    today = (now if now is not None else datetime.now(UTC)).astimezone(tz).date()
    return local.strftime("%H:%M" if local.date() == today else "%Y-%m-%d %H:%M")


def local_line(text: str) -> str:
    """A line of local feedback (not from the server)."""
    return f"-!- {text}"


# --- events ----------------------------------------------------------------------------------
def _nick_of(msg: Message) -> str:
    return split_source(msg.source)[0] if msg.source else "?"


def _is_server_source(msg: Message) -> bool:
    return msg.source is None or ("!" not in msg.source and "." in msg.source)


def _reason(text: str) -> str:
    return f" ({sanitize(text)})" if text else ""


def _split_ctcp(text: str) -> tuple[str, str] | None:
    if len(text) < 2 or not text.startswith("\x01"):
        return None
    body = text[1:-1] if text.endswith("\x01") else text[1:]
    verb, _, args = body.partition(" ")
    return verb.upper(), args


def _format_text(msg: Message, me: str) -> str:
    """PRIVMSG and NOTICE, to a room or to a person, from others or echoed from us."""
    target = msg.param(0)
    text = msg.param(1)
    nick = sanitize(_nick_of(msg))
    notice = msg.command == "NOTICE"
    room_target = target.lstrip("@+~&%")  # STATUSMSG prefixes
    ctcp = _split_ctcp(text)
    if ctcp and ctcp[0] == "ACTION" and not notice:
        body = f"* {nick} {sanitize(ctcp[1])}"
    elif ctcp:
        verb, args = ctcp
        body = f"[CTCP {sanitize(verb)}{' ' + sanitize(args) if args else ''}] from {nick}"
    elif notice:
        body = f"-{nick}- {sanitize(text)}"
    else:
        body = f"<{nick}> {sanitize(text)}"
    if is_channel(room_target):
        return f"{sanitize(target)} {body}"
    if notice and _is_server_source(msg):
        return f"-!- {sanitize(text)}"
    if msg.source and casefold(_nick_of(msg)) == casefold(me) and casefold(target) != casefold(me):
        # Our own message, echoed back (echo-message) or shown locally.
        where = f"-{sanitize(target)}-" if notice else f"*{sanitize(target)}*"
        own = body if ctcp else sanitize(text)
        return f"-> {where} {own}"
    if notice or (ctcp and ctcp[0] != "ACTION"):
        return body
    return f"*{nick}* {sanitize(text)}" if not ctcp else f"*{nick}* {body}"


def _numeric_text(msg: Message) -> str | None:
    """The readable part of a numeric reply (the first parameter is our own nick)."""
    code = msg.command
    params = msg.params[1:]
    last = params[-1] if params else ""
    middle = [sanitize(p) for p in params[:-1]]
    if code in (N.RPL_MYINFO, N.RPL_ISUPPORT, N.RPL_ENDOFNAMES, N.RPL_TOPICWHOTIME):
        return None
    if code == N.RPL_TOPIC and middle:
        return f"{middle[0]} -- topic: {sanitize(last)}"
    if code == N.RPL_NOTOPIC and middle:
        return f"{middle[0]} -- no topic is set"
    if code == N.RPL_NAMREPLY and len(middle) >= 2:
        return f"{middle[-1]} -- here: {sanitize(last)}"
    if code == N.RPL_WHOREPLY and len(middle) >= 6:
        room, user, host, _server, nick, flags = middle[:6]
        realname = sanitize(last.partition(" ")[2])
        marks = []
        if "G" in flags:
            marks.append("away")
        if "*" in flags:
            marks.append("admin")
        if "@" in flags:
            marks.append("room op")
        extra = f" [{', '.join(marks)}]" if marks else ""
        where = f"{room} -- " if is_channel(room) else "-- "
        return f"{where}{nick} ({user}@{host}){extra} {realname}".rstrip()
    if code == N.RPL_LIST and len(middle) >= 2:
        return f"-!- {middle[0]} ({middle[1]} here): {sanitize(last)}"
    if code == N.RPL_AWAY and middle:
        return f"-!- {middle[0]} is away: {sanitize(last)}"
    if code == N.RPL_WHOISUSER and len(middle) >= 3:
        return f"-!- {middle[0]} is {middle[1]}@{middle[2]} ({sanitize(last)})"
    if code == N.RPL_WHOISACCOUNT and len(middle) >= 2:
        return f"-!- {middle[0]} is logged in as {middle[1]}"
    if code in (N.RPL_LUSEROP, N.RPL_LUSERUNKNOWN, N.RPL_LUSERCHANNELS) and middle:
        return f"-!- {' '.join(middle)} {sanitize(last)}"
    if code.startswith(("00", "25", "26", "37", "90")) or not middle:
        return f"-!- {sanitize(last)}"
    return f"-!- {' '.join(middle)}: {sanitize(last)}"


_MEMORY_COMMANDS = {"CHATHISTORY": "history request", "SEARCH": "search"}


def _format_standard_reply(msg: Message) -> str:
    """IRCv3 standard replies: ``FAIL|WARN|NOTE <command> <code> [context...] :<text>``."""
    command = sanitize(msg.param(0))
    text = sanitize(msg.params[-1]) if len(msg.params) >= 3 else ""
    if msg.command == "FAIL" and command.upper() in _MEMORY_COMMANDS:
        # Which request failed matters here: the code and its context say it.
        what = " ".join(sanitize(p) for p in msg.params[1:-1])
        return f"-!- {_MEMORY_COMMANDS[command.upper()]} failed ({what}): {text}"
    if msg.command == "FAIL":
        return f"-!- {command} failed: {text}"
    if msg.command == "WARN":
        return f"-!- warning ({command}): {text}"
    return f"-!- {text}"


_SILENT = frozenset({"PING", "PONG", "CAP", "AUTHENTICATE", "BATCH"})


def format_event(
    msg: Message, me: str, *, tz: tzinfo | None = None, now: datetime | None = None
) -> str | None:
    """One display line for ``msg`` as seen by nickname ``me``, or ``None`` to show nothing."""
    cmd = msg.command
    if cmd in _SILENT:
        return None
    body = _format_body(msg, me)
    if body is None:
        return None
    return f"{event_time(msg, tz, now)} {body}"


def format_history(
    msg: Message,
    me: str,
    *,
    tz: tzinfo | None = None,
    now: datetime | None = None,
    label: str = "history",
) -> str | None:
    """Like :func:`format_event` for a message from history (or a search result): marked
    ``[history 09:14]`` (``[history 2024-05-01 09:14]`` when not today), so nobody takes
    it for something said just now."""
    if msg.command in _SILENT:
        return None
    body = _format_body(msg, me)
    if body is None:
        return None
    stamp = history_time(msg, tz, now)
    return f"[{label} {stamp}] {body}" if stamp else f"[{label}] {body}"


def _format_body(msg: Message, me: str) -> str | None:
    cmd = msg.command
    nick = sanitize(_nick_of(msg))
    own = bool(msg.source) and casefold(_nick_of(msg)) == casefold(me)
    if cmd in ("PRIVMSG", "NOTICE") and len(msg.params) >= 2:
        return _format_text(msg, me)
    if cmd == "JOIN":
        return f"{sanitize(msg.param(0))} -- {nick} joined"
    if cmd == "PART":
        return f"{sanitize(msg.param(0))} -- {nick} left{_reason(msg.param(1))}"
    if cmd == "QUIT":
        return f"-- {nick} quit{_reason(msg.param(0))}"
    if cmd == "NICK":
        new = sanitize(msg.param(0))
        return f"-- you are now known as {new}" if own else f"-- {nick} is now known as {new}"
    if cmd == "KICK":
        victim = sanitize(msg.param(1))
        who = "you were" if casefold(msg.param(1)) == casefold(me) else f"{victim} was"
        return f"{sanitize(msg.param(0))} -- {who} kicked by {nick}{_reason(msg.param(2))}"
    if cmd == "TOPIC":
        room = sanitize(msg.param(0))
        topic = msg.param(1)
        if not topic:
            return f"{room} -- {nick} cleared the topic"
        return f"{room} -- {nick} changed the topic to: {sanitize(topic)}"
    if cmd == "MODE":
        changes = " ".join(sanitize(p) for p in msg.params[1:])
        if is_channel(msg.param(0)):
            return f"{sanitize(msg.param(0))} -- {nick} sets mode {changes}"
        return f"-!- mode {sanitize(msg.param(0))} {changes}"
    if cmd == "INVITE":
        return f"-!- {nick} invites you to {sanitize(msg.param(1))}"
    if cmd == "KILL":
        return f"-!- you were disconnected by {nick}{_reason(msg.param(1))}"
    if cmd == "ERROR":
        return f"-!- ERROR: {sanitize(msg.param(0))}"
    if cmd == "AWAY":
        text = msg.param(0)
        return f"-- {nick} is away: {sanitize(text)}" if text else f"-- {nick} is back"
    if cmd == "WALLOPS":
        return f"-!- wallops from {nick}: {sanitize(msg.param(0))}"
    if cmd in ("FAIL", "WARN", "NOTE"):
        return _format_standard_reply(msg)
    if cmd.isdigit():
        return _numeric_text(msg)
    try:
        raw = serialize(Message(cmd, msg.params, msg.source))
    except ValueError:
        raw = " ".join((cmd, *msg.params))
    return f"-!- {sanitize(raw)}"


# --- front ends ------------------------------------------------------------------------------
class UserInterface(Protocol):
    """What the connection needs from a front end."""

    interactive: bool

    def show(self, line: str) -> None:
        """Print one complete line (never partial, never garbling the input line)."""

    def set_room(self, room: str | None) -> None:
        """The current room changed (the prompt shows it)."""

    async def ask(self, question: str, *, secret: bool = False) -> str | None:
        """A one-off answer from the user (hidden if ``secret``); ``None`` when impossible."""

    async def read_line(self) -> str | None:
        """The next typed line; ``None`` at end of input."""

    def close(self) -> None:
        """Stop reading input (the session is over)."""


class _Interrupted(Exception):
    """The main prompt was interrupted so that a question can be asked."""


def is_dumb_terminal() -> bool:
    """True where prompt_toolkit falls back to its echoing dumb prompt (TERM=dumb/unknown)."""
    from prompt_toolkit.utils import is_dumb_terminal as dumb

    return dumb()


async def _getpass(question: str) -> str | None:
    """``getpass`` (no echo, reads /dev/tty) without blocking the loop or the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def settle(answer: str | None) -> None:
        if not future.done():
            future.set_result(answer)

    def ask() -> None:
        try:
            answer: str | None = getpass.getpass(question)
        except (EOFError, KeyboardInterrupt, OSError):
            answer = None
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, answer)

    threading.Thread(target=ask, name="chaton-getpass", daemon=True).start()
    return await future


class TerminalUI:
    """prompt_toolkit front end for a terminal.

    Incoming lines are printed through ``patch_stdout`` (the caller keeps it active), so they
    appear above the line being typed. One prompt is on screen at a time: :meth:`ask`
    interrupts the main prompt, keeping what was typed, and the main prompt comes back after.
    """

    interactive = True

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter

        from chaton.client.commands import command_names

        completer = WordCompleter([f"/{name}" for name in command_names()], sentence=True)
        # erase_when_done: the typed line leaves the screen when sent, so a message appears
        # once -- as the server echoes it (echo-message), or as the session shows it.
        self._main: PromptSession[str] = PromptSession(completer=completer, erase_when_done=True)
        self._questions: PromptSession[str] = PromptSession()
        self._lock = asyncio.Lock()
        self._room: str | None = None
        self._saved = ""
        self._asking = 0
        self._interrupted = False
        self._closed = False

    def show(self, line: str) -> None:
        print(printable(line), flush=True)

    def set_room(self, room: str | None) -> None:
        self._room = room
        if self._main.app.is_running:
            self._main.app.invalidate()

    def _prompt(self) -> str:
        return f"{printable(self._room or 'chaton')}> "  # the room name is the server's

    async def ask(self, question: str, *, secret: bool = False) -> str | None:
        question = printable(question)  # questions quote nicknames the server sent
        self._asking += 1
        # The main prompt may be starting up right now (not yet running, so not yet
        # interruptible): keep interrupting until this question holds the terminal.
        nudger = asyncio.get_running_loop().create_task(self._interrupt_main())
        try:
            async with self._lock:
                nudger.cancel()
                if self._closed:
                    return None
                if secret and is_dumb_terminal():
                    # prompt_toolkit's dumb-terminal prompt echoes every key, even passwords.
                    return await _getpass(question)
                try:
                    return await self._questions.prompt_async(question, is_password=secret)
                except (EOFError, KeyboardInterrupt):
                    return None
        finally:
            nudger.cancel()
            self._asking -= 1

    async def _interrupt_main(self) -> None:
        while True:
            app = self._main.app
            if app.is_running and not self._interrupted:
                self._interrupted = True
                self._saved = self._main.default_buffer.text
                with contextlib.suppress(Exception):
                    app.exit(exception=_Interrupted())
            await asyncio.sleep(0.05)

    async def read_line(self) -> str | None:
        while not self._closed:
            if self._asking:  # let the question (queued on the lock) go first
                await asyncio.sleep(0.05)
                continue
            async with self._lock:
                self._interrupted = False
                saved, self._saved = self._saved, ""
                try:
                    line = await self._main.prompt_async(self._prompt, default=saved)
                except _Interrupted:
                    continue  # a question comes first; what was typed is in self._saved
                except (EOFError, KeyboardInterrupt):
                    return None
                self._saved = ""  # an interrupt that lost the race to Enter saved nothing
                return line
        return None

    def close(self) -> None:
        self._closed = True
        for session in (self._main, self._questions):
            if session.app.is_running:
                with contextlib.suppress(Exception):
                    session.app.exit(exception=EOFError())


class PipeUI:
    """Front end for scripts and tests: stdin lines in, one flushed stdout line per event.

    stdin is read by a daemon thread straight from the file descriptor (works for pipes,
    files and ttys alike). Not through ``sys.stdin``: a daemon thread blocked inside a
    buffered reader holds its lock, and the interpreter aborts at exit when it finds it held.
    Lines wait in a queue until the session wants them.
    """

    interactive = False
    #: A "line" longer than this is handed over in pieces (it is split into messages anyway).
    MAX_PENDING = 1 << 16

    def __init__(self, stdin_fd: int | None = None, stdout: IO[str] | None = None) -> None:
        self._fd = stdin_fd if stdin_fd is not None else sys.stdin.fileno()
        self._out = stdout if stdout is not None else sys.stdout
        self._queue: asyncio.Queue[str | None] | None = None
        self._closed = False

    def _start(self) -> asyncio.Queue[str | None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def deliver(item: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            pending = b""
            while True:
                try:
                    data = os.read(self._fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                if len(pending) > self.MAX_PENDING:
                    lines.append(pending)
                    pending = b""
                for raw in lines:
                    deliver(raw.decode("utf-8", "replace").rstrip("\r"))
            if pending:
                deliver(pending.decode("utf-8", "replace").rstrip("\r"))
            deliver(None)

        threading.Thread(target=pump, name="chaton-stdin", daemon=True).start()
        return queue

    def show(self, line: str) -> None:
        try:
            self._out.write(printable(line) + "\n")
            self._out.flush()
        except (OSError, ValueError):
            pass  # stdout closed by the reader (e.g. | head); keep the session consistent

    def set_room(self, room: str | None) -> None:
        pass

    async def ask(self, question: str, *, secret: bool = False) -> str | None:
        return None

    async def read_line(self) -> str | None:
        if self._closed:
            return None
        if self._queue is None:
            self._queue = self._start()
        return await self._queue.get()

    def close(self) -> None:
        self._closed = True


class InputPump:
    """A front end whose typed lines are read all the time, connected or not.

    Between two connections (while the client waits to reconnect) nobody else reads the
    keyboard, yet ``/quit`` must work there, and what is typed meanwhile must not be lost:
    :meth:`read_fresh` hands such lines to the waiting code, which :meth:`hold`\\ s them for
    the next session. Everything else is the wrapped front end's.
    """

    def __init__(self, inner: UserInterface) -> None:
        self.inner = inner
        self.interactive = inner.interactive
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._held: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._ended = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            line = await self.inner.read_line()
            self._queue.put_nowait(line)
            if line is None:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def hold(self, line: str) -> None:
        """Keep ``line`` for the next session's :meth:`read_line`."""
        self._held.append(line)

    async def read_fresh(self) -> str | None:
        """The next line typed (not a held one); ``None`` at end of input."""
        if self._ended:
            return None
        self.start()
        line = await self._queue.get()
        self._ended = line is None
        return line

    async def read_line(self) -> str | None:
        if self._held:
            return self._held.pop(0)
        return await self.read_fresh()

    def show(self, line: str) -> None:
        self.inner.show(line)

    def set_room(self, room: str | None) -> None:
        self.inner.set_room(room)

    async def ask(self, question: str, *, secret: bool = False) -> str | None:
        return await self.inner.ask(question, secret=secret)

    def close(self) -> None:
        self.inner.close()
