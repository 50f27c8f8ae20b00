"""The benchmark scenarios (a)-(f): each sets up clients, drives one phase and returns metrics.

A scenario gets a freshly started server and returns a flat ``dict`` of numbers (see
:data:`METRICS` in :mod:`bench.report` for names and units). It raises :class:`BenchError`
when something went wrong that makes its numbers meaningless (a client failed to register,
a sender's PING was never answered); a lossy delivery phase is *not* an error: it is
reported as ``lost`` so the table shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import (
    BenchError,
    ConnectResult,
    IrcClient,
    Recorder,
    Target,
    close_all,
    connect_many,
    percentile,
    send_messages,
    server_errors,
    sync,
)
from bench.servers import ProcSample, Server

__all__ = ["SCENARIOS", "Context", "Scenario"]

CHANNEL = "#bench"
_MIN_CPU_S = 0.05
Metrics = dict[str, Any]


@dataclass
class Context:
    """What a scenario needs besides its parameters."""

    server: Server
    target: Target
    concurrency: int  # connections set up at once
    window: int  # messages a sender may have unconfirmed
    max_in_flight: int  # deliveries receivers may lag behind senders (0: no limit)
    step_timeout: float  # one registration, JOIN or PING round trip
    stall_timeout: float  # no delivery for this long ends a delivery phase as lossy
    progress: Callable[[str], None]
    accounts: list[str] = field(default_factory=list)  # SASL accounts (nick = account name)
    password: str = ""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    run: Callable[[Context, dict[str, Any]], Awaitable[Metrics]]
    full: dict[str, Any]
    quick: dict[str, Any]
    budget: float  # seconds for the whole scenario at full size

    def params(self, quick: bool) -> dict[str, Any]:
        return self.quick if quick else self.full

    def describe(self, quick: bool) -> str:
        return self.title.format(**self.params(quick))


@dataclass(frozen=True)
class Snapshot:
    """Wall clock, server CPU/RSS and the generator's own CPU at one instant."""

    wall: float
    server: ProcSample
    gen_cpu: float

    @classmethod
    def take(cls, server: Server) -> Snapshot:
        return cls(time.perf_counter(), server.sample(), time.process_time())


def _phase(a: Snapshot, b: Snapshot, deliveries: int, prefix: str = "") -> Metrics:
    wall = max(b.wall - a.wall, 1e-9)
    cpu = b.server.cpu_s - a.server.cpu_s
    gen = b.gen_cpu - a.gen_cpu
    out: Metrics = {
        f"{prefix}wall_s": wall,
        f"{prefix}server_cpu_s": cpu,
        f"{prefix}server_cpu_pct": 100 * cpu / wall,
        f"{prefix}gen_cpu_s": gen,
        f"{prefix}gen_cpu_pct": 100 * gen / wall,
    }
    if deliveries:
        out[f"{prefix}deliveries_per_s"] = deliveries / wall
        out[f"{prefix}gen_cpu_us_per_delivery"] = gen * 1e6 / deliveries
        # /proc counts CPU in clock ticks (10 ms): below 5 ticks a ratio would be noise.
        if cpu >= _MIN_CPU_S:
            out[f"{prefix}server_cpu_us_per_delivery"] = cpu * 1e6 / deliveries
    return out


def _latency(sorted_ns: list[int], prefix: str = "lat") -> Metrics:
    if not sorted_ns:
        return {}
    return {
        f"{prefix}_p50_ms": percentile(sorted_ns, 50) / 1e6,
        f"{prefix}_p99_ms": percentile(sorted_ns, 99) / 1e6,
        f"{prefix}_max_ms": sorted_ns[-1] / 1e6,
        f"{prefix}_samples": len(sorted_ns),
    }


def _setup(res: ConnectResult, prefix: str = "") -> Metrics:
    durations = sorted(int(d * 1e9) for d in res.durations)
    return {
        f"{prefix}setup_s": res.elapsed,
        f"{prefix}reg_per_s": res.per_second,
        f"{prefix}reg_p99_ms": percentile(durations, 99) / 1e6,
        f"{prefix}listen_drops": res.listen_drops,
    }


def _deliveries(rec: Recorder, expected: int) -> Metrics:
    return {
        "expected": expected,
        "received": rec.count,
        "lost": max(0, expected - rec.count),
        "duplicates": max(0, rec.count - expected),
    }


async def _connect(
    ctx: Context,
    nicks: list[str],
    rec: Recorder | None,
    *,
    join: bool,
    sasl_accounts: dict[str, str] | None = None,
    concurrency: int | None = None,
) -> ConnectResult:
    """Connect ``nicks``; with ``sasl_accounts`` (nick -> account) log in with SASL PLAIN."""

    async def setup(client: IrcClient) -> None:
        if sasl_accounts:
            account = sasl_accounts[client.nick]
            await client.register_sasl(account, ctx.password, ctx.step_timeout)
        else:
            await client.register(ctx.step_timeout)
        if join:
            await client.join(CHANNEL, ctx.step_timeout)

    what = "SASL logins" if sasl_accounts else "clients"
    ctx.progress(f"connecting {len(nicks)} {what}" + (f" to {CHANNEL}" if join else ""))
    return await connect_many(
        ctx.target,
        nicks,
        setup,
        recorder=rec,
        concurrency=concurrency or ctx.concurrency,
        timeout=ctx.step_timeout,
        progress=ctx.progress,
    )


async def _drain(ctx: Context, rec: Recorder, expected: int) -> None:
    rec.expect(expected)
    if not await rec.wait(timeout=max(60.0, expected / 2000), stall=ctx.stall_timeout):
        ctx.progress(f"deliveries stalled at {rec.count}/{expected}")


# --- (a) and (b): fan-out in one room ------------------------------------------------------


async def fanout(ctx: Context, p: dict[str, Any]) -> Metrics:
    """``clients`` in one room; ``senders`` of them send ``messages`` each, windowed."""
    n, senders, count = p["clients"], p["senders"], p["messages"]
    rec = Recorder()
    rss0 = ctx.server.sample().rss_bytes
    res = await _connect(ctx, [f"f{i}" for i in range(n)], rec, join=True)
    clients = res.clients
    try:
        await sync(clients, ctx.step_timeout)
        ctx.progress(f"{senders} sender(s) x {count} messages -> {n - 1} receivers each")
        a = Snapshot.take(ctx.server)
        sends = [
            send_messages(
                c, CHANNEL, i, count, window=ctx.window, timeout=ctx.step_timeout,
                recorder=rec, fanout=n - 1, max_in_flight=ctx.max_in_flight,
            )
            for i, c in enumerate(clients[:senders])
        ]  # fmt: skip
        sent = sum(await asyncio.gather(*sends))
        return await _room_metrics(ctx, res, rec, clients, n, sent, a, rss0)
    finally:
        close_all(clients)


async def _room_metrics(
    ctx: Context, res: Any, rec: Recorder, clients: list[Any], n: int, sent: int,
    a: Snapshot, rss0: int,
) -> Metrics:
    """Wait for every delivery of ``sent`` room messages to ``n - 1`` receivers; metrics."""
    expected = sent * (n - 1)
    await _drain(ctx, rec, expected)
    b = Snapshot.take(ctx.server)
    return {
        "clients": n,
        "messages": sent,
        **_setup(res),
        **_deliveries(rec, expected),
        **_phase(a, b, rec.count),
        **_latency(rec.latencies()),
        "rss_before_mb": rss0 / 2**20,
        "rss_after_mb": b.server.rss_bytes / 2**20,
        "errors": server_errors(clients),
    }


# --- (c): private messages between pairs ---------------------------------------------------


async def pairs(ctx: Context, p: dict[str, Any]) -> Metrics:
    """``pairs`` x 2 clients; each sends ``messages`` private messages to its partner."""
    n, count = p["pairs"], p["messages"]
    rec = Recorder()
    rss0 = ctx.server.sample().rss_bytes
    nicks = [f"p{i}{side}" for i in range(n) for side in "ab"]
    res = await _connect(ctx, nicks, rec, join=False)
    clients = res.clients

    def partner(nick: str) -> str:
        return nick[:-1] + ("b" if nick.endswith("a") else "a")

    try:
        await sync(clients, ctx.step_timeout)
        ctx.progress(f"{len(clients)} clients x {count} private messages")
        a = Snapshot.take(ctx.server)
        sends = [
            send_messages(
                c,
                partner(c.nick),
                i,
                count,
                window=ctx.window,
                timeout=ctx.step_timeout,
                recorder=rec,
                fanout=1,
                max_in_flight=ctx.max_in_flight,
            )
            for i, c in enumerate(clients)
        ]
        expected = sum(await asyncio.gather(*sends))
        await _drain(ctx, rec, expected)
        b = Snapshot.take(ctx.server)
        return {
            "clients": len(clients),
            "messages": expected,
            **_setup(res),
            **_deliveries(rec, expected),
            **_phase(a, b, rec.count),
            **_latency(rec.latencies()),
            "rss_before_mb": rss0 / 2**20,
            "rss_after_mb": b.server.rss_bytes / 2**20,
            "errors": server_errors(clients),
        }
    finally:
        close_all(clients)


# --- (d): idle registered connections ------------------------------------------------------


async def idle(ctx: Context, p: dict[str, Any]) -> Metrics:
    """``clients`` registered connections doing nothing: memory per connection."""
    n = p["clients"]
    a = Snapshot.take(ctx.server)
    res = await _connect(ctx, [f"i{i}" for i in range(n)], None, join=False)
    clients = res.clients
    try:
        b = Snapshot.take(ctx.server)
        await sync(clients, ctx.step_timeout)
        await asyncio.sleep(p["settle_s"])
        c = Snapshot.take(ctx.server)
        grown = c.server.rss_bytes - a.server.rss_bytes
        return {
            "clients": n,
            **_setup(res),
            "server_cpu_ms_per_reg": (b.server.cpu_s - a.server.cpu_s) * 1e3 / n,
            **_phase(a, b, 0, "setup_"),
            "rss_before_mb": a.server.rss_bytes / 2**20,
            "rss_after_mb": c.server.rss_bytes / 2**20,
            "rss_per_conn_kb": grown / n / 1024,
            "errors": server_errors(clients),
        }
    finally:
        close_all(clients)


# --- (e): light load -----------------------------------------------------------------------


async def light(ctx: Context, p: dict[str, Any]) -> Metrics:
    """``clients`` in one room; one sender at ``rate`` messages/s for ``seconds``."""
    n, rate = p["clients"], p["rate"]
    count = int(rate * p["seconds"])
    rec = Recorder()
    rss0 = ctx.server.sample().rss_bytes
    res = await _connect(ctx, [f"l{i}" for i in range(n)], rec, join=True)
    clients = res.clients
    try:
        await sync(clients, ctx.step_timeout)
        ctx.progress(f"1 sender at {rate:g} msg/s for {p['seconds']:g}s -> {n - 1} receivers")
        a = Snapshot.take(ctx.server)
        sent = await send_messages(
            clients[0], CHANNEL, 0, count, window=ctx.window, timeout=ctx.step_timeout, rate=rate
        )
        return await _room_metrics(ctx, res, rec, clients, n, sent, a, rss0)
    finally:
        close_all(clients)


# --- (f): login storm during light load, then a plain registration burst ------------------


async def storm(ctx: Context, p: dict[str, Any]) -> Metrics:
    """Light chat; after ``before_s`` seconds ``logins`` SASL logins at once (chaton only).

    Chat p99 of messages sent during the storm is compared with p99 before it. Then, chat
    stopped, ``plain_regs`` registrations without SASL measure registrations/s.
    """
    n, rate = p["clients"], p["rate"]
    rec = Recorder()
    res = await _connect(ctx, [f"c{i}" for i in range(n)], rec, join=True)
    clients = res.clients
    extra: list[IrcClient] = []
    out: Metrics = {"clients": n}
    try:
        await sync(clients, ctx.step_timeout)
        stop = asyncio.Event()
        budget = int(rate * (p["before_s"] + 120))  # upper bound; `stop` ends it
        ctx.progress(f"chat at {rate:g} msg/s to {n - 1} receivers; storm after {p['before_s']}s")
        chat = asyncio.create_task(
            send_messages(
                clients[0], CHANNEL, 0, budget, window=ctx.window,
                timeout=ctx.step_timeout, rate=rate, stop=stop,
            )
        )  # fmt: skip
        try:
            await asyncio.sleep(p["before_s"])
            storm_start = time.perf_counter_ns()
            if ctx.server.supports_sasl and ctx.accounts:
                # Nicks differ from the account names: chaton refuses NICK <registered name>
                # before SASL has finished, and clients pipeline NICK with CAP LS.
                names = {f"s{i}": acct for i, acct in enumerate(ctx.accounts[: p["logins"]])}
                a = Snapshot.take(ctx.server)
                try:
                    logins = await _connect(
                        ctx, list(names), None, join=False, sasl_accounts=names,
                        concurrency=len(names),
                    )  # fmt: skip
                except BenchError as exc:  # keep the rest of the scenario's numbers
                    out["storm_error"] = str(exc)
                    ctx.progress(f"storm failed: {exc}")
                else:
                    b = Snapshot.take(ctx.server)
                    extra += logins.clients
                    out |= {
                        "storm_logins": len(names),
                        **_setup(logins, "storm_"),
                        "storm_server_cpu_ms_per_login": (b.server.cpu_s - a.server.cpu_s)
                        * 1e3
                        / len(names),
                    }
            storm_end = time.perf_counter_ns()
            await asyncio.sleep(p["after_s"])
        finally:
            stop.set()
            sent = await chat
        expected = sent * (n - 1)
        await _drain(ctx, rec, expected)
        out |= {"messages": sent, **_deliveries(rec, expected)}
        out |= _latency(rec.latencies(sent_to=storm_start - 1), "before")
        if "storm_logins" in out:
            during = rec.latencies(storm_start, storm_end)
            out |= _latency(during, "storm")
            if out.get("before_p99_ms"):
                out["storm_p99_ratio"] = out.get("storm_p99_ms", 0) / out["before_p99_ms"]

        a = Snapshot.take(ctx.server)
        plain = await _connect(ctx, [f"r{i}" for i in range(p["plain_regs"])], None, join=False)
        b = Snapshot.take(ctx.server)
        extra += plain.clients
        out |= {
            "plain_regs": len(plain.clients),
            **_setup(plain, "plain_"),
            "plain_server_cpu_ms_per_reg": (b.server.cpu_s - a.server.cpu_s)
            * 1e3
            / max(1, len(plain.clients)),
            **_phase(a, b, 0, "plain_"),
            "errors": server_errors(clients + extra),
        }
        return out
    finally:
        close_all(clients + extra)


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in [
        Scenario(
            "a", "fan-out: {clients} clients, {senders} sender x {messages} msgs", fanout,
            {"clients": 200, "senders": 1, "messages": 2000},
            {"clients": 20, "senders": 1, "messages": 200},
            budget=300,
        ),
        Scenario(
            "b", "fan-out: {clients} clients, {senders} senders x {messages} msgs", fanout,
            {"clients": 1000, "senders": 10, "messages": 200},
            {"clients": 50, "senders": 5, "messages": 40},
            budget=600,
        ),
        Scenario(
            "c", "private: {pairs} pairs x {messages} msgs each way", pairs,
            {"pairs": 500, "messages": 100},
            {"pairs": 25, "messages": 20},
            budget=300,
        ),
        Scenario(
            "d", "idle: {clients} registered connections", idle,
            {"clients": 2000, "settle_s": 1.0},
            {"clients": 100, "settle_s": 0.3},
            budget=300,
        ),
        Scenario(
            "e", "light load: {clients} clients, 1 sender at {rate} msg/s", light,
            {"clients": 200, "rate": 50, "seconds": 10},
            {"clients": 20, "rate": 50, "seconds": 2},
            budget=180,
        ),
        Scenario(
            "f", "login storm: {logins} SASL logins during light load; {plain_regs} plain regs",
            storm,
            {"clients": 200, "rate": 50, "before_s": 5, "after_s": 1, "logins": 50,
             "plain_regs": 200},
            {"clients": 20, "rate": 50, "before_s": 1.5, "after_s": 0.5, "logins": 10,
             "plain_regs": 50},
            budget=300,
        ),
    ]
}  # fmt: skip
