"""The client's registration, login and chat logic, against a scripted server over loopback.

The test plays the server line by line (plain TCP: TLS is tested in test_client_tls.py) and
a fake front end answers the client's questions, so every branch of the password flow runs
without a terminal.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from chaton.client import session as session_mod
from chaton.client.connection import ClientExit
from chaton.client.session import Login, Reconnect, Session
from chaton.protocol.message import LineBuffer, Message, parse, serialize

ALL_CAPS = ":srv CAP * LS :server-time message-tags echo-message sasl=PLAIN multi-prefix"
REQ = "CAP REQ :server-time message-tags echo-message sasl"
ACK = ":srv CAP alice ACK :server-time message-tags echo-message sasl"


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop with a hard time limit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 20))

    return wrapper


class FakeUI:
    """Scripted answers in, shown lines out."""

    def __init__(self, interactive: bool = False, answers: tuple[str, ...] = ()) -> None:
        self.interactive = interactive
        self.answers = list(answers)
        self.questions: list[tuple[str, bool]] = []
        self.shown: list[str] = []
        self.room: str | None = None
        self.input: asyncio.Queue[str | None] = asyncio.Queue()

    def show(self, line: str) -> None:
        self.shown.append(line)

    def set_room(self, room: str | None) -> None:
        self.room = room

    async def ask(self, question: str, *, secret: bool = False) -> str | None:
        self.questions.append((question, secret))
        return self.answers.pop(0) if self.answers else None

    async def read_line(self) -> str | None:
        return await self.input.get()

    def close(self) -> None:
        pass

    def type(self, *lines: str | None) -> None:
        for line in lines:
            self.input.put_nowait(line)


class Peer:
    """The server end of the connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = LineBuffer(8192)
        self.pending: list[str] = []

    def send(self, *lines: str) -> None:
        for line in lines:
            self.writer.write(line.encode() + b"\r\n")

    async def next(self, timeout: float = 5.0) -> str:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise AssertionError("client closed the connection")
            for item in self.framer.feed(data):
                assert isinstance(item, bytes)
                self.pending.append(serialize(parse(item.decode())))
        return self.pending.pop(0)

    async def expect(self, *lines: str) -> None:
        for line in lines:
            got = await self.next()
            assert got == line

    async def silent(self, seconds: float = 0.3) -> None:
        """Assert that the client sends nothing for a while."""
        with pytest.raises(TimeoutError):
            line = await self.next(timeout=seconds)
            raise AssertionError(f"unexpected line {line!r}")

    async def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def connected(
    ui: FakeUI, **kwargs: Any
) -> AsyncIterator[tuple[Session, Peer, asyncio.Task[int | Reconnect]]]:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = Peer(*await accepted.get())
    kwargs.setdefault("nick", "alice")
    kwargs.setdefault("rooms", ("#general",))
    session = Session(ui=ui, writer=writer, **kwargs)
    task = asyncio.create_task(session.run(reader))
    try:
        yield session, peer, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        peer.writer.close()
        server.close()


async def register(peer: Peer, caps: str = ALL_CAPS, ack: str = ACK) -> None:
    await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
    peer.send(caps)
    await peer.expect(REQ)
    peer.send(ack)
    await peer.expect("CAP END")


async def welcome(peer: Peer, nick: str = "alice") -> None:
    peer.send(f":srv 001 {nick} :Welcome", f":srv 376 {nick} :End of MOTD")
    await peer.expect("JOIN #general")
    peer.send(f":{nick}!u@h JOIN #general")


async def exit_of(task: asyncio.Task[int | Reconnect]) -> ClientExit:
    with pytest.raises(ClientExit) as info:
        await asyncio.wait_for(task, 5)
    return info.value


# --- plain registration and chat --------------------------------------------------------------
@run_async
async def test_registration_chat_and_quit() -> None:
    ui = FakeUI()
    async with connected(ui) as (session, peer, task):
        await register(peer)
        ui.type("hello there")  # typed early: must wait for the room
        peer.send(":srv 001 alice :Welcome to chaton")
        await peer.expect("JOIN #general")
        await peer.silent()
        peer.send(":alice!u@h JOIN #general")
        await peer.expect("PRIVMSG #general :hello there")
        assert ui.room == "#general"
        peer.send("@time=2024-05-01T10:20:00.000Z :alice!u@h PRIVMSG #general :hello there")
        peer.send("PING :tok 1")
        await peer.expect("PONG :tok 1")
        assert any(line.endswith(" #general <alice> hello there") for line in ui.shown)
        assert "-!- Welcome to chaton" in ui.shown[0]
        ui.type(None)  # end of input
        await peer.expect("QUIT")
        await peer.close()
        assert await asyncio.wait_for(task, 5) == 0
        assert session.registered


@run_async
async def test_multi_line_cap_ls_and_no_wanted_caps() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv CAP * LS * :server-time multi-prefix", ":srv CAP * LS :sasl")
        await peer.expect("CAP REQ :server-time sasl")
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv CAP * LS :multi-prefix away-notify")
        await peer.expect("CAP END")


@run_async
async def test_sasl_without_plain_is_not_requested() -> None:
    async with connected(FakeUI()) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv CAP * LS :sasl=EXTERNAL echo-message")
        await peer.expect("CAP REQ echo-message")


@run_async
async def test_server_without_cap_support() -> None:
    async with connected(FakeUI()) as (session, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv 421 alice CAP :Unknown command")
        await peer.expect("CAP END")
        await welcome(peer)
        await asyncio.sleep(0.05)
        assert session.rooms == ["#general"]


@run_async
async def test_without_echo_message_own_lines_are_shown_locally() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await register(peer, ack=":srv CAP alice ACK :server-time message-tags sasl")
        await welcome(peer)
        ui.type("local echo", "/msg bob psst")
        await peer.expect("PRIVMSG #general :local echo", "PRIVMSG bob psst")
        assert any(line.endswith(" #general <alice> local echo") for line in ui.shown)
        assert any(line.endswith(" -> *bob* psst") for line in ui.shown)


@run_async
async def test_local_feedback_and_room_tracking() -> None:
    ui = FakeUI()
    async with connected(ui) as (session, peer, _task):
        await register(peer)
        await welcome(peer)
        ui.type("/frob", "/join #dev")
        await peer.expect("JOIN #dev")
        assert "-!- unknown command /frob" in ui.shown[-1]
        peer.send(":alice!u@h JOIN #dev")
        await asyncio.sleep(0.05)
        assert session.room == "#dev" and ui.room == "#dev"
        peer.send(":op!o@h KICK #dev alice :bye")
        await asyncio.sleep(0.05)
        assert session.room == "#general"
        peer.send(":alice!u@h PART #general")
        await asyncio.sleep(0.05)
        assert session.room is None
        ui.type("anyone?")
        await asyncio.sleep(0.05)
        assert "not in a room" in ui.shown[-1]
        peer.send(":alice!u@h NICK alicia")
        await asyncio.sleep(0.05)
        assert session.nick == "alicia"


# --- logging in with a known password ---------------------------------------------------------
@run_async
async def test_password_stdin_logs_in_before_cap_end() -> None:
    ui = FakeUI()
    async with connected(ui, login=Login("alice", "s3cret")) as (session, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS)
        await peer.expect(REQ)
        peer.send(ACK)
        await peer.expect("AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.expect("AUTHENTICATE AGFsaWNlAHMzY3JldA==")
        peer.send(
            ":srv 900 alice alice!u@h alice :You are now logged in as alice",
            ":srv 903 alice :SASL authentication successful",
        )
        await peer.expect("CAP END")
        assert session.logged_in
        assert not any("s3cret" in line for line in ui.shown)


@run_async
async def test_login_as_another_account_and_nick_refused_during_login() -> None:
    ui = FakeUI()
    kwargs: dict[str, Any] = {"login": Login("ops", "pw"), "account": "ops"}
    async with connected(ui, **kwargs) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS)
        await peer.expect(REQ)
        # This server checks the nick at once: refused before the login has happened.
        peer.send(
            ":srv FAIL NICK ACCOUNT_REQUIRED alice :Nickname is registered",
            ":srv 433 * alice :Nickname is registered",
            ACK,
        )
        await peer.expect("AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.expect("AUTHENTICATE AG9wcwBwdw==")
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("NICK alice", "CAP END")
        assert ui.questions == []


@run_async
async def test_long_password_is_sent_in_400_byte_chunks() -> None:
    password = "p" * 600
    async with connected(FakeUI(), login=Login("alice", password)) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS, ACK)
        await peer.expect(REQ, "AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        chunks = [await peer.next() for _ in range(3)]
        assert [len(c) - len("AUTHENTICATE ") for c in chunks[:2]] == [400, 400]
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("CAP END")


@run_async
async def test_wrong_password_without_terminal_exits_4() -> None:
    async with connected(FakeUI(), login=Login("alice", "nope")) as (_, peer, task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS, ACK)
        await peer.expect(REQ, "AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.next()
        peer.send(":srv 904 alice :SASL authentication failed")
        exc = await exit_of(task)
        assert exc.code == 4
        assert "login as alice failed" in exc.message


@run_async
async def test_wrong_password_at_a_terminal_asks_again() -> None:
    ui = FakeUI(interactive=True, answers=("right",))
    async with connected(ui, login=Login("alice", "wrong")) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS, ACK)
        await peer.expect(REQ, "AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.next()
        peer.send(":srv 904 alice :SASL authentication failed")
        await peer.expect("AUTHENTICATE PLAIN")
        assert ui.questions and ui.questions[0][1] is True
        peer.send("AUTHENTICATE +")
        await peer.expect("AUTHENTICATE AGFsaWNlAHJpZ2h0")
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("CAP END")


@run_async
async def test_password_but_no_sasl_exits_4() -> None:
    async with connected(FakeUI(), login=Login("alice", "pw")) as (_, peer, task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv CAP * LS :server-time")
        await peer.expect("CAP REQ server-time")
        peer.send(":srv CAP alice ACK server-time")
        exc = await exit_of(task)
        assert exc.code == 4 and "SASL" in exc.message


# --- a registered nickname, discovered on the way -----------------------------------------------
REFUSED = (
    ":srv FAIL NICK ACCOUNT_REQUIRED alice :Nickname alice is registered; log in first",
    ":srv 433 * alice :Nickname is registered",
)


@run_async
async def test_registered_nick_at_a_terminal_logs_in_on_the_same_connection() -> None:
    ui = FakeUI(interactive=True, answers=("s3cret",))
    async with connected(ui) as (session, peer, _task):
        await register(peer)  # CAP END already sent: no password was known
        peer.send(*REFUSED)
        await peer.expect("AUTHENTICATE PLAIN")
        question, secret = ui.questions[0]
        assert secret and "Password for account alice" in question
        peer.send("AUTHENTICATE +")
        await peer.expect("AUTHENTICATE AGFsaWNlAHMzY3JldA==")
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("NICK alice")
        await welcome(peer)  # no second CAP END on the way
        assert session.logged_in
        assert not any(line.endswith("alice: Nickname is registered") for line in ui.shown)


@run_async
async def test_registered_nick_before_ack_holds_cap_end_until_logged_in() -> None:
    ui = FakeUI(interactive=True, answers=("s3cret",))
    async with connected(ui) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS)
        await peer.expect(REQ)
        peer.send(*REFUSED, ACK)
        await peer.expect("AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.next()
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("NICK alice", "CAP END")


@run_async
async def test_server_refusing_late_sasl_makes_the_client_reconnect() -> None:
    ui = FakeUI(interactive=True, answers=("s3cret",))
    async with connected(ui) as (_, peer, task):
        await register(peer)
        peer.send(*REFUSED)
        await peer.expect("AUTHENTICATE PLAIN")
        peer.send(":srv 421 * AUTHENTICATE :You have already completed registration")
        await peer.expect("QUIT :Reconnecting to log in")
        result = await asyncio.wait_for(task, 5)
        assert isinstance(result, Reconnect)
        assert result.nick == "alice" and result.rooms == ("#general",)
        assert result.login == Login("alice", "s3cret")


@run_async
async def test_empty_password_answer_asks_for_another_nick() -> None:
    ui = FakeUI(interactive=True, answers=("", "alice2"))
    async with connected(ui) as (session, peer, _task):
        await register(peer)
        peer.send(*REFUSED)
        await peer.expect("NICK alice2")
        assert "Choose another nickname" in ui.questions[1][0]
        assert ui.questions[1][1] is False
        await welcome(peer, "alice2")
        await asyncio.sleep(0.05)
        assert session.nick == "alice2"


@run_async
async def test_registered_nick_without_terminal_exits_4_with_a_hint() -> None:
    async with connected(FakeUI()) as (_, peer, task):
        await register(peer)
        peer.send(*REFUSED)
        exc = await exit_of(task)
        assert exc.code == 4
        assert "--password-stdin" in exc.message and "--nick" in exc.message


@run_async
async def test_login_that_does_not_unlock_the_nick_asks_for_another() -> None:
    ui = FakeUI(interactive=True, answers=("s3cret", "alice_"))
    async with connected(ui) as (_, peer, _task):
        await register(peer)
        peer.send(*REFUSED)
        await peer.expect("AUTHENTICATE PLAIN")
        peer.send("AUTHENTICATE +")
        await peer.next()
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("NICK alice")
        peer.send(*REFUSED)  # still not ours
        await peer.expect("NICK alice_")


@run_async
async def test_nick_change_to_a_registered_nick_after_registration() -> None:
    ui = FakeUI(interactive=True, answers=("pw",))
    async with connected(ui) as (_, peer, _task):
        await register(peer)
        await welcome(peer)
        ui.type("/nick bob")
        await peer.expect("NICK bob")
        peer.send(
            ":srv FAIL NICK ACCOUNT_REQUIRED bob :Nickname bob is registered",
            ":srv 433 alice bob :Nickname is registered",
        )
        await peer.expect("AUTHENTICATE PLAIN")
        assert "account bob" in ui.questions[0][0]
        peer.send("AUTHENTICATE +")
        await peer.expect("AUTHENTICATE AGJvYgBwdw==")
        peer.send(":srv 903 alice :SASL authentication successful")
        await peer.expect("NICK bob")


@run_async
async def test_nick_in_use_at_a_terminal_asks_for_another() -> None:
    ui = FakeUI(interactive=True, answers=("bad nick", "alice2"))
    async with connected(ui) as (_, peer, _task):
        await register(peer)
        peer.send(":srv 433 * alice :Nickname is already in use")
        await peer.expect("NICK alice2")
        assert "already in use" in ui.questions[0][0]
        assert "letters, digits" in ui.questions[1][0]


@run_async
async def test_nick_in_use_without_terminal_exits_4() -> None:
    async with connected(FakeUI()) as (_, peer, task):
        await register(peer)
        peer.send(":srv 433 * alice :Nickname is already in use")
        exc = await exit_of(task)
        assert exc.code == 4 and "already in use" in exc.message and "--nick" in exc.message


# --- admin and endings ------------------------------------------------------------------------
@run_async
async def test_oper_asks_for_a_hidden_password() -> None:
    ui = FakeUI(interactive=True, answers=("hunter2",))
    async with connected(ui) as (_, peer, _task):
        await register(peer)
        await welcome(peer)
        ui.type("/oper boss")
        await peer.expect("OPER boss hunter2")
        assert ui.questions == [("Operator password for boss: ", True)]


@run_async
async def test_oper_without_terminal_sends_nothing() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await register(peer)
        await welcome(peer)
        ui.type("/oper boss", "after")
        await peer.expect("PRIVMSG #general after")
        assert any("needs a terminal" in line for line in ui.shown)


@run_async
async def test_error_from_the_server_ends_with_1() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        peer.send("ERROR :Closing link (Killed by admin: flooding)")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1
        assert "Killed by admin: flooding" in exc.message
        assert any("-!- ERROR: Closing link" in line for line in ui.shown)


@run_async
async def test_banned_ends_with_1_and_says_why() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(":srv 465 * :You are banned from this server (1h left): spam")
        peer.send("ERROR :Banned")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and "banned" in exc.message


# --- hostile server text on the way out ------------------------------------------------------
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u202eevil"
SHOWN = "^[]0;pwned^G^[[2J<U+009B>2J<U+202E>evil"


def assert_inert(*texts: str) -> None:
    """No ESC, BEL, other C0/C1 control or bidi override in what the user would see."""
    for text in texts:
        bad = [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e"]
        assert not bad, ascii(text)


@run_async
async def test_hostile_error_reason_is_shown_escaped_in_the_exit_message() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        peer.send(f"ERROR :Closing link (Killed by admin: {HOSTILE})")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1
        assert exc.message == f"disconnected by the server: Closing link (Killed by admin: {SHOWN})"
        assert_inert(exc.message, *ui.shown)


@run_async
async def test_hostile_ban_reason_is_shown_escaped_in_the_exit_message() -> None:
    async with connected(FakeUI()) as (_, peer, task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(f":srv 465 * :You are banned: {HOSTILE}")
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and SHOWN in exc.message
        assert_inert(exc.message)


@run_async
async def test_hostile_nickname_reply_without_terminal_exits_escaped() -> None:
    async with connected(FakeUI()) as (_, peer, task):
        await register(peer)
        peer.send(f":srv 432 * {HOSTILE} :Erroneous {HOSTILE}")
        exc = await exit_of(task)
        assert exc.code == 4 and SHOWN in exc.message
        assert_inert(exc.message)


@run_async
async def test_hostile_registered_nickname_is_escaped_in_questions_and_hints() -> None:
    refused = f":srv FAIL NICK ACCOUNT_REQUIRED {HOSTILE} :registered"
    ui = FakeUI(interactive=True, answers=("",))  # no password, then no other nickname
    async with connected(ui) as (_, peer, task):
        await register(peer)
        peer.send(refused)
        exc = await exit_of(task)
        assert exc.code == 4
        assert len(ui.questions) == 2 and all(SHOWN in q for q, _ in ui.questions)
        assert_inert(exc.message, *(q for q, _ in ui.questions), *ui.shown)
    async with connected(FakeUI()) as (_, peer, task):
        await register(peer)
        peer.send(refused)
        exc = await exit_of(task)
        assert exc.code == 4 and f"nickname {SHOWN} is registered" in exc.message
        assert_inert(exc.message)


@run_async
async def test_quit_waits_a_bounded_time_for_the_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "QUIT_WAIT", 0.2)
    ui = FakeUI()
    async with connected(ui) as (_, peer, task):
        await register(peer)
        await welcome(peer)
        ui.type("/quit bye now")
        await peer.expect("QUIT :bye now")
        assert await asyncio.wait_for(task, 5) == 0  # the server never closed


@run_async
async def test_connection_lost_ends_with_1() -> None:
    async with connected(FakeUI()) as (_, peer, task):
        await register(peer)
        await peer.close()
        exc = await exit_of(task)
        assert exc.code == 1 and "closed the connection" in exc.message


def test_login_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(Login("alice", "s3cret"))
    assert "s3cret" not in repr(Reconnect("alice", Login("alice", "s3cret"), ()))


def test_messages_used_here_are_valid() -> None:
    assert serialize(Message("USER", ("alice", "0", "*", "alice"))) == "USER alice 0 * alice"
