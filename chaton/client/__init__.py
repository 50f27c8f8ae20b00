"""The chaton terminal client (``chaton connect``): TLS-only IRC for people and scripts.

:func:`add_arguments` and :func:`run` are what ``chaton connect`` wires up; ``python -m
chaton.client`` runs the same thing on its own. At a terminal the client is interactive
(prompt_toolkit, hidden password questions); with stdin or stdout redirected it reads lines
from stdin and prints one line per event, for scripts and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import traceback
from pathlib import Path

from chaton.client.connection import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ClientExit,
    Endpoint,
    open_tls,
    parse_endpoint,
)
from chaton.client.history import Memory
from chaton.client.reconnect import Backoff, status_line
from chaton.client.safe_text import printable_lines
from chaton.client.session import NICK_MAX, Login, Reconnect, Session, nick_rules
from chaton.client.ui import InputPump, PipeUI, TerminalUI, UserInterface, local_line
from chaton.protocol.names import valid_nick

__all__ = ["DEFAULT_CAFILE", "add_arguments", "main", "run"]

#: Used as ``--cafile`` when it exists (where ``chaton serve`` puts its CA).
DEFAULT_CAFILE = Path("certs/ca.pem")
#: Reconnects allowed to log in during CAP negotiation (see chaton.client.session).
MAX_RECONNECTS = 2

_DESCRIPTION = """\
Connect to a chaton server over TLS and chat. At a terminal you get a prompt showing the
current room; type /help there for the commands. With stdin or stdout redirected, every line
read from stdin is sent as if typed and every event is printed as one line (for scripts).
The server's certificate is always verified, against a CA (--cafile, by default
certs/ca.pem if present, else the system's trusted CAs) or a pinned --fingerprint.
"""

_EPILOG = """\
examples:
  chaton connect                                  127.0.0.1:5555, asks for a nickname
  chaton connect chat.example.org:6697 --nick alice --cafile ca.pem
  chaton connect [::1]:5555 --join '#dev,#ops'
  chaton connect 10.0.0.5 --server-name chaton.local     certificate is for chaton.local
  chaton connect --fingerprint 3A:91:...:0F               pin the server certificate
  printf 'secret\\nhello\\n' | chaton connect --nick alice --password-stdin
  echo '/msg bob deploy done' | chaton connect --nick ci-bot --no-reconnect

reconnecting: when the connection is lost (server restart, network trouble, no answer to
PING) the client connects again by itself, waiting 1 s, 2 s, 4 s ... up to 60 s (+/- 25 %)
between tries; it logs in again with the password it was given (kept in memory only),
rejoins its rooms and shows what was said meanwhile. It does not come back after /quit, a
KILL or ban, or a failed login. /quit or Ctrl-C while it waits ends it.

passwords are never accepted on the command line: registered nicknames are asked for their
password at the terminal (hidden), or read from the first stdin line with --password-stdin.

exit status: 0 after /quit or end of input, 1 connection failed (the first time), lost with
--no-reconnect, or ended by the server for good (KILL, banned), 2 bad arguments, 3 TLS
certificate check failed, 4 login failed or nickname unavailable without a terminal.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``connect`` options to ``parser`` (description and epilog included)."""
    parser.description = _DESCRIPTION
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "server",
        nargs="?",
        default="127.0.0.1:5555",
        metavar="HOST[:PORT]",
        help="server address (default 127.0.0.1:5555; IPv6 as [::1]:5555 or ::1)",
    )
    parser.add_argument(
        "--cafile",
        type=Path,
        metavar="PEM",
        help="CA certificate(s) to trust (default: certs/ca.pem if it exists, "
        "else the system store)",
    )
    parser.add_argument(
        "--fingerprint",
        metavar="SHA256",
        help="trust exactly the server certificate with this SHA-256 fingerprint "
        "(hex, colons optional) instead of a CA and host name",
    )
    parser.add_argument(
        "--server-name",
        metavar="NAME",
        help="name the certificate must hold (and SNI), when it differs from HOST",
    )
    parser.add_argument("--nick", help="nickname (asked for at a terminal if omitted)")
    parser.add_argument(
        "--join",
        default="#general",
        metavar="ROOM",
        help="room(s) to join, comma-separated (default #general; '' for none)",
    )
    parser.add_argument(
        "--account",
        metavar="NAME",
        help="account to log in to (default: the nickname)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the account password from the first line of stdin and log in (SASL)",
    )
    parser.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit (status 1) when the connection is lost instead of connecting again "
        "(for scripts)",
    )


def _rooms(text: str) -> tuple[str, ...]:
    rooms = []
    for name in text.split(","):
        name = name.strip()
        if name:
            rooms.append(name if name.startswith("#") else "#" + name)
    return tuple(rooms)


def _read_password(tty: bool) -> str:
    """The first stdin line, read byte by byte from the descriptor so that nothing after
    it is swallowed by a buffer (the rest of stdin is read from the descriptor as well)."""
    if tty:
        return getpass.getpass("Password: ")
    fd = sys.stdin.fileno()
    line = bytearray()
    while len(line) < 8192:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        line += byte
    return line.decode("utf-8", "replace").rstrip("\r")


async def _ask_nick(ui: UserInterface) -> str:
    question = "Choose a nickname: "
    while True:
        answer = await ui.ask(question)
        if answer is None:
            raise ClientExit(EXIT_OK)
        nick = answer.strip()
        if valid_nick(nick, NICK_MAX):
            return nick
        question = f"A nickname has {nick_rules()}. Choose a nickname: "


async def _connect_and_chat(
    args: argparse.Namespace,
    endpoint: Endpoint,
    cafile: Path | None,
    ui: InputPump,
    password: str | None,
) -> int:
    """Connect, chat, and after a lost connection connect again (see
    :mod:`chaton.client.reconnect` for when, and :class:`~chaton.client.history.Memory` for
    what is carried over besides the nick, the login and the rooms)."""
    nick: str = args.nick or await _ask_nick(ui)
    login = Login(args.account or nick, password) if password is not None else None
    rooms = _rooms(args.join)
    memory = Memory()
    backoff = Backoff()
    logins = 0
    resumed = False
    why = ""
    while True:
        if why and not await _wait_to_reconnect(ui, backoff, why):
            return EXIT_OK
        why = ""
        try:
            reader, writer = await open_tls(endpoint, cafile=cafile, fingerprint=args.fingerprint)
        except ClientExit as exc:
            if not (resumed and exc.transient):
                raise
            why = f"cannot reconnect: {exc.message}"
            continue
        obj = writer.get_extra_info("ssl_object")
        how = f"pinned {args.fingerprint[:11]}..." if args.fingerprint else "verified"
        version = obj.version() if obj is not None else "TLS"
        ui.show(local_line(f"connected to {endpoint} ({version}, certificate {how})"))
        session = Session(
            ui=ui,
            writer=writer,
            nick=nick,
            rooms=rooms,
            login=login,
            account=args.account,
            memory=memory,
            resumed=resumed,
            reconnect=not args.no_reconnect,
        )
        result = await session.run(reader)
        if isinstance(result, int):
            return result
        if isinstance(result, Reconnect):  # to log in during CAP negotiation: at once
            logins += 1
            if logins > MAX_RECONNECTS:
                raise ClientExit(EXIT_ERROR, "could not log in after reconnecting; giving up")
            nick, login, rooms = result.nick, result.login, result.rooms
            continue
        if result.stable:
            backoff.reset()
        nick, login, rooms = result.nick, result.login, result.rooms
        resumed = True
        why = f"connection lost: {result.reason}"


async def _wait_to_reconnect(ui: InputPump, backoff: Backoff, why: str) -> bool:
    """Say why and how long, then wait; False if the user quit meanwhile. Lines typed while
    waiting are kept for the next session."""
    delay = backoff.next()
    ui.set_room(None)
    ui.show(local_line(status_line(why, delay, backoff.attempt)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while (remaining := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(remaining):
                line = await ui.read_fresh()
        except TimeoutError:
            break
        if line is None:
            return False
        words = line.split(None, 1)
        if words and words[0].lower() in ("/quit", "/exit"):
            return False
        if line.strip():
            ui.hold(line)
            ui.show(local_line("not connected: that is sent once reconnected (/quit to leave)"))
    return True


async def _amain(
    args: argparse.Namespace,
    endpoint: Endpoint,
    cafile: Path | None,
    interactive: bool,
    password: str | None,
) -> int:
    front: UserInterface = TerminalUI() if interactive else PipeUI()
    ui = InputPump(front)
    try:
        return await _connect_and_chat(args, endpoint, cafile, ui, password)
    finally:
        await ui.stop()
        ui.close()


def run(args: argparse.Namespace) -> int:
    """Run the client with parsed ``args``; return the process exit status.

    Everything it writes to stderr passes through
    :func:`~chaton.client.safe_text.printable_lines`: exit messages quote the server (an
    ``ERROR``/``KILL`` reason, a nickname, a certificate name), and so may a bug's traceback.
    """
    with _stdout_tolerant():
        try:
            return _run(args)
        except ClientExit as exc:
            if exc.message:
                _to_stderr(f"chaton: {exc.message}")
            return exc.code
        except KeyboardInterrupt:
            _to_stderr("")
            return 130
        except Exception as exc:  # a bug: report it like Python would, but never raw
            _to_stderr("".join(traceback.format_exception(exc)).rstrip("\n"))
            _to_stderr(f"chaton: internal error: {exc!r}")
            return EXIT_ERROR


def _to_stderr(text: str) -> None:
    """Write ``text`` and a line break to stderr, controls made visible; never raise."""
    try:
        sys.stderr.write(printable_lines(text) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr closed: nothing more can be said


class _stdout_tolerant:
    """Never die on characters the terminal's encoding lacks (replace them instead)."""

    def __enter__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="replace")

    def __exit__(self, *exc: object) -> None:
        return None


def _run(args: argparse.Namespace) -> int:
    try:
        endpoint = parse_endpoint(args.server, args.server_name)
    except ValueError as exc:
        raise ClientExit(EXIT_USAGE, str(exc)) from None
    cafile: Path | None = args.cafile
    if cafile is None and DEFAULT_CAFILE.is_file():
        cafile = DEFAULT_CAFILE
    if cafile is not None and not cafile.is_file():
        raise ClientExit(EXIT_USAGE, f"--cafile: {cafile} does not exist")
    if args.nick is not None and not valid_nick(args.nick, NICK_MAX):
        raise ClientExit(EXIT_USAGE, f"--nick: a nickname has {nick_rules()}")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive and not args.nick:
        raise ClientExit(EXIT_USAGE, "--nick is required when stdin or stdout is not a terminal")
    password: str | None = None
    if args.password_stdin:
        password = _read_password(sys.stdin.isatty())
        if not password:
            raise ClientExit(EXIT_USAGE, "--password-stdin: the first line of stdin was empty")
    if not interactive:
        return asyncio.run(_amain(args, endpoint, cafile, False, password))
    from prompt_toolkit.patch_stdout import patch_stdout

    with patch_stdout():
        return asyncio.run(_amain(args, endpoint, cafile, True, password))


def main(argv: list[str] | None = None) -> int:
    """``python -m chaton.client``: parse ``argv`` and run."""
    parser = argparse.ArgumentParser(prog="chaton connect")
    add_arguments(parser)
    return run(parser.parse_args(argv))
