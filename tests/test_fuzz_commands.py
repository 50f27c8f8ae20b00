"""Every command, random parameters: no handler may raise, whatever a client sends.

A handler that raises closes its client with "Internal server error" and logs
``handler-error``; both are watched for. The server is real (TLS on loopback); one
registered user, one admin and fresh unregistered connections send the lines.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaton.server.commands import table

from conftest import IrcClient, RunningServer, add_account, logged_in

StartServer = Callable[..., RunningServer]
PASSWORD = "fuzzing admin password"

COMMANDS = sorted(table())
ADMIN_COMMANDS = sorted(name for name, cmd in table().items() if cmd.admin)
WORDS = ["*", "#general", "#r", "0", "-1", "302", "²", "٣", "LS", "REQ", "END", "LIST", "ADD",
         "DEL", "INFO", "PLAIN", "+", "DURATION", "1h", "30m", "user", "admin", "nick:x",
         "account:x", "10.0.0.0/8", "::1", "+o", "-o", "+n", "sasl", "AAAA", "=", "\u202e",
         "\x1b[2J", "\u0085"]

# Parameters as a hostile client writes them: any Unicode, empty, long, many.
_param = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=600),
)
_params = st.lists(_param, max_size=18)
#: Subcommands, so random parameters reach past the first branch of a handler.
SUBCOMMANDS = {"CAP": ["LS", "REQ", "END", "LIST", "ls"], "UBAN": ["ADD", "DEL", "LIST", "INFO"],
               "AUTHENTICATE": ["PLAIN", "*", "+", "EXTERNAL"], "MODE": ["#general", "fuzzer"]}


@st.composite
def _command(draw: st.DrawFn, names: list[str]) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(names))
    params = draw(_params)
    subs = SUBCOMMANDS.get(name)
    if subs and draw(st.booleans()):
        params = [draw(st.sampled_from(subs)), *params]
    return name, params


def _line(command: str, params: list[str]) -> str:
    """One IRC line from random parameters (framing characters cannot be sent as text)."""
    clean = [p.replace("\r", "").replace("\n", "").replace("\0", "") for p in params]
    middle = [p.replace(" ", "_").lstrip(":") for p in clean[:-1]]
    parts = [command, *(p for p in middle if p)]
    if clean:
        parts.append(":" + clean[-1])
    return " ".join(parts)


class _Crashes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(("handler-error", "sweep-error")):
            self.records.append(record)


@pytest.fixture
def crashes() -> Iterator[_Crashes]:
    handler = _Crashes()
    logger = logging.getLogger("chaton")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _no_crash(client: IrcClient, crashes: _Crashes, line: str) -> None:
    assert not crashes.records, (line, crashes.records[0].getMessage())
    errors = [m for m in client.log if m.command == "ERROR"]
    assert not any("Internal server error" in m.param(0) for m in errors), line


FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _fuzz_server(start_server: StartServer) -> RunningServer:
    return start_server(flood_rate=0, connect_rate_per_ip=0, max_clients_per_ip=0,
                        max_unregistered_per_ip=0,
                        login_failures_per_ip=0, login_failures_per_account=0)


def test_no_command_crashes_a_registered_client(
    start_server: StartServer, crashes: _Crashes
) -> None:
    server = _fuzz_server(start_server)
    state = {"client": server.client("fuzzer").join("#general")}

    @FUZZ
    @given(_command([c for c in COMMANDS if c != "QUIT"]))
    def check(drawn: tuple[str, list[str]]) -> None:
        command, params = drawn
        client = state["client"]
        line = _line(command, params)
        client.send(line)
        # Closed for a reason of its own (a ban, say) is fine: the crash check is below.
        with contextlib.suppress(AssertionError, OSError):
            client.sync()
        _no_crash(client, crashes, line)
        if client.closed or any(m.command == "ERROR" for m in client.log):
            client.close()
            state["client"] = server.client().join("#general")

    check()
    state["client"].sync()  # and the server still serves


def test_no_admin_command_crashes(start_server: StartServer, crashes: _Crashes) -> None:
    server = _fuzz_server(start_server)
    add_account(server.settings, "boss", PASSWORD, admin=True)
    state = {"admin": logged_in(server, "boss", "boss", PASSWORD).join("#general")}
    target = server.client("target").join("#general")

    @FUZZ
    @given(_command(ADMIN_COMMANDS))
    def check(drawn: tuple[str, list[str]]) -> None:
        command, params = drawn
        # FORCE would let a random UBAN ban loopback, and with it every later connection.
        params = [p for p in params if "force" not in p.lower()]
        admin = state["admin"]
        line = _line(command, params)
        admin.send(line)
        admin.sync()
        _no_crash(admin, crashes, line)

    check()
    target.sync()


def test_no_command_crashes_before_registration(
    start_server: StartServer, crashes: _Crashes
) -> None:
    server = _fuzz_server(start_server)

    @settings(FUZZ, max_examples=150)
    @given(lines=st.lists(_command(COMMANDS), min_size=1, max_size=4))
    def check(lines: list[tuple[str, list[str]]]) -> None:
        client = server.client()
        try:
            for command, params in lines:
                client.send(_line(command, params))
            client.sync()
        except (AssertionError, OSError):
            pass  # refused, or closed after QUIT or a wrong PASS: checked below
        finally:
            client.close()
        _no_crash(client, crashes, repr(lines))

    check()
    server.client("still-served").sync()
