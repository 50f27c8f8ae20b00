"""The benchmark scenarios (a)-(g): each sets up clients, drives one phase and returns metrics.

A scenario gets a freshly started server and returns a flat ``dict`` of numbers (see
:data:`METRICS` in :mod:`bench.report` for names and units). It raises :class:`BenchError`
when something went wrong that makes its numbers meaningless (a client failed to register,
a sender's PING was never answered); a lossy delivery phase is *not* an error: it is
reported as ``lost`` so the table shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.attack import AttackConfig, AttackProcess
from bench.loadgen import (
    BenchError,
    ConnectResult,
    IrcClient,
    Recorder,
    Target,
    close_all,
    connect_many,
    open_client,
    percentile,
    send_messages,
    server_errors,
    sync,
)
from bench.servers import CHATON_ATTACK_SETTINGS, REPO, ChatonServer, ProcSample, Server

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
    login_accounts: list[str] = field(default_factory=list)  # (g): made with the chaton CLI
    #: clients negotiate IRCV3_CAPS; in (a), (b) and (e) senders log in and label messages
    ircv3: bool = False


#: What an IRCv3 client of the fan-out asks for (the tags a modern client gets).
IRCV3_CAPS = ("message-tags", "server-time", "account-tag", "batch", "labeled-response")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    run: Callable[[Context, dict[str, Any]], Awaitable[Metrics]]
    full: dict[str, Any]
    quick: dict[str, Any]
    budget: float  # seconds for the whole scenario at full size
    chaton_only: bool = False  # other servers are skipped (it needs chaton's accounts)
    #: chaton settings the run starts from instead of CHATON_BENCH_SETTINGS (None: those)
    chaton_settings: dict[str, Any] | None = None

    def params(self, quick: bool) -> dict[str, Any]:
        return self.quick if quick else self.full

    def describe(self, quick: bool, params: dict[str, Any] | None = None) -> str:
        return self.title.format(**(params if params is not None else self.params(quick)))


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
    channel: str = CHANNEL,
    sources: list[str] | None = None,
) -> ConnectResult:
    """Connect ``nicks``; with ``sasl_accounts`` (nick -> account) log in with SASL PLAIN.

    With ``sources``, client ``i`` connects from local address ``sources[i % len]``.
    """

    async def setup(client: IrcClient) -> None:
        if ctx.ircv3:
            account = (sasl_accounts or {}).get(client.nick)
            await client.register_sasl(account, ctx.password, ctx.step_timeout, IRCV3_CAPS)
        elif sasl_accounts:
            account = sasl_accounts[client.nick]
            await client.register_sasl(account, ctx.password, ctx.step_timeout)
        else:
            await client.register(ctx.step_timeout)
        if join:
            await client.join(channel, ctx.step_timeout)

    what = "SASL logins" if sasl_accounts else "clients"
    ctx.progress(f"connecting {len(nicks)} {what}" + (f" to {channel}" if join else ""))
    return await connect_many(
        ctx.target,
        nicks,
        setup,
        recorder=rec,
        concurrency=concurrency or ctx.concurrency,
        timeout=ctx.step_timeout,
        progress=ctx.progress,
        sources=sources or (),
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
    s0 = Snapshot.take(ctx.server)
    logins = {f"f{i}": f"f{i}" for i in range(senders)} if ctx.ircv3 else None
    res = await _connect(ctx, [f"f{i}" for i in range(n)], rec, join=True,
                         sasl_accounts=logins)
    clients = res.clients
    try:
        await sync(clients, ctx.step_timeout)
        setup = _setup_cost(s0, Snapshot.take(ctx.server), n)
        ctx.progress(f"{senders} sender(s) x {count} messages -> {n - 1} receivers each")
        a = Snapshot.take(ctx.server)
        sends = [
            send_messages(
                c, CHANNEL, i, count, window=ctx.window, timeout=ctx.step_timeout,
                recorder=rec, fanout=n - 1, max_in_flight=ctx.max_in_flight,
                labeled=ctx.ircv3,
            )
            for i, c in enumerate(clients[:senders])
        ]  # fmt: skip
        sent = sum(await asyncio.gather(*sends))
        out = await _room_metrics(ctx, res, rec, clients, n, sent, a, s0.server.rss_bytes)
        return out | setup | await _quit_all(ctx, clients)
    finally:
        close_all(clients)


def _setup_cost(a: Snapshot, b: Snapshot, n: int) -> Metrics:
    """Server CPU of setting ``n`` clients up (connect, TLS, register, JOIN when the scenario
    joins, and the one PING of the sync after it), per client."""
    return {"setup_server_cpu_ms_per_client": (b.server.cpu_s - a.server.cpu_s) * 1e3 / n}


async def _quit_all(ctx: Context, clients: list[IrcClient]) -> Metrics:
    """All clients but the first send QUIT at once; server CPU until the first has seen every
    QUIT (each one is relayed to the room's remaining members: the QUIT fan-out)."""
    watcher, leaving = clients[0], clients[1:]
    if not leaving:
        return {}
    ctx.progress(f"{len(leaving)} clients quit")
    seen0 = watcher.quits
    a = Snapshot.take(ctx.server)
    for c in leaving:
        c.quit()
    deadline = time.monotonic() + max(ctx.step_timeout, len(leaving) / 50)
    while watcher.quits - seen0 < len(leaving) and not watcher.closed:
        if time.monotonic() > deadline:
            return {"quit_error": f"{watcher.quits - seen0}/{len(leaving)} QUITs seen"}
        await asyncio.sleep(0.005)
    b = Snapshot.take(ctx.server)
    cpu = b.server.cpu_s - a.server.cpu_s
    out: Metrics = {"quit_wall_s": b.wall - a.wall, "quit_server_cpu_s": cpu}
    if cpu >= _MIN_CPU_S:
        out["quit_server_cpu_us_per_quit"] = cpu * 1e6 / len(leaving)
    return out


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
    s0 = Snapshot.take(ctx.server)
    res = await _connect(ctx, nicks, rec, join=False)
    clients = res.clients

    def partner(nick: str) -> str:
        return nick[:-1] + ("b" if nick.endswith("a") else "a")

    try:
        await sync(clients, ctx.step_timeout)
        setup = _setup_cost(s0, Snapshot.take(ctx.server), len(clients))
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
            **setup,
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
    logins = {"l0": "l0"} if ctx.ircv3 else None
    res = await _connect(ctx, [f"l{i}" for i in range(n)], rec, join=True, sasl_accounts=logins)
    clients = res.clients
    try:
        await sync(clients, ctx.step_timeout)
        ctx.progress(f"1 sender at {rate:g} msg/s for {p['seconds']:g}s -> {n - 1} receivers")
        a = Snapshot.take(ctx.server)
        sent = await send_messages(
            clients[0], CHANNEL, 0, count, window=ctx.window, timeout=ctx.step_timeout, rate=rate,
            labeled=ctx.ircv3,
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


# --- (g): under attack ---------------------------------------------------------------------

ATTACK_ROOM = "#general"  # chaton's default room, the one everyone is in and attackers query
LOGIN_DEADLINE_S = 5.0  # a normal SASL login during the attack must be done within this
LOGIN_WAIT_S = 15.0  # how long one is waited for at most (a slower one counts as failed)
LOGIN_SPREAD = 2 / 3  # logins start over the first 2/3 of the attack, so each ends within it
FALLBACK_FLOOD_RATE = 4.0  # attackers' lines/s when the server's flood control is off
CHAT_SHARE_OF_FLOOD = 0.75  # a normal sender stays this far under the flood rate


def loopback(net: int, i: int) -> str:
    """The ``i``-th host address of ``127.<net>.0.0/16``: distinct hosts for per-IP limits."""
    return f"127.{net}.{i // 250}.{i % 250 + 1}"


async def _talk(
    client: IrcClient, sender_id: int, rate: float, stop: asyncio.Event, rec: Recorder,
    fanout: int,
) -> None:  # fmt: skip
    """Bench messages at ``rate``/s until ``stop``. A late send is not made up with a burst
    (a real client would not, and a burst could trip flood control); no PING windows at
    this rate. ``rec.issued`` counts the deliveries expected, even if the sender drops."""
    seq = 0
    next_at = time.perf_counter()
    while not stop.is_set() and not client.closed:
        client.send("PRIVMSG", ATTACK_ROOM, f"b {sender_id} {seq} {time.perf_counter_ns()}")
        rec.issued += fanout
        seq += 1
        next_at = max(next_at + 1.0 / rate, time.perf_counter())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), next_at - time.perf_counter())


async def _newcomer(
    ctx: Context, account: str, source: str, delay: float
) -> tuple[str, float, IrcClient]:
    """A normal user arriving during the attack: connect from its own address, SASL PLAIN
    with the right password, wait for 001. Returns (outcome, seconds, client)."""
    await asyncio.sleep(delay)
    client = IrcClient(account, None)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(LOGIN_WAIT_S):
            await open_client(ctx.target, client, LOGIN_WAIT_S, source)
            await client.register_sasl(account, ctx.password, LOGIN_WAIT_S)
        outcome = "ok"
    except TimeoutError:
        outcome = f"no welcome within {LOGIN_WAIT_S:g}s"
    except (OSError, BenchError) as exc:
        text = (str(exc) or type(exc).__name__).split(": ", 1)[-1][:80]
        gone = isinstance(exc, OSError) or client.closed or client.error is not None
        outcome = ("refused: " if gone else "failed: ") + text
    except BaseException:  # cancelled: the scenario is being torn down
        client.close()
        raise
    return outcome, time.perf_counter() - t0, client


def _attack_metrics(result: dict[str, Any]) -> Metrics:
    """The attack's own counters, flattened into table-sized numbers (all kept as JSON)."""
    st: dict[str, dict[str, int]] = result.get("stats", {})

    def total(key: str) -> int:
        return sum(v.get(key, 0) for v in st.values())

    login = st.get("login", {})
    out: Metrics = {
        "atk_spam_lines": st.get("names", {}).get("lines", 0) + st.get("list", {}).get("lines", 0),
        "atk_rx_mb": total("bytes_in") / 2**20,
        "atk_refused": total("refused"),
        "atk_dropped": total("dropped"),
        "atk_silent_opened": st.get("silent", {}).get("established", 0),
        "atk_silent_peak": result.get("silent_peak", 0),
        "atk_silent_mean": result.get("silent_mean", 0),
        "atk_login_attempts": login.get("attempts", 0),
        "atk_login_wrong": login.get("wrong password", 0),
        "atk_login_throttled": login.get("throttled", 0),
        "atk_login_busy": login.get("busy", 0),
        "atk_login_accepted": login.get("ACCEPTED a wrong password", 0),
        "attack": result,
    }
    if result.get("wall_s"):
        out["atk_cpu_pct"] = 100 * result.get("cpu_s", 0) / result["wall_s"]
    if result.get("bugs"):
        out["attacker_error"] = f"attacker tasks raised: {result['bugs']}"
    return out


async def under_attack(ctx: Context, p: dict[str, Any]) -> Metrics:
    """Light chat in #general while four attacks run together from other addresses.

    ``clients`` users (``per_address`` per loopback address) sit in #general; ``senders`` of
    them chat at ``rate`` msg/s each. After ``before_s`` seconds the attack process
    (:mod:`bench.attack`) starts NAMES/WHO and LIST spam, silent connections and a login
    storm for ``duration`` seconds, while ``new_logins`` users log in with SASL. Chat
    latency during the attack is compared with before it. chaton runs with its shipped
    limits (CHATON_ATTACK_SETTINGS), since what is measured is how well they protect users.
    """
    server = ctx.server
    if not isinstance(server, ChatonServer):
        raise BenchError("(g) needs chaton: SASL accounts and chaton's limits")
    s = server.loaded_settings()
    flood = s.flood_rate or FALLBACK_FLOOD_RATE
    rate = min(p["rate"], CHAT_SHARE_OF_FLOOD * s.flood_rate) if s.flood_rate else p["rate"]
    n = p["clients"]
    per = max(1, p["per_address"])
    accounts = ctx.login_accounts[: p["new_logins"]]
    out: Metrics = {"clients": n, "chat_msgs_per_s": rate * p["senders"]}
    out["atk_addresses"] = min(p["attackers"], 253)
    if len(accounts) < p["new_logins"]:
        out["logins_error"] = f"only {len(accounts)} of {p['new_logins']} accounts exist"
    cfg = AttackConfig(
        host=ctx.target.host, port=ctx.target.port, duration=p["duration"],
        sources=[f"127.0.0.{2 + k}" for k in range(out["atk_addresses"])],
        channel=ATTACK_ROOM, names_conns=p["names"], list_conns=p["list"],
        junk_rooms=min(p["junk_rooms"], s.max_channels_per_user), silent_max=p["silent"],
        silent_open_rate=p["silent_rate"], login_conns=p["logins"], line_rate=flood,
        pulse=max(1, min(p["pulse"], s.flood_burst)),
        prep_burst=max(1, s.flood_burst - 4), real_accounts=accounts,
        channellen=s.channellen, topiclen=s.topiclen, max_line=s.max_line_bytes - 2,
        step_timeout=min(ctx.step_timeout, 10.0),
    )  # fmt: skip
    ctx.progress(f"starting the attackers ({len(cfg.sources)} addresses, "
                 f"{cfg.sources[0]}-{cfg.sources[-1]})")  # fmt: skip
    out["atk_pulse"] = cfg.pulse
    attack = await AttackProcess.start(cfg, env=server.env(), cwd=REPO)
    rec = Recorder()
    clients: list[IrcClient] = []
    newcomers: list[IrcClient] = []
    try:
        nicks = [f"u{i}" for i in range(n)]
        sources = [loopback(1, k) for k in range(-(-n // per))]
        res = await _connect(ctx, nicks, rec, join=True, channel=ATTACK_ROOM, sources=sources)
        clients = res.clients
        await sync(clients, ctx.step_timeout)
        ready = await attack.event("ready", cfg.prep_timeout + 30)
        if ready is None:  # no attack to measure: the numbers would mean nothing
            raise BenchError(f"the attackers never got ready: {attack.why}")
        ctx.progress(f"attackers ready: {ready['prepared']}/{ready['spammers']} spam "
                     f"connections set up in {ready['prep_s']:.1f}s")  # fmt: skip
        if ready["prepared"] < ready["spammers"]:
            out["attack_prep_error"] = (f"only {ready['prepared']} of {ready['spammers']} "
                                        "spam connections got ready")  # fmt: skip
        stop = asyncio.Event()
        logins: list[asyncio.Task[tuple[str, float, IrcClient]]] = []
        chat = [
            asyncio.create_task(_talk(c, i, rate, stop, rec, n - 1))
            for i, c in enumerate(clients[: p["senders"]])
        ]
        try:
            ctx.progress(f"{len(chat)} senders x {rate:g} msg/s in {ATTACK_ROOM} "
                         f"({n - 1} receivers); attack in {p['before_s']:g}s")  # fmt: skip
            t_before = time.perf_counter_ns()
            a0 = Snapshot.take(server)
            await asyncio.sleep(p["before_s"])
            a = Snapshot.take(server)
            t_go = time.perf_counter_ns()
            if not await attack.go():
                out["attack_error"] = "the attack process is gone"
            ctx.progress(f"attack for {p['duration']:g}s: {cfg.names_conns} NAMES/WHO, "
                         f"{cfg.list_conns} LIST x {cfg.junk_rooms} junk rooms (pulses of "
                         f"{cfg.pulse} lines), "
                         f"{cfg.silent_max} silent, {cfg.login_conns} login guessers; "
                         f"{len(accounts)} normal SASL logins")  # fmt: skip
            spread = p["duration"] * LOGIN_SPREAD / max(1, len(accounts))
            logins = [
                asyncio.create_task(_newcomer(ctx, name, loopback(2, i), spread * (i + 0.5)))
                for i, name in enumerate(accounts)
            ]
            await asyncio.sleep(p["duration"])
            t_end = time.perf_counter_ns()
            b = Snapshot.take(server)
            login_results = await asyncio.gather(*logins)
            result = await attack.event("result", 30.0)
            if result is None:
                out["attack_error"] = attack.why
        finally:
            stop.set()
            for task in logins:
                task.cancel()  # a no-op for finished ones; only an error gets here early
            await asyncio.gather(*chat)
        newcomers = [c for _, _, c in login_results]
        expected = rec.issued
        rec.expect(expected)
        if not await rec.wait(timeout=30.0, stall=min(ctx.stall_timeout, 5.0)):
            ctx.progress(f"deliveries stalled at {rec.count}/{expected}")

        chatters_dropped = sum(c.closed for c in clients)
        refused = sum(o.startswith("refused") for o, _, _ in login_results)
        ok = [t for o, t, _ in login_results if o == "ok"]
        newcomers_dropped = sum(c.closed for o, _, c in login_results if o == "ok")
        in_time = sum(t <= LOGIN_DEADLINE_S for t in ok)
        errors = server_errors(clients + newcomers)
        for o, _, _ in login_results:
            if o != "ok":
                errors[f"newcomer {o}"] = errors.get(f"newcomer {o}", 0) + 1
        out |= {
            "messages": expected // max(1, n - 1),
            **_deliveries(rec, expected),
            **_latency(rec.latencies(t_before, t_go - 1), "before"),
            **_latency(rec.latencies(t_go, t_end), "during"),
            "normal_dropped": chatters_dropped + refused + newcomers_dropped,
            "chatters_dropped": chatters_dropped,
            "logins_attempted": len(login_results),
            "logins_ok": in_time,
            "logins_failed": len(login_results) - in_time,
            "login_max_s": max((t for _, t, _ in login_results), default=0.0),
            **_phase(a0, a, 0, "before_"),
            **_phase(a, b, 0, "during_"),
            "rss_before_mb": a.server.rss_bytes / 2**20,
            "rss_after_mb": b.server.rss_bytes / 2**20,
            "errors": errors,
        }
        if out.get("before_p99_ms") and "during_p99_ms" in out:
            out["during_p99_ratio"] = out["during_p99_ms"] / out["before_p99_ms"]
        if result is not None:
            if result.get("error"):
                out["attack_error"] = result["error"]
            out |= _attack_metrics(result)
        return out
    finally:
        close_all(clients + newcomers)
        await attack.stop()


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
        Scenario(
            "g", "under attack: {clients} users chat while {names} NAMES/WHO + {list} LIST "
            "spammers, {silent} silent conns and {logins} login guessers hit for {duration}s",
            under_attack,
            {"clients": 200, "per_address": 10, "senders": 5, "rate": 3, "before_s": 5,
             "duration": 15, "new_logins": 5, "attackers": 8, "names": 20, "list": 4,
             "junk_rooms": 50, "pulse": 8, "silent": 500, "silent_rate": 100, "logins": 16},
            {"clients": 20, "per_address": 5, "senders": 2, "rate": 3, "before_s": 2,
             "duration": 4, "new_logins": 2, "attackers": 8, "names": 4, "list": 2,
             "junk_rooms": 10, "pulse": 8, "silent": 40, "silent_rate": 50, "logins": 4},
            budget=150, chaton_only=True, chaton_settings=CHATON_ATTACK_SETTINGS,
        ),
    ]
}  # fmt: skip
