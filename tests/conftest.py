"""Fixtures: a real chaton server on a loopback port with a trustme CA, and IRC test clients.

The server runs on its own event loop in a background thread, so tests read like
conversations over real TLS sockets: ``alice.send("JOIN #x")``, ``alice.expect("366")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from chaton import tls
from chaton.config import Settings
from chaton.protocol.message import LineBuffer, Message, parse
from chaton.server.app import ChatServer
from chaton.server.setup import attach_services

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent

#: Cheap argon2 parameters so tests that log in stay fast (production defaults are in config).
FAST_HASH = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}


@dataclass(frozen=True)
class CertFiles:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    certs_dir: Path


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A trustme CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    d = tmp_path_factory.mktemp("certs")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(d / "server-key.pem"))
    os.chmod(d / "server-key.pem", 0o600)
    return CertFiles(ca, d / "ca.pem", d / "server.pem", d / "server-key.pem", d)


class IrcClient:
    """A blocking IRC-over-TLS test client that keeps every line it receives."""

    def __init__(
        self,
        host: str,
        port: int,
        ca_file: Path,
        *,
        bind: str | None = None,
        server_hostname: str = "localhost",
        context: ssl.SSLContext | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        raw.settimeout(10)
        if bind:
            raw.bind((bind, 0))
        raw.connect((host, port))
        ctx = context or tls.client_context(ca_file)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        self.framer = LineBuffer(1 << 16)
        self.pending: list[Message] = []
        self.log: list[Message] = []
        self.closed = False
        self.nick: str | None = None
        self._token = 0

    # --- sending -------------------------------------------------------------------------
    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # --- receiving -----------------------------------------------------------------------
    def _read(self, deadline: float) -> bool:
        """Read once; False on timeout, sets ``closed`` on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ssl.SSLError, ConnectionError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        """Turn received bytes into messages (a WebSocket client unwraps frames first)."""
        for line in self.framer.feed(data):
            assert isinstance(line, bytes)
            msg = parse(line.decode("utf-8", "replace"))
            self.pending.append(msg)
            self.log.append(msg)

    def expect(
        self, command: str | tuple[str, ...], *params: str, timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """Wait for a line with ``command`` (or one of them) whose first params are ``params``."""
        commands = (command,) if isinstance(command, str) else command
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.pending):
                if msg.command in commands and tuple(msg.params[: len(params)]) == params and (
                    where is None or where(msg)
                ):
                    del self.pending[: i + 1]
                    return msg
            if not self._read(deadline):
                if self.closed:
                    raise AssertionError(
                        f"connection closed waiting for {command} {params}; got {self._tail()}"
                    )
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"timed out waiting for {command} {params}; got {self._tail()}"
                    )

    def _tail(self) -> list[str]:
        return [f"{m.command} {' '.join(m.params)}"[:100] for m in self.log[-8:]]

    def sync(self, timeout: float = 5.0) -> list[Message]:
        """PING the server; return (and consume) everything that arrived before the PONG."""
        self._token += 1
        token = f"sync{self._token}"
        self.send(f"PING {token}")
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                msg = self.pending.pop(0)
                if msg.command == "PONG" and msg.params[-1] == token:
                    return got
                got.append(msg)
            if not self._read(deadline):
                raise AssertionError(f"no PONG {token}; closed={self.closed}; got {self._tail()}")

    def wait_closed(self, timeout: float = 5.0) -> list[Message]:
        """Wait for the server to close the connection; return the lines before it."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._read(deadline) and not self.closed and time.monotonic() >= deadline:
                raise AssertionError(f"server did not close the connection; got {self._tail()}")
        got, self.pending = self.pending, []
        return got

    # --- conversation helpers ----------------------------------------------------------------
    def register(self, nick: str, *, caps: tuple[str, ...] = (), user: str = "u") -> IrcClient:
        if caps:
            self.send("CAP LS 302")
            self.send("CAP REQ :" + " ".join(caps))
        self.send(f"NICK {nick}")
        self.send(f"USER {user} 0 * :Test {nick}")
        if caps:
            self.expect("CAP", "*", "LS")
            self.expect("CAP", where=lambda m: m.param(1) == "ACK")
            self.send("CAP END")
        self.expect("001", nick)
        self.expect("376")
        self.nick = nick
        return self

    def join(self, room: str) -> IrcClient:
        self.send(f"JOIN {room}")
        self.expect("366", self.nick or "*", room)
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RunningServer:
    """A ChatServer on its own loop in a thread, reachable over real TLS."""

    def __init__(self, settings: Settings, certs: CertFiles, *, loop: str = "asyncio") -> None:
        self.settings = settings
        self.certs = certs
        self.ca_file = certs.ca_file
        self.host = settings.host.split(",")[0]
        if loop == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[IrcClient] = []
        self.server: ChatServer = self.run(self._start())
        self.stopped = False

    async def _start(self) -> ChatServer:
        ctx = tls.server_context(self.certs.cert_file, self.certs.key_file)
        server = ChatServer(self.settings, ssl_context=ctx)
        attach_services(server)
        bound = await server.start()
        self.port = bound[0][1]
        self.bound = bound
        return server

    def run(self, coro: Any, timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the server's loop (the only place its state may be touched)."""
        fut: Future[T] = Future()

        def runner() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return fut.result(10)

    def client(self, nick: str | None = None, **kw: Any) -> IrcClient:
        c = IrcClient(self.host, self.port, self.ca_file, **kw)
        self.clients.append(c)
        if nick:
            c.register(nick)
        return c

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for c in self.clients:
            c.close()
        try:
            self.run(self.server.close("Test over"))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def make_settings(tmp_path: Path, certs: CertFiles, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "certs_dir": certs.certs_dir,
        "data_dir": tmp_path / "data",
        **FAST_HASH,
    }
    values.update(overrides)
    return Settings().replace(**values)


@pytest.fixture
def start_server(tmp_path: Path, certs: CertFiles) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with setting overrides; all are stopped at the end of the test."""
    started: list[RunningServer] = []

    def start(*, loop: str = "asyncio", **overrides: Any) -> RunningServer:
        srv = RunningServer(make_settings(tmp_path, certs, **overrides), certs, loop=loop)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:
    """A chaton server with default settings (fast hashing) on 127.0.0.1."""
    return start_server()


def chaton_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "chaton", *args]


def run_chaton(
    *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``chaton`` CLI as a user would; never with a secret in argv."""
    return subprocess.run(
        chaton_command(*args), input=input, capture_output=True, text=True, timeout=timeout,
        cwd=REPO,
    )


def add_account(settings: Settings, name: str, password: str, *, admin: bool = False) -> None:
    """Register an account in the server's database file, as ``chaton account add`` would."""
    from chaton.passwords import Passwords
    from chaton.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with Store(settings.db_file) as store:
        store.add_account(name, Passwords(settings).hash(password), "admin" if admin else "user")


def sasl_payload(account: str, password: str) -> list[str]:
    """AUTHENTICATE lines for SASL PLAIN, split in 400-byte chunks as the spec says."""
    import base64

    data = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
    chunks = [data[i : i + 400] for i in range(0, len(data), 400)]
    if len(chunks[-1]) == 400:
        chunks.append("+")
    return [f"AUTHENTICATE {c}" for c in chunks]


def sasl_login(c: IrcClient, nick: str, account: str, password: str,
               caps: tuple[str, ...] = ()) -> Message:
    """Register ``c`` logging in with SASL PLAIN (asking for ``caps`` too); return the 903
    or 904 reply."""
    c.send("CAP LS 302")
    c.send("CAP REQ :" + " ".join(("sasl", *caps)))
    c.send(f"NICK {nick}")
    c.send("USER u 0 * :u")
    c.expect("CAP", where=lambda m: m.param(1) == "ACK")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for line in sasl_payload(account, password):
        c.send(line)
    return c.expect(("903", "904"))


def logged_in(server: RunningServer, nick: str, account: str, password: str,
              caps: tuple[str, ...] = (), **kw: Any) -> IrcClient:
    """A client registered as ``nick`` after a successful SASL PLAIN login to ``account``."""
    c = server.client(**kw)
    assert sasl_login(c, nick, account, password, caps).command == "903"
    c.send("CAP END")
    c.expect("001", nick)
    c.nick = nick
    return c
