"""Crash consistency: a real server, IRC admin actions and CLI commands at once, ``kill -9``.

Each cycle starts ``chaton serve`` on the same data dir, checks that the database passes
``integrity_check`` and holds every write that was acknowledged before (an admin's NOTICE or
381 over IRC, or the CLI's exit 0), then runs an IRC admin (UBAN ADD/DEL, OPER, KICK) and the
admin CLI (account add/passwd/role/del, ban add/del/list, audit) side by side and kills the
server with SIGKILL at a random moment. ``tests/test_crash_consistency.py`` runs a short
version; the soak is ``python -m bench.crash --cycles 300``.

Invariants of the model:
- Every key (ban target, account name) is touched by one actor only, so the last
  acknowledged operation on it decides its state, except when an operation on it was sent
  and never answered (the kill came first): then either state is allowed until the next
  acknowledged operation on that key.
- Audit lines are counted per (action, target): the database must hold at least as many as
  were acknowledged.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaton import tls
from chaton.config import Settings
from chaton.passwords import Passwords
from chaton.protocol.message import LineBuffer, Message, parse
from chaton.store import Store

__all__ = ["CrashModel", "Irc", "ServeProcess", "main", "run_cycles"]

FAST_HASH = "argon2_time_cost = 1\nargon2_memory_kib = 8192\nargon2_parallelism = 1\n"
ADMIN, ADMIN_PASSWORD = "boss", "boss-password-123"
_LISTENING = re.compile(r"listening on (\S+) port (\d+)")


class ServeProcess:
    """``python -m chaton serve`` in a data dir, as an admin would run it."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.certs_dir = workdir / "certs"
        self.config = workdir / "chaton.toml"
        self.config.write_text(
            f'host = "127.0.0.1"\nport = 0\ncerts_dir = "{self.certs_dir}"\n'
            f'data_dir = "{self.data_dir}"\ndb_poll_interval = 0.2\n'
            f"connect_rate_per_ip = 0\nlogin_failures_per_ip = 0\n{FAST_HASH}{extra}"
        )
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: list[str] = []
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    @property
    def ca_file(self) -> Path:
        return self.certs_dir / "ca.pem"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        return [sys.executable, "-m", "chaton", "serve", "--config", str(self.config),
                "--event-loop", "asyncio"]

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start and wait for the 'listening on' log line (the port is picked by the OS)."""
        self.log = []
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=self.env,
        )
        ready = threading.Event()
        threading.Thread(target=self._read_log, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout) or not self.port:
            self.kill9()
            raise RuntimeError("chaton serve did not start:\n" + "\n".join(self.log[-20:]))
        return self

    def _read_log(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip("\n"))
            found = _LISTENING.search(line)
            if found and not ready.is_set():
                self.port = int(found.group(2))
                ready.set()
        ready.set()  # exited before listening

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def cli(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``chaton ARGS --config FILE`` next to the server."""
        return subprocess.run(
            [sys.executable, "-m", "chaton", *args, "--config", str(self.config)],
            input=input, capture_output=True, text=True, env=self.env, timeout=60,
        )

    def deleted_db_files(self) -> list[str]:
        """Database files the server holds open that were unlinked under it (must be none)."""
        fd_dir = Path(f"/proc/{self.pid}/fd")
        out = []
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if "chaton.db" in target and target.endswith("(deleted)"):
                out.append(target)
        return out


class Irc:
    """A small blocking IRC-over-TLS client that verifies the server like any client."""

    def __init__(self, port: int, ca_file: Path, timeout: float = 10.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls.client_context(ca_file).wrap_socket(raw, server_hostname="localhost")
        self.framer = LineBuffer(1 << 16)
        self.pending: list[Message] = []
        self.closed = False

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, pred: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """The first line matching ``pred``; raises ``ConnectionError`` if the server goes."""
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.pending):
                if pred(msg):
                    del self.pending[: i + 1]
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching line; last: {self.pending[-5:]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                raise ConnectionError("server closed the connection")
            for line in self.framer.feed(data):
                assert isinstance(line, bytes)
                self.pending.append(parse(line.decode("utf-8", "replace")))

    def register(self, nick: str, account: str | None = None, password: str = "") -> None:
        if account:
            self.send("CAP REQ :sasl")
        self.send(f"NICK {nick}")
        self.send(f"USER u 0 * :{nick}")
        if account:
            self.send("AUTHENTICATE PLAIN")
            self.expect(lambda m: m.command == "AUTHENTICATE")
            blob = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
            self.send(f"AUTHENTICATE {blob}")
            self.expect(lambda m: m.command in ("903", "904"))
            self.send("CAP END")
        self.expect(lambda m: m.command == "001")
        self.expect(lambda m: m.command in ("376", "422"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class CrashModel:
    """What the database must hold: see the module invariants."""

    bans: dict[str, bool] = field(default_factory=dict)  # "kind value" -> present
    accounts: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # -> (role, pw)
    uncertain: set[str] = field(default_factory=set)
    audit: Counter[tuple[str, str]] = field(default_factory=Counter)
    acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, key: str, audit: tuple[str, str] | None) -> None:
        with self.lock:
            self.uncertain.discard(key)
            self.acked += 1
            if audit is not None:
                self.audit[audit] += 1

    def verify(self, store: Store, passwords: Passwords) -> list[str]:
        """Every difference between the database and the model (empty when consistent)."""
        problems = [p for p in store.integrity_check() if p != "ok"]
        present = {f"{b.kind} {b.value}" for b in store.list_bans()}
        for key, want in self.bans.items():
            if key not in self.uncertain and (key in present) != want:
                problems.append(f"ban {key}: expected {'present' if want else 'absent'}")
        for name, want_account in self.accounts.items():
            if name in self.uncertain:
                continue
            account = store.get_account(name)
            if want_account is None:
                if account is not None:
                    problems.append(f"account {name}: deleted but present")
                continue
            if account is None:
                problems.append(f"account {name}: acknowledged but missing")
                continue
            role, password = want_account
            if account.role != role:
                problems.append(f"account {name}: role {account.role}, expected {role}")
            if not passwords.verify(account.password_hash, password)[0]:
                problems.append(f"account {name}: acknowledged password does not verify")
        have = Counter((e.action, e.target) for e in store.audit_since())
        for entry, count in self.audit.items():
            if have[entry] < count:
                problems.append(f"audit {entry}: {have[entry]} lines, {count} acknowledged")
        return problems


class IrcAdmin:
    """UBAN ADD/DEL, OPER and KICK over IRC, each acknowledged by the server's reply."""

    def __init__(self, server: ServeProcess, model: CrashModel, rng: random.Random) -> None:
        self.server, self.model, self.rng = server, model, rng
        self.count = 0

    def run(self, cycle: int, stop: threading.Event) -> None:
        try:
            admin = Irc(self.server.port, self.server.ca_file)
            admin.register(f"boss{cycle}", ADMIN, ADMIN_PASSWORD)
            victim = Irc(self.server.port, self.server.ca_file)
            victim.register(f"vic{cycle}")
            for c in (admin, victim):
                c.send("JOIN #crash")
                c.expect(lambda m: m.command == "366")
            while not stop.is_set():
                self._one(cycle, admin, victim)
        except (ConnectionError, TimeoutError, OSError):
            return  # the server was killed

    def _one(self, cycle: int, admin: Irc, victim: Irc) -> None:
        roll = self.rng.random()
        present = [k for k, v in self.model.bans.copy().items() if v and k.startswith("nick irc")]
        if roll < 0.5 or not present:
            self.count += 1
            key = f"nick irc{cycle}x{self.count}"
            self.model.uncertain.add(key)
            admin.send(f"UBAN ADD {key.split()[1]} crash test")
            admin.expect(lambda m: m.command == "NOTICE" and "Banned" in m.param(1))
            self.model.bans[key] = True
            self.model.settle(key, ("ban.add", key.split()[1]))
        elif roll < 0.75:
            key = self.rng.choice(present)
            self.model.uncertain.add(key)
            admin.send(f"UBAN DEL {key.split()[1]}")
            reply = admin.expect(
                lambda m: (m.command == "NOTICE" and "Removed" in m.param(1))
                or (m.command == "FAIL" and m.param(1) == "NO_SUCH_BAN")
            )
            # NO_SUCH_BAN is right only after an unanswered DEL; verify() catches the rest.
            self.model.bans[key] = False
            done = reply.command == "NOTICE"
            self.model.settle(key, ("ban.del", key.split()[1]) if done else None)
        elif roll < 0.9:
            admin.send(f"OPER {ADMIN} {ADMIN_PASSWORD}")
            admin.expect(lambda m: m.command == "381")
            self.model.settle("", ("oper", f"boss{cycle}"))
        else:
            admin.send(f"KICK #crash vic{cycle} :crash test")
            admin.expect(lambda m: m.command == "KICK")
            self.model.settle("", ("kick", f"#crash vic{cycle}"))
            victim.send("JOIN #crash")
            victim.expect(lambda m: m.command == "366")


class CliAdmin:
    """The admin CLI next to the server; an operation is acknowledged by exit status 0."""

    def __init__(self, server: ServeProcess, model: CrashModel, rng: random.Random) -> None:
        self.server, self.model, self.rng = server, model, rng
        self.count = 0
        self.failures: list[str] = []

    def run(self, cycle: int, stop: threading.Event) -> None:
        while not stop.is_set():
            self._one(cycle)

    def _do(self, key: str, *args: str, input: str = "") -> bool:
        self.model.uncertain.add(key)
        proc = self.server.cli(*args, input=input)
        if proc.returncode != 0:
            self.failures.append(f"{' '.join(args)}: {proc.stderr.strip()}")
            return False  # the key stays uncertain: a failed command promised nothing
        return True

    def _one(self, cycle: int) -> None:
        m, roll = self.model, self.rng.random()
        live = [n for n, a in m.accounts.items() if a is not None]
        bans = [k for k, v in m.bans.copy().items() if v and k.startswith("nick cli")]
        self.count += 1
        if roll < 0.25 or not live:
            name = f"cli{cycle}x{self.count}"
            password = f"pw-{self.rng.getrandbits(32):08x}"
            if self._do(name, "account", "add", name, "--password-stdin", input=password + "\n"):
                m.accounts[name] = ("user", password)
                m.settle(name, ("account.add", name))
        elif roll < 0.35:
            name = self.rng.choice(live)
            password = f"pw-{self.rng.getrandbits(32):08x}"
            if self._do(name, "account", "passwd", name, "--password-stdin", input=password + "\n"):
                role = m.accounts[name][0]  # type: ignore[index]
                m.accounts[name] = (role, password)
                m.settle(name, ("account.passwd", name))
        elif roll < 0.45:
            name = self.rng.choice(live)
            role, password = m.accounts[name]  # type: ignore[misc]
            new = "admin" if role == "user" else "user"
            if self._do(name, "account", "role", name, new):
                m.accounts[name] = (new, password)
                m.settle(name, ("account.role", name))
        elif roll < 0.55:
            name = self.rng.choice(live)
            if self._do(name, "account", "del", name):
                m.accounts[name] = None
                m.settle(name, ("account.del", name))
        elif roll < 0.75 or not bans:
            key = f"nick cli{cycle}x{self.count}"
            if self._do(key, "ban", "add", key.split()[1], "--reason", "crash test"):
                m.bans[key] = True
                m.settle(key, ("ban.add", key.split()[1]))
        elif roll < 0.85:
            key = self.rng.choice(bans)
            if self._do(key, "ban", "del", key.split()[1]):
                m.bans[key] = False
                m.settle(key, ("ban.del", key.split()[1]))
        else:
            args = ("ban", "list") if roll < 0.93 else ("audit",)
            proc = self.server.cli(*args)
            if proc.returncode != 0:
                self.failures.append(f"{' '.join(args)}: {proc.stderr.strip()}")


def served_bans_match(server: ServeProcess, store_path: Path) -> list[str]:
    """The running server's UBAN LIST is the database's ban list (its cache was reloaded)."""
    admin = Irc(server.port, server.ca_file)
    try:
        admin.register("checker", ADMIN, ADMIN_PASSWORD)
        admin.send("UBAN LIST")
        served = set()
        while True:
            line = admin.expect(lambda m: m.command == "NOTICE").param(1)
            if line.startswith("End of ban list"):
                total = int(line.split("(")[1].split()[0])
                break
            if line.startswith("Ban: "):
                served.add(line.removeprefix("Ban: ").split(" - ")[0])
    finally:
        admin.close()
    with Store(store_path, readonly=True) as store:
        stored = {b.value for b in store.list_bans(time.time())}
    if total != len(stored) or not served <= stored:
        return [f"server has {total} bans, the database {len(stored)}; "
                f"listed but not stored: {sorted(served - stored)[:10]}"]
    return []


@dataclass
class CycleReport:
    cycles: int
    acknowledged: int
    cli_failures: list[str]
    problems: list[str]
    seconds: float


def run_cycles(
    workdir: Path, cycles: int, *, seed: int = 0, window: tuple[float, float] = (0.3, 1.2),
    progress: Callable[[str], None] | None = None,
) -> CycleReport:
    """Run ``cycles`` start / verify / write / ``kill -9`` rounds; report what went wrong."""
    rng = random.Random(seed)
    server = ServeProcess(workdir)
    model = CrashModel()
    passwords = Passwords(_fast_settings())
    first = server.cli("account", "add", ADMIN, "--admin", "--password-stdin",
                       input=ADMIN_PASSWORD + "\n")
    if first.returncode != 0:
        raise RuntimeError(first.stderr)
    irc, cli = IrcAdmin(server, model, rng), CliAdmin(server, model, random.Random(seed + 1))
    problems: list[str] = []
    started = time.monotonic()
    for cycle in range(cycles + 1):
        server.start()
        with Store(server.data_dir / "chaton.db", readonly=True) as store:
            found = model.verify(store, passwords)
        found += served_bans_match(server, store_path=server.data_dir / "chaton.db")
        problems += [f"cycle {cycle}: {p}" for p in found]
        if cycle == cycles or found:
            server.kill9()
            break
        stop = threading.Event()
        workers = [
            threading.Thread(target=irc.run, args=(cycle, stop)),
            threading.Thread(target=cli.run, args=(cycle, stop)),
        ]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(*window))  # the random moment of the crash
        server.kill9()
        stop.set()
        for w in workers:
            w.join(120)
        if progress is not None:
            progress(f"cycle {cycle + 1}/{cycles}: {model.acked} writes acknowledged so far")
    return CycleReport(
        cycles, model.acked, cli.failures, problems, time.monotonic() - started
    )


def _fast_settings() -> Settings:
    return Settings().replace(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash",
        description="Crash-consistency soak: IRC admin + CLI writes, kill -9, verify, repeat.",
    )
    parser.add_argument("--cycles", type=int, default=300, help="kill -9 rounds (default 300)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument("--workdir", type=Path, help="keep the data dir here (default: a temp dir)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chaton-crash-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"seed {args.seed}, {args.cycles} cycles in {workdir}", file=sys.stderr)
        report = run_cycles(workdir, args.cycles, seed=args.seed,
                            progress=lambda line: print(line, file=sys.stderr))
    print("| cycles | acknowledged writes | CLI failures | problems | seconds |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {report.cycles} | {report.acknowledged} | {len(report.cli_failures)} "
          f"| {len(report.problems)} | {report.seconds:.0f} |")
    for line in report.problems + report.cli_failures:
        print(line)
    return 1 if report.problems or report.cli_failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
