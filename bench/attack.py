"""``python -m bench.attack``: the attackers of scenario (g), in a process of their own.

A separate process so that decrypting megabytes of NAMES/WHO/LIST answers and opening
hundreds of connections does not stall the event loop that times the normal users' chat.
Four attacks run together from the given source addresses (127.0.0.2-9 by default):

- ``names``: registered connections sending ``NAMES #general,#general,...`` (one full line)
  and ``WHO #general`` in turn, at the flood rate the server allows;
- ``list``: registered connections that each join many junk rooms with the longest topics
  allowed, then send ``LIST`` at that rate;
- ``silent``: up to ``silent_max`` connections that do nothing (half finish the TLS
  handshake, half never start it), reopened when the server drops them;
- ``login``: SASL PLAIN attempts with wrong passwords for random and real account names.

The spam keeps to the flood limit on average but comes in pulses: every ``pulse / line_rate``
seconds each connection sends ``pulse`` lines at once (the token bucket allows bursts of 20),
all connections at the same instants, as a coordinated attacker would. A pulse is kept small
enough that its answers (8 lines: ~350 KiB of NAMES/WHO, ~750 KiB of LIST) stay under
chaton's 1 MiB sendq: an attacker that gets dropped hurts less. ``pulse = 1`` sends steadily,
the connections out of step.

Talking to the parent, one JSON object per line on stdout: ``{"event": "ready", ...}`` once
the NAMES and LIST connections are registered and the junk rooms exist; then the parent
writes ``go`` on stdin; the attacks run for ``duration`` seconds; ``{"event": "result", ...}``
and exit. Every wait has a deadline, and an attacker's failure is counted, never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import random
import re
import ssl
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.servers import raise_nofile_limit

__all__ = ["AttackConfig", "AttackProcess", "main"]

KINDS = ("names", "list", "silent", "login")
_TAIL = 512  # bytes kept of what a non-parsing connection received: its ERROR is last
_REFUSALS = ("Too many connections", "Connecting too fast", "banned", "try again later")
_CLOSING = re.compile(r"Closing Link: \S+ \((.*)\)\s*$")


@dataclass
class AttackConfig:
    """How hard to attack; written as JSON by the scenario (field names are the keys)."""

    host: str
    port: int
    duration: float  # seconds the attacks run after "go"
    sources: list[str]  # local addresses the attackers' sockets are bound to
    channel: str = "#general"  # the normal users' room
    names_conns: int = 20
    list_conns: int = 4
    junk_rooms: int = 50  # per LIST connection (chaton allows 50 rooms per client)
    silent_max: int = 500
    silent_open_rate: float = 100.0  # new silent connections per second, all together
    login_conns: int = 16
    line_rate: float = 4.0  # lines/s per connection: the server's flood_rate
    pulse: int = 8  # NAMES/WHO/LIST lines sent at once, every pulse/line_rate s (1: steady)
    prep_burst: int = 16  # lines sent at once while preparing (flood_burst 20, a margin)
    real_accounts: list[str] = field(default_factory=list)
    channellen: int = 50
    topiclen: int = 390
    max_line: int = 510  # bytes of a line without CR LF
    step_timeout: float = 10.0  # connect, handshake, registration, one SASL answer
    prep_timeout: float = 30.0
    go_timeout: float = 300.0  # how long to wait for "go" before giving up
    reconnect_delay: float = 0.5
    loop: str = "auto"

    @classmethod
    def from_json(cls, text: str) -> AttackConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:70]


class Pacer:
    """A client-side token bucket, so an attacker never trips the server's flood limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = max(rate, 0.1)
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Take a token; return how long to wait before using it (0: at once)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class AttackConn(asyncio.Protocol):
    """One attacker connection. Lines are split only while ``parse`` is on (registration,
    SASL); a spamming connection just counts bytes, so megabytes of answers cost no Python
    per line. Why the server closed it is taken from its last ``ERROR``."""

    def __init__(self, stats: Counter[str]) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.parse = True
        self.closing = False
        self.reason = ""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = b""
        self._tail = b""
        self._lines: deque[tuple[str, str]] = deque(maxlen=256)  # (command, line), unread
        self._wake: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.stats["bytes_in"] += len(data)
        if not self.parse:
            self._tail = data[-_TAIL:] if len(data) >= _TAIL else (self._tail + data)[-_TAIL:]
            return
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()[-16384:]
        for raw in lines:
            self._line(raw.rstrip(b"\r").decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        words = line.split(" ")
        at = 1 if line.startswith(":") else 0
        if len(words) <= at:
            return
        cmd = words[at]
        if cmd == "PING":
            self.send("PONG " + (words[at + 1] if len(words) > at + 1 else ":x"))
        elif cmd == "ERROR":
            self.reason = _reason(line)
        elif len(cmd) == 3 and cmd[0] in "45":
            self.stats[f"numeric {cmd}"] += 1
        self._lines.append((cmd, line))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reason:
            i = self._tail.rfind(b"ERROR :")
            if i >= 0:
                self.reason = _reason(self._tail[i:].split(b"\r")[0].decode("utf-8", "replace"))
            else:
                self.reason = f"connection lost: {_short(exc)}" if exc else "closed without ERROR"
        if not self.closing:
            refused = any(r in self.reason for r in _REFUSALS)
            self.stats["refused" if refused else "dropped"] += 1
            self.stats[("refused: " if refused else "dropped: ") + self.reason] += 1
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, line: str) -> None:
        if self.transport is not None and not self.lost.done() and not self.closing:
            self.transport.write(line.encode() + b"\r\n")

    async def expect(self, commands: Iterable[str], timeout: float) -> tuple[str, str] | None:
        """The next unread line with one of ``commands`` (or ERROR), skipping the lines
        before it; None on timeout or close."""
        wanted = frozenset(commands) | {"ERROR"}
        deadline = time.monotonic() + timeout
        while True:
            while self._lines:
                cmd, line = self._lines.popleft()
                if cmd in wanted:
                    return cmd, line
            left = deadline - time.monotonic()
            if self.lost.done() or left <= 0:
                return None
            self._wake = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._wake, self.lost}, timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


def _reason(error_line: str) -> str:
    """``ERROR :Closing Link: ip (Excess flood)`` -> ``Excess flood``."""
    text = error_line.split(" :", 1)[-1]
    m = _CLOSING.search(text)
    return (m.group(1) if m else text)[:80]


def _insecure_context() -> ssl.SSLContext:
    """Attackers do not check the certificate: less client CPU, the same server work."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Attack:
    """All four attacks against one server, with their counters."""

    def __init__(self, cfg: AttackConfig) -> None:
        self.cfg = cfg
        self.stats: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
        self.conns: set[AttackConn] = set()
        loop = asyncio.get_running_loop()
        self.go: asyncio.Future[None] = loop.create_future()
        self.go_at = 0.0  # time.monotonic() of "go": the spam pulses' shared clock
        self.done: asyncio.Future[None] = loop.create_future()
        self.tls = _insecure_context()
        self.rng = random.Random()
        self.prepared = 0
        self._all_prepared: asyncio.Future[None] = loop.create_future()
        self._next_open = 0.0
        self.silent_now = 0
        self.silent_peak = 0

    def source(self, i: int) -> str:
        return self.cfg.sources[i % len(self.cfg.sources)]

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake when the attack ends."""
        if seconds > 0 and not self.done.done():
            await asyncio.wait({self.done}, timeout=seconds)

    async def connect(self, kind: str, source: str, *, tls: bool = True) -> AttackConn | None:
        st = self.stats[kind]
        st["connects"] += 1
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: AttackConn(st), cfg.host, cfg.port,
                    ssl=self.tls if tls else None,
                    server_hostname="localhost" if tls else None,
                    ssl_handshake_timeout=cfg.step_timeout if tls else None,
                    local_addr=(source, 0),
                ),
                cfg.step_timeout,
            )  # fmt: skip
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            st["connect failed: " + _short(exc)] += 1
            return None
        st["established"] += 1
        self.conns.add(conn)
        conn.lost.add_done_callback(lambda _: self.conns.discard(conn))
        return conn

    async def register(self, conn: AttackConn, nick: str) -> bool:
        conn.send(f"NICK {nick}")
        conn.send(f"USER {nick} 0 * :attacker")
        got = await conn.expect(("001", "432", "433", "451", "465"), self.cfg.step_timeout)
        if got is None or got[0] != "001":
            conn.stats["registration failed: " + (got[0] if got else "no 001")] += 1
            return False
        return True

    async def send_paced(self, conn: AttackConn, lines: list[str], pacer: Pacer) -> None:
        for line in lines:
            await self.pause(pacer.delay())
            if conn.lost.done() or self.done.done():
                return
            conn.send(line)

    async def junk_rooms(self, conn: AttackConn, i: int) -> bool:
        """Join ``junk_rooms`` rooms with the longest names and topics allowed; PING to
        know the server has processed it all."""
        cfg = self.cfg
        names = [f"#j{i}r{k}x".ljust(cfg.channellen, "x") for k in range(cfg.junk_rooms)]
        lines, cur = [], ""
        for name in names:
            if cur and len(cur) + 1 + len(name) > cfg.max_line:
                lines.append(cur)
                cur = ""
            cur = f"{cur},{name}" if cur else f"JOIN {name}"
        if cur:
            lines.append(cur)
        for name in names:
            head = f"TOPIC {name} :"
            topic = ("junk topic " * 60)[: min(cfg.topiclen, cfg.max_line - len(head))]
            lines.append(head + topic)
        await self.send_paced(conn, [*lines, "PING :prep"], Pacer(cfg.line_rate, cfg.prep_burst))
        wait = cfg.prep_timeout + len(lines) / cfg.line_rate
        got = await conn.expect(("PONG",), wait)
        if got is None or got[0] != "PONG":
            conn.stats["junk rooms failed"] += 1
            return False
        conn.stats["junk rooms made"] += cfg.junk_rooms
        return True

    def _one_prepared(self) -> None:
        self.prepared += 1
        everyone = self.cfg.names_conns + self.cfg.list_conns
        if self.prepared >= everyone and not self._all_prepared.done():
            self._all_prepared.set_result(None)

    async def spammer(self, kind: str, i: int) -> None:
        """Register (and for LIST make junk rooms), wait for "go", spam at the flood rate;
        reconnect whenever the server drops us."""
        st = self.stats[kind]
        cfg = self.cfg
        offset = 0 if kind == "names" else cfg.names_conns
        first, attempt = True, 0
        if kind == "names":
            k = (cfg.max_line - len("NAMES ") + 1) // (len(cfg.channel) + 1)
            lines = ["NAMES " + ",".join([cfg.channel] * k), f"WHO {cfg.channel}"]
        else:
            lines = ["LIST"]
        while not self.done.done():
            attempt += 1
            conn = await self.connect(kind, self.source(offset + i))
            if conn is None:
                await self.pause(cfg.reconnect_delay)
                continue
            ok = await self.register(conn, f"{kind[0]}{i}a{attempt}")
            if ok and kind == "list":
                ok = await self.junk_rooms(conn, i)
            if ok and first:
                first = False
                self._one_prepared()
            if ok:
                await asyncio.wait({self.go, conn.lost, self.done},
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if self.go.done() and not conn.lost.done() and not self.done.done():
                    await self._spam(conn, lines, st)
            if not conn.lost.done():
                conn.close()
            await self.pause(cfg.reconnect_delay)

    async def _spam(self, conn: AttackConn, lines: list[str], st: Counter[str]) -> None:
        """``pulse`` lines every ``pulse / line_rate`` s on a clock shared by all spammers
        (steady and out of step when ``pulse`` is 1) until the end or a drop."""
        conn.parse = False
        pulse = max(1, self.cfg.pulse)
        period = pulse / self.cfg.line_rate
        start = self.go_at + (self.rng.random() * period if pulse == 1 else 0.0)
        # The pulse due now (a quarter period late is still "now"), or a reconnect's next one.
        k = max(0, math.ceil((time.monotonic() - start) / period - 0.25))
        while not conn.lost.done() and not self.done.done():
            delay = start + k * period - time.monotonic()
            if delay > 0:
                await asyncio.wait({conn.lost, self.done}, timeout=delay)
                if conn.lost.done() or self.done.done():
                    return
            for j in range(pulse):
                line = lines[(k * pulse + j) % len(lines)]
                conn.send(line)
                st["lines " + line.split(" ", 1)[0]] += 1
            st["lines"] += pulse
            k += 1

    async def _open_ticket(self) -> None:
        """Space silent connection attempts ``1/silent_open_rate`` apart, all together."""
        now = time.monotonic()
        at = max(now, self._next_open)
        self._next_open = at + 1.0 / self.cfg.silent_open_rate
        await self.pause(at - now)

    async def silent(self, i: int) -> None:
        """Hold one slot: connect, say nothing, and reconnect when dropped."""
        st = self.stats["silent"]
        tls = i % 2 == 0
        while not self.done.done():
            await self._open_ticket()
            if self.done.done():
                return
            conn = await self.connect("silent", self.source(i), tls=tls)
            if conn is None:
                await self.pause(self.cfg.reconnect_delay)
                continue
            conn.parse = False
            st["opened with TLS" if tls else "opened without handshake"] += 1
            self.silent_now += 1
            self.silent_peak = max(self.silent_peak, self.silent_now)
            try:
                await asyncio.wait({conn.lost, self.done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.silent_now -= 1
            if not conn.lost.done():
                return  # the attack is over; closed with the rest
            await self.pause(self.cfg.reconnect_delay)

    async def login(self, i: int) -> None:
        """SASL PLAIN with wrong passwords, on one connection for as long as it lasts;
        every other attempt names a real account. Paced so the two lines per attempt stay
        within the flood rate."""
        st = self.stats["login"]
        cfg = self.cfg
        pacer = Pacer(cfg.line_rate / 2, 1)
        n = 0
        while not self.done.done():
            conn = await self.connect("login", self.source(i))
            if conn is None:
                await self.pause(cfg.reconnect_delay)
                continue
            conn.send("CAP LS 302")
            conn.send("CAP REQ :sasl")
            acked = False
            for _ in range(4):
                got = await conn.expect(("CAP",), cfg.step_timeout)
                if got is None or got[0] != "CAP":
                    break
                if " ACK " in got[1]:
                    acked = True
                    break
            if not acked:
                st["CAP REQ sasl failed"] += 1
            while acked and not conn.lost.done() and not self.done.done():
                await self.pause(pacer.delay())
                if self.done.done():
                    break
                n += 1
                await self._attempt(conn, i, n, st)
            if not conn.lost.done():
                conn.close()
            await self.pause(cfg.reconnect_delay)

    async def _attempt(self, conn: AttackConn, i: int, n: int, st: Counter[str]) -> None:
        cfg = self.cfg
        real = cfg.real_accounts and n % 2 == 0
        name = (cfg.real_accounts[(i + n // 2) % len(cfg.real_accounts)] if real
                else f"u{self.rng.getrandbits(40):x}")  # fmt: skip
        conn.send("AUTHENTICATE PLAIN")
        got = await conn.expect(("AUTHENTICATE", "904", "905", "906", "907", "908"),
                                cfg.step_timeout)  # fmt: skip
        if got is None or got[0] != "AUTHENTICATE":
            st["AUTHENTICATE PLAIN: " + (got[0] if got else "no answer")] += 1
            return
        secret = f"wrong-{self.rng.getrandbits(64):x}"
        blob = base64.b64encode(f"\0{name}\0{secret}".encode()).decode()
        st["attempts"] += 1
        st["attempts on real accounts" if real else "attempts on random names"] += 1
        conn.send(f"AUTHENTICATE {blob}")
        got = await conn.expect(("903", "904", "902", "905", "906", "907"), cfg.step_timeout)
        if got is None:
            st["no answer within step timeout"] += 1
            conn.close()
        elif got[0] == "903":
            st["ACCEPTED a wrong password"] += 1
        elif got[0] == "904" and "Too many failed" in got[1]:
            st["throttled"] += 1
        elif got[0] == "904" and "busy" in got[1]:
            st["busy"] += 1
        elif got[0] == "904":
            st["wrong password"] += 1
        else:
            st[f"answer {got[0]}"] += 1

    async def run(self, stdin: asyncio.StreamReader) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.monotonic()
        spam = [asyncio.create_task(self.spammer("names", i)) for i in range(cfg.names_conns)]
        spam += [asyncio.create_task(self.spammer("list", i)) for i in range(cfg.list_conns)]
        if spam:
            await asyncio.wait({self._all_prepared}, timeout=cfg.prep_timeout)
        _emit({"event": "ready", "prepared": self.prepared, "spammers": len(spam),
               "prep_s": time.monotonic() - t0})  # fmt: skip
        try:
            line = await asyncio.wait_for(stdin.readline(), cfg.go_timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"go":
            self.done.set_result(None)
            await _finish(spam)
            return {"error": "no 'go' from the parent", "stats": self._stats()}
        nofile = raise_nofile_limit()
        others = cfg.names_conns + cfg.list_conns + cfg.login_conns
        silent_cap = max(0, min(cfg.silent_max, nofile - others - 64))
        cpu0, w0 = time.process_time(), time.monotonic()
        self.go_at = w0
        self.go.set_result(None)
        tasks = [asyncio.create_task(self.silent(i)) for i in range(silent_cap)]
        tasks += [asyncio.create_task(self.login(i)) for i in range(cfg.login_conns)]
        held: list[int] = []
        end = w0 + cfg.duration
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.5, left))
            held.append(self.silent_now)
        self.done.set_result(None)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - w0
        peak = self.silent_peak
        for conn in list(self.conns):
            conn.close()
        bugs = await _finish(spam + tasks)
        return {
            "cpu_s": cpu,
            "wall_s": wall,
            "silent_cap": silent_cap,
            "silent_peak": peak,
            "silent_mean": sum(held) / len(held) if held else 0,
            "bugs": bugs,
            "stats": self._stats(),
        }

    def _stats(self) -> dict[str, dict[str, int]]:
        return {k: dict(v.most_common()) for k, v in self.stats.items()}


async def _finish(tasks: list[asyncio.Task[None]]) -> dict[str, int]:
    """Let workers notice the end (5 s at most), cancel the rest; count their exceptions."""
    if not tasks:
        return {}
    _, pending = await asyncio.wait(tasks, timeout=5.0)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    bugs: Counter[str] = Counter()
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            bugs[_short(cast(BaseException, t.exception()))] += 1
    return dict(bugs)


class AttackProcess:
    """The parent's handle on ``python -m bench.attack``: every read bounded, always reaped."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.why = ""  # why the last :meth:`event` returned None

    @classmethod
    async def start(cls, cfg: AttackConfig, *, env: dict[str, str], cwd: Path) -> AttackProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.attack", "--config", json.dumps(dataclasses.asdict(cfg)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=cwd,
            limit=1 << 22,
        )  # fmt: skip
        return cls(proc)

    async def event(self, name: str, timeout: float) -> dict[str, Any] | None:
        """The next ``{"event": name}`` line, or None (see :attr:`why`) after ``timeout``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                break
            except ValueError as exc:  # a line over the stream limit
                self.why = f"unreadable output: {exc}"
                return None
            if not line:
                code = await self._reap(2.0)
                self.why = f"the attack process exited (status {code}) before {name!r}"
                return None
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == name:
                return obj
        self.why = f"no {name!r} from the attack process within {timeout:g}s"
        return None

    async def go(self) -> bool:
        """Tell the attackers to start; False if the process is gone."""
        if self.proc.stdin is None or self.proc.returncode is not None:
            return False
        try:
            self.proc.stdin.write(b"go\n")
            await asyncio.wait_for(self.proc.stdin.drain(), 5.0)
        except (OSError, TimeoutError):
            return False
        return True

    async def _reap(self, timeout: float) -> int | None:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        """Kill the process if it still runs, and wait for it (bounded)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self._reap(5.0)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _amain(cfg: AttackConfig) -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    attack = Attack(cfg)
    budget = cfg.prep_timeout + cfg.go_timeout + cfg.duration + 30
    try:
        async with asyncio.timeout(budget):
            result = await attack.run(stdin)
    except TimeoutError:
        result = {"error": f"attack exceeded its {budget:g}s budget", "stats": attack._stats()}
    _emit({"event": "result", **result})
    return 0 if "error" not in result else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.attack", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="AttackConfig as JSON")
    cfg = AttackConfig.from_json(p.parse_args(argv).config)
    raise_nofile_limit()
    factory = None
    if cfg.loop != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_amain(cfg))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
