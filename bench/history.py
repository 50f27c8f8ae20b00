"""``python -m bench.history``: the message store's targets (issue 14), each beside a
reference measured in the same run.

1. Stored messages/s with group commit: end to end through a real chaton over TLS on
   loopback (senders blasting PRIVMSG, flood control off; rows counted in the server's
   own database file), and in process (:class:`chaton.server.history.History`, and
   :meth:`HistoryStore.append` in batches). Reference: the same rows one transaction per
   message with ``synchronous=NORMAL``, what a naive per-message commit gives.
2. Reads on a big store (pre-filled before the server starts): ``CHATHISTORY LATEST``,
   ``SEARCH`` (once the server offers ``draft/search``) and the replay on JOIN, timed by
   the client over TLS. References: the same requests on a 10,000-message store served
   at the same time (so the ratio is how the cost scales), and a JOIN of an empty room.
3. Bytes per stored message, with the FTS index apart (``dbstat``).

The markdown table goes to stdout, progress to stderr, everything to a JSON file. The exit
status is 1 when a target is missed, a message is lost, or a step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shlex
import shutil
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.history_data import (
    BIG_ROOM,
    EMPTY_ROOM,
    Shape,
    StoreInfo,
    Texts,
    file_sizes,
    generate,
    prefill,
)
from bench.loadgen import (
    BenchError,
    IrcClient,
    Recorder,
    Target,
    close_all,
    connect_many,
    open_client,
    percentile,
    server_errors,
)
from bench.report import write_json
from bench.run import _loop_factory, chaton_revision, machine_info
from bench.servers import (
    ChatonServer,
    ServerError,
    chaton_unavailable,
    parse_setting,
    raise_nofile_limit,
)
from chaton.certs import generate as generate_certs
from chaton.history_store import HistoryStore, NewMessage
from chaton.protocol.message import LINE_TOO_LONG, ProtocolError, parse
from chaton.server.history import History
from chaton.tls import client_context

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
SEARCH_CAP = "draft/search"
#: What a modern client asks for before CHATHISTORY (batch marks the end of an answer).
HISTORY_CAPS = ("draft/chathistory", "batch", "server-time", "message-tags")
TARGET_RATE = 50_000.0  # stored messages/s
TARGET_LATEST_MS = 10.0
TARGET_SEARCH_MS = 50.0
TARGET_REPLAY_MS = 5.0
_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run (``--quick`` or full; ``--rows`` and the knobs override)."""

    rows: int
    ref_rows: int
    inprocess_rows: int  # History and HistoryStore.append
    naive_rows: int  # one transaction per message
    senders: int
    window: int
    write_seconds: float
    rounds: int  # of read requests; each round runs every request kind on both stores
    latest: int  # per store and round
    search: int
    joins: int
    repeats: int  # of the write measurements (medians are reported)


FULL = Sizes(1_000_000, 10_000, 100_000, 10_000, 16, 100, 10.0, 10, 50, 30, 20, 3)
QUICK = Sizes(50_000, 10_000, 20_000, 3_000, 8, 100, 4.0, 3, 30, 15, 10, 1)


# --- results ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measured value beside its target and its reference."""

    metric: str
    value: float | None
    unit: str = ""
    target: str = ""
    reference: float | None = None
    ref_label: str = ""
    passed: bool | None = None  # None: no target (information)
    note: str = ""
    digits: int = 2
    spread: Sequence[float] = ()  # each repeat's value, when the value is their median

    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return self.value / self.reference

    def cells(self) -> list[str]:
        def fmt(v: float | None) -> str:
            if v is None:
                return "—"
            text = f"{v:,.{self.digits}f}"
            return f"{text} {self.unit}".strip()

        value = self.note if self.value is None and self.note else fmt(self.value)
        if len(self.spread) > 1:
            value += f" [{min(self.spread):,.{self.digits}f}-{max(self.spread):,.{self.digits}f}]"
        ref = f"{self.ref_label}: {fmt(self.reference)}" if self.ref_label else ""
        ratio = self.ratio()
        verdict = {None: "", True: "pass", False: "**FAIL**"}[self.passed]
        return [self.metric, value, self.target, ref,
                "" if ratio is None else f"{ratio:.2f}x", verdict]


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| metric | value | target | reference (same run) | ratio | result |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _stats(samples_ns: Sequence[int]) -> dict[str, Any]:
    ordered = sorted(samples_ns)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50_ms": percentile(ordered, 50) / 1e6,
            "p99_ms": percentile(ordered, 99) / 1e6, "max_ms": ordered[-1] / 1e6}


# --- 1. write rates in process ----------------------------------------------------------


def _messages(count: int, seed: int) -> list[NewMessage]:
    """Rows shaped like the big store's (rooms, private pairs, events), times up to now."""
    rng = random.Random(seed)
    return list(generate(count, Shape(), Texts(rng), rng, StoreInfo(), time.time()))


def _fresh_db(workdir: Path, name: str) -> Path:
    folder = workdir / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder / "chaton.db"


def append_rate(path: Path, messages: Sequence[NewMessage], batch: int) -> float:
    """Rows/s of :meth:`HistoryStore.append` with ``batch`` rows per transaction (1: the
    naive per-message commit)."""
    store = HistoryStore(path)
    try:
        t0 = time.perf_counter()
        for i in range(0, len(messages), batch):
            store.append(messages[i : i + batch])
        return len(messages) / (time.perf_counter() - t0)
    finally:
        store.close()


async def group_commit_rate(path: Path, messages: Sequence[NewMessage],
                            per_pass: int = 200) -> dict[str, float]:
    """Rows/s through the server's own group commit: ``per_pass`` rows recorded per loop
    pass, waiting only when it says the disk is behind (as a sender does)."""
    history = History(path, max_pending=20_000)
    try:
        t0 = time.perf_counter()
        for i in range(0, len(messages), per_pass):
            for message in messages[i : i + per_pass]:
                history.record(message)
            if history.backlogged:
                await history.wait()
            else:
                await asyncio.sleep(0)
        await history.wait()
        elapsed = time.perf_counter() - t0
        if history.committed != len(messages):
            raise BenchError(f"History committed {history.committed} of {len(messages)} rows")
        return {"rows_per_s": len(messages) / elapsed, "batches": history.batches,
                "rows_per_batch": history.committed / max(history.batches, 1)}
    finally:
        await asyncio.to_thread(history.close)


# --- 1. write rate end to end -------------------------------------------------------------


class _DbCounter:
    """Reads the server's database file (another process's: WAL lets it read while the
    server writes) for how many rows have been committed."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def max_id(self) -> int:
        rows = self._db.execute("SELECT max(id) FROM messages").fetchall()
        return int(rows[0][0] or 0)

    def messages(self) -> int:
        rows = self._db.execute(
            "SELECT count(*) FROM messages WHERE command = 'PRIVMSG'").fetchall()
        return int(rows[0][0])

    def close(self) -> None:
        self._db.close()


async def _blast(client: IrcClient, target: str, sender: int, texts: Sequence[str],
                 window: int, stop: asyncio.Event, timeout: float, sent: list[int]) -> None:
    """Send ``window`` messages per write until ``stop``, with two PING windows in flight
    (a PONG comes back only once the messages before it are committed)."""
    transport = client.transport
    assert transport is not None
    pings: deque[asyncio.Future[None]] = deque()
    seq = 0
    while not stop.is_set():
        chunk = []
        for _ in range(window):
            chunk.append(f"PRIVMSG {target} :b {sender} {seq} {time.perf_counter_ns()} "
                         f"{texts[seq % len(texts)]}\r\n")
            seq += 1
        transport.write("".join(chunk).encode())
        sent[sender] += window
        pings.append(asyncio.ensure_future(client.ping(timeout)))
        if len(pings) >= 2:
            await pings.popleft()
    for ping in pings:
        await ping


async def end_to_end(server: ChatonServer, target: Target, sizes: Sizes, step_timeout: float,
                     seed: int) -> dict[str, Any]:
    """Senders blast PRIVMSG over TLS: half to a room of their own, half to a partner (who
    receives them); stored rows are counted in the database during the phase."""
    rng = random.Random(seed)
    words = Texts(rng)
    texts = [words.text() for _ in range(1000)]
    n = max(4, sizes.senders // 4 * 4)  # half in rooms, half in pairs
    rooms = n // 2
    recorder = Recorder()

    async def setup(client: IrcClient) -> None:
        await client.register(step_timeout)
        i = int(client.nick[1:])
        if i < rooms:
            await client.join(f"#w{i}", step_timeout)

    res = await connect_many(target, [f"w{i}" for i in range(n)], setup, recorder=recorder,
                             concurrency=8, timeout=step_timeout)
    clients = sorted(res.clients, key=lambda c: int(c.nick[1:]))
    goals = [f"#w{i}" if i < rooms else f"w{rooms + ((i - rooms) ^ 1)}" for i in range(n)]
    counter = _DbCounter(server.data_dir / "chaton.db")
    stop = asyncio.Event()
    sent = [0] * n
    samples: list[tuple[float, int, float]] = []  # (wall, max id, server CPU s)
    try:
        before = counter.max_id()
        tasks = [asyncio.ensure_future(_blast(c, goals[i], i, texts, sizes.window, stop,
                                              step_timeout, sent))
                 for i, c in enumerate(clients)]
        gen0 = time.process_time()
        t0 = time.perf_counter()
        warmup = 1.0
        next_report = t0 + 2.0
        while (now := time.perf_counter()) < t0 + warmup + sizes.write_seconds:
            if any(t.done() for t in tasks):
                break  # a sender failed: its exception is raised below
            await asyncio.sleep(0.25)
            if now >= t0 + warmup:
                samples.append((time.perf_counter(), counter.max_id(), server.sample().cpu_s))
            if now >= next_report and len(samples) > 1:
                next_report = now + 2.0
                (wa, ra, _), (wb, rb, _) = samples[0], samples[-1]
                log(f"end to end: {rb - before:,} rows stored, {(rb - ra) / (wb - wa):,.0f}/s")
        gen_cpu = time.process_time() - gen0
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), step_timeout * 2)
        total = sum(sent)
        peer_sent = sum(sent[rooms:])
        recorder.expect(peer_sent)
        await recorder.wait(timeout=step_timeout, stall=5.0)
        stored = counter.messages()
    finally:
        counter.close()
        close_all(res.clients)
    if len(samples) < 2:
        raise BenchError("the write phase ended before two samples of the database")
    (wa, ra, ca), (wb, rb, cb) = samples[0], samples[-1]
    rate = (rb - ra) / (wb - wa)
    return {
        "senders": n, "room_senders": rooms, "pair_senders": n - rooms,
        "window": sizes.window, "seconds": wb - wa, "rows_per_s": rate,
        "server_cpu_pct": 100 * (cb - ca) / (wb - wa),
        "server_cpu_us_per_row": (cb - ca) * 1e6 / max(rb - ra, 1),
        "gen_cpu_pct": 100 * gen_cpu / (time.perf_counter() - t0),
        "sent": total, "stored": stored, "lost": total - stored,
        "deliveries_expected": peer_sent, "deliveries": recorder.count,
        "deliveries_lost": peer_sent - recorder.count,
        "errors": server_errors(res.clients),
        "samples": [(round(w - wa, 3), r - ra) for w, r, _ in samples],
    }


# --- 2. reads ------------------------------------------------------------------------------


class TimingClient(IrcClient):
    """A client that times requests answered by a batch, and JOINs. Lines inside a batch
    are counted without a parse, so the client's own work stays small beside the server's."""

    def __init__(self, nick: str) -> None:
        super().__init__(nick, None)
        self._now = 0
        self._open: dict[str, str] = {}  # batch reference -> type
        self._counts: Counter[str] = Counter()
        self.joined_ns = 0  # when the last 366 arrived
        self.notices = 0

    def data_received(self, data: bytes) -> None:
        self._now = time.perf_counter_ns()
        for line in self._buf.feed(data):
            if line is LINE_TOO_LONG:
                self.numerics["line-too-long"] += 1
                continue
            assert isinstance(line, bytes)
            if line.startswith(b"@batch="):
                end = line.find(b" ")
                semi = line.find(b";", 0, end)
                self._counts[line[7 : semi if semi > 0 else end].decode()] += 1
                continue
            self._control(line)

    def _control(self, raw: bytes) -> None:
        try:
            msg = parse(raw.decode("utf-8", "replace"))
        except ProtocolError:
            self.numerics["unparsable"] += 1
            return
        if msg.command == "BATCH" and msg.params:
            ref = msg.params[0]
            if ref[:1] == "+":
                self._open[ref[1:]] = msg.param(1)
            elif ref[:1] == "-":
                kind = self._open.pop(ref[1:], "")
                self._resolve("batch:" + kind, (self._now, self._counts.pop(ref[1:], 0)))
            return
        if msg.command == "366":
            self.joined_ns = self._now
        elif msg.command == "NOTICE":
            self.notices += 1
        elif msg.command == "FAIL":
            self._fail_all(BenchError(f"{self.nick}: {' '.join(msg.params)[:200]}"))
        super()._control(raw)

    async def request(self, line: str, kind: str, timeout: float) -> tuple[int, int]:
        """Send ``line``; (ns until the end of the next ``kind`` batch, lines in it)."""
        done = self._want("batch:" + kind)
        t0 = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(line.encode() + b"\r\n")
        end, count = cast(tuple[int, int], await self._await(done, line, timeout))
        return end - t0, count

    async def timed_join(self, room: str, replay: bool, timeout: float) -> tuple[int, int, int]:
        """JOIN ``room`` and PART again: (ns to 366, ns to the end of the replay batch or
        0, lines replayed)."""
        joined = self._want("joined:" + room.lower())
        replayed = self._want("batch:chathistory") if replay else None
        t0 = time.perf_counter_ns()
        self.send("JOIN", room)
        await self._await(joined, f"JOIN {room}", timeout)
        to_names = self.joined_ns - t0
        to_end, count = 0, 0
        if replayed is not None:
            end, count = cast(tuple[int, int],
                              await self._await(replayed, f"replay of {room}", timeout))
            to_end = end - t0
        self.send("PART", room)
        await self.ping(timeout)
        return to_names, to_end, count


@dataclass
class StoreRun:
    """One pre-filled store, its server and what was measured on it."""

    name: str
    rows: int
    server: ChatonServer
    info: StoreInfo = field(default_factory=StoreInfo)
    sizes: dict[str, int] = field(default_factory=dict)
    asker: TimingClient | None = None  # with draft/chathistory, in the big room
    joiner: TimingClient | None = None  # without it (batch only)
    samples: dict[str, list[int]] = field(default_factory=dict)
    rounds: dict[str, list[list[int]]] = field(default_factory=dict)  # the same, per round
    counts: Counter[str] = field(default_factory=Counter)  # answers of an unexpected size
    round: int = 0

    def add(self, kind: str, ns: int) -> None:
        self.samples.setdefault(kind, []).append(ns)
        per_round = self.rounds.setdefault(kind, [])
        while len(per_round) <= self.round:
            per_round.append([])
        per_round[self.round].append(ns)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Percentiles over every sample, and each round's p99 (how steady they were)."""
        out: dict[str, dict[str, Any]] = {}
        for kind, samples in self.samples.items():
            out[kind] = _stats(samples) | {"round_p99_ms": [
                _stats(r).get("p99_ms", 0.0) for r in self.rounds[kind] if r]}
        return out


async def _client(target: Target, nick: str, caps: Sequence[str],
                  timeout: float) -> TimingClient:
    client = TimingClient(nick)
    await open_client(target, client, timeout)
    await client.register_sasl(None, "", timeout, caps=tuple(caps))
    return client


async def _read_round(run: StoreRun, sizes: Sizes, words: list[str], rng: random.Random,
                      span: tuple[float, float], search: bool, timeout: float) -> None:
    asker, joiner = run.asker, run.joiner
    assert asker is not None and joiner is not None
    wanted = min(100, run.info.big_room_messages)
    for _ in range(sizes.latest):
        ns, count = await asker.request(f"CHATHISTORY LATEST {BIG_ROOM} * 100", "chathistory",
                                        timeout)
        run.add("latest", ns)
        if count != wanted:
            run.counts[f"LATEST gave {count} lines, not {wanted}"] += 1
    for _ in range(sizes.latest):
        moment = dt.datetime.fromtimestamp(rng.uniform(*span), dt.UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        ns, _count = await asker.request(f"CHATHISTORY BEFORE {BIG_ROOM} timestamp={stamp} 100",
                                         "chathistory", timeout)
        run.add("before", ns)
    if search:
        for i in range(sizes.search):
            word = words[i % len(words)]
            ns, _count = await asker.request(f"SEARCH text={word};in={BIG_ROOM};limit=50",
                                             "draft/search", timeout)
            run.add("search", ns)
            run.add(f"search:{word}", ns)
    for _ in range(sizes.joins):
        for room, replay in ((BIG_ROOM, True), (EMPTY_ROOM, False)):
            to_names, to_end, count = await joiner.timed_join(room, replay, timeout)
            if replay:
                run.add("join_big_names", to_names)
                run.add("join_big_replay", to_end)
                if count < 1:
                    run.counts["replay on JOIN was empty"] += 1
            else:
                run.add("join_empty", to_names)


async def reads(runs: list[StoreRun], sizes: Sizes, ctx: ssl.SSLContext, timeout: float,
                seed: int) -> dict[str, Any]:
    """Both stores' servers run at once; rounds alternate which is asked first, so a
    neighbour's load hits both alike."""
    rng = random.Random(seed)
    now = time.time()
    span = (now - Shape().days * 86400.0, now - 3600.0)
    for run in runs:
        target = Target(run.server.host, run.server.port, ctx)
        probe = await _client(target, f"probe{run.name}", ("batch",), timeout)
        offered = set(probe.caps)
        probe.quit()
        search = SEARCH_CAP in offered
        caps = [c for c in (*HISTORY_CAPS, SEARCH_CAP) if c in offered]
        if "draft/chathistory" not in caps or "batch" not in caps:
            raise BenchError(f"{run.name}: the server offers no draft/chathistory or batch")
        run.asker = await _client(target, f"ask{run.name}", caps, timeout)
        await run.asker.join(BIG_ROOM, timeout)
        run.joiner = await _client(target, f"join{run.name}", ("batch",), timeout)
    search = all(SEARCH_CAP in (r.asker.caps if r.asker else ()) for r in runs)
    words = list(runs[0].info.word_hits)
    try:
        for rnd in range(sizes.rounds):
            for run in runs if rnd % 2 == 0 else runs[::-1]:
                run.round = rnd
                await _read_round(run, sizes, words, rng, span, search, timeout)
            log(f"reads: round {rnd + 1}/{sizes.rounds} done")
    finally:
        errors = {r.name: server_errors([c for c in (r.asker, r.joiner) if c]) for r in runs}
        close_all([c for r in runs for c in (r.asker, r.joiner) if c])
    return {"search": search, "errors": errors,
            "stats": {r.name: r.stats() for r in runs},
            "odd_answers": {r.name: dict(r.counts) for r in runs}}


# --- the run -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.history",
        description="Measure chaton's message store against issue 14's targets (stored "
        "messages/s with group commit; CHATHISTORY, SEARCH and JOIN replay latency on a big "
        "store; bytes per message), each beside a reference measured in the same run, over "
        "verified TLS on 127.0.0.1. Prints a markdown table; exit status 1 if a target is "
        "missed or anything is lost.",
    )
    add = p.add_argument
    add("--quick", action="store_true",
        help=f"smoke run (~30 s): {QUICK.rows:,} rows in the big store, short phases")
    add("--rows", type=int, metavar="N",
        help=f"messages in the big store (default {FULL.rows:,}; {QUICK.rows:,} with --quick)")
    add("--ref-rows", type=int, metavar="N",
        help=f"messages in the reference store (default {FULL.ref_rows:,})")
    add("--senders", type=int, metavar="N", help="end-to-end senders (default 16; 8 quick)")
    add("--window", type=int, metavar="N", help="messages per write between PINGs (default 100)")
    add("--write-seconds", type=float, metavar="S",
        help="measured seconds of the end-to-end write phase (default 10; 4 quick)")
    add("--rounds", type=int, metavar="N", help="rounds of read requests (default 10; 3 quick)")
    add("--repeats", type=int, metavar="N",
        help="runs of the write measurements; the table shows medians [range] (default 3; "
        "1 quick)")
    add("--skip-writes", action="store_true", help="only the read and size measurements")
    add("--skip-reads", action="store_true", help="only the write rates")
    add("--seed", type=int, default=14, help="seed of the synthetic stores (default 14)")
    add("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="extra chaton setting for every server, e.g. --set history_max_pending=50000")
    add("--chaton-arg", dest="chaton_args", action="append", default=[], metavar="ARG",
        help="extra argument for 'chaton serve'")
    add("--profile", type=Path, metavar="DIR",
        help="run each chaton under cProfile, writing DIR/history-<server>.prof for the "
        "servers write (its last repeat), big and ref (slower: for finding where the time "
        "goes, not for the table)")
    add("--step-timeout", type=float, default=30.0, metavar="S",
        help="deadline of one request, JOIN or PING round trip (default 30)")
    add("--json", type=Path, metavar="PATH",
        help="results file (default bench/results/history.json; history-quick.json)")
    add("--workdir", type=Path, metavar="DIR",
        help="keep databases, configs and logs here (default: a temporary directory)")
    return p


def _sizes(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    values = asdict(base)
    for key in ("rows", "ref_rows", "senders", "window", "write_seconds", "rounds", "repeats"):
        value = getattr(args, key)
        if value is not None:
            if value <= 0:
                raise SystemExit(f"python -m bench.history: --{key.replace('_', '-')} must be "
                                 "> 0")
            values[key] = value
    return Sizes(**values)


def _server(workdir: Path, certs: Path, name: str, args: argparse.Namespace,
            overrides: dict[str, Any]) -> ChatonServer:
    server = ChatonServer(workdir / name, certs, name=name, data_dir=workdir / name / "data",
                          settings={"history": True, **overrides},
                          extra_args=list(args.chaton_args))
    if args.profile is not None:
        server.profile_path = args.profile.resolve() / f"history-{name}.prof"
    return server


async def _with_server(server: ChatonServer, ctx: ssl.SSLContext,
                       work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    server.check_config()
    await server.start(ctx, timeout=120.0)
    try:
        result = await work()
        if server.proc is None or server.proc.poll() is not None:
            raise BenchError(f"{server.name} died during the run")
        return result
    except BenchError as exc:
        raise BenchError(f"{exc}\n{server.log_tail(8)}") from None
    finally:
        server.stop()


async def _write_once(args: argparse.Namespace, sizes: Sizes, workdir: Path, certs: Path,
                      ctx: ssl.SSLContext, overrides: dict[str, Any],
                      rows: list[NewMessage]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"in process: History group commit, {sizes.inprocess_rows:,} rows")
    out["group"] = await group_commit_rate(_fresh_db(workdir, "w-group"),
                                           rows[: sizes.inprocess_rows])
    log(f"  {out['group']['rows_per_s']:,.0f} rows/s, "
        f"{out['group']['rows_per_batch']:,.0f} rows per commit")
    out["append_1000"] = await asyncio.to_thread(
        append_rate, _fresh_db(workdir, "w-append"), rows[: sizes.inprocess_rows], 1000)
    log(f"in process: HistoryStore.append x1000: {out['append_1000']:,.0f} rows/s")
    out["naive"] = await asyncio.to_thread(
        append_rate, _fresh_db(workdir, "w-naive"), rows[: sizes.naive_rows], 1)
    log(f"reference: one transaction per message: {out['naive']:,.0f} rows/s")

    server = _server(workdir, certs, "write", args, overrides)
    shutil.rmtree(server.data_dir, ignore_errors=True)  # every repeat starts empty
    log(f"end to end: {sizes.senders} senders x {sizes.write_seconds:g} s over TLS")
    out["e2e"] = await _with_server(server, ctx, lambda: end_to_end(  # the port is known now
        server, Target(server.host, server.port, ctx), sizes, args.step_timeout, args.seed))
    e2e = out["e2e"]
    log(f"  {e2e['rows_per_s']:,.0f} rows/s stored; {e2e['stored']:,}/{e2e['sent']:,} sent "
        f"stored; server CPU {e2e['server_cpu_pct']:.0f}%, generator {e2e['gen_cpu_pct']:.0f}%")
    return out


async def _writes(args: argparse.Namespace, sizes: Sizes, workdir: Path, certs: Path,
                  ctx: ssl.SSLContext, overrides: dict[str, Any]) -> dict[str, Any]:
    """The write rates ``repeats`` times; medians (losses: the worst repeat)."""
    rows = _messages(max(sizes.inprocess_rows, sizes.naive_rows), args.seed)
    runs = []
    for rep in range(sizes.repeats):
        log(f"writes: repeat {rep + 1}/{sizes.repeats}")
        runs.append(await _write_once(args, sizes, workdir, certs, ctx, overrides, rows))
    worst = ("lost", "deliveries_lost")
    e2e = {k: (max if k in worst else statistics.median)(r["e2e"][k] for r in runs)
           for k, v in runs[0]["e2e"].items() if isinstance(v, int | float)}
    return {
        "repeats": runs,
        "e2e": e2e,
        "group": {k: statistics.median(r["group"][k] for r in runs) for k in runs[0]["group"]},
        "append_1000": statistics.median(r["append_1000"] for r in runs),
        "naive": statistics.median(r["naive"] for r in runs),
        "spread": {
            "e2e": [r["e2e"]["rows_per_s"] for r in runs],
            "group": [r["group"]["rows_per_s"] for r in runs],
            "append_1000": [r["append_1000"] for r in runs],
            "naive": [r["naive"] for r in runs],
            "cpu": [r["e2e"]["server_cpu_us_per_row"] for r in runs],
        },
    }


async def _reads(args: argparse.Namespace, sizes: Sizes, workdir: Path, certs: Path,
                 ctx: ssl.SSLContext, overrides: dict[str, Any]) -> dict[str, Any]:
    runs = [StoreRun(f"{sizes.rows // 1000}k", sizes.rows,
                     _server(workdir, certs, "big", args, overrides)),
            StoreRun(f"{sizes.ref_rows // 1000}k", sizes.ref_rows,
                     _server(workdir, certs, "ref", args, overrides))]
    for run in runs:
        db = run.server.data_dir / "chaton.db"
        shutil.rmtree(run.server.data_dir, ignore_errors=True)
        run.server.data_dir.mkdir(parents=True)
        log(f"pre-filling the {run.name} store ({run.rows:,} rows)")
        run.info = await asyncio.to_thread(prefill, db, run.rows, Shape(), args.seed, log,
                                           f"the {run.name} store")
        log(f"  {run.info.rows_per_s:,.0f} rows/s; sizes (dbstat)")
        run.sizes = await asyncio.to_thread(file_sizes, db)
    out: dict[str, Any] = {
        "stores": {r.name: {"rows": r.rows, "info": asdict(r.info), "sizes": r.sizes}
                   for r in runs},
    }
    started: list[ChatonServer] = []
    try:
        for run in runs:
            run.server.check_config()
            await run.server.start(ctx, timeout=120.0)
            started.append(run.server)
        out |= await reads(runs, sizes, ctx, args.step_timeout, args.seed)
        for run in runs:
            if run.server.proc is None or run.server.proc.poll() is not None:
                raise BenchError(f"{run.server.name} died during the run")
    finally:
        for server in started:
            server.stop()
    out["names"] = [r.name for r in runs]
    return out


def _rows(data: dict[str, Any]) -> list[Row]:
    """The table, from the measurements."""
    rows: list[Row] = []
    w = data.get("writes")
    rate_target = f"≥ {TARGET_RATE:,.0f}/s"
    if w:
        naive = w["naive"]
        e2e = w["e2e"]
        rows += [
            Row(f"stored msgs/s end to end ({e2e['senders']} senders over TLS, half to own "
                "room, half to a peer)", e2e["rows_per_s"], "/s", rate_target, naive,
                "one commit per message", e2e["rows_per_s"] >= TARGET_RATE, digits=0,
                spread=w["spread"]["e2e"]),
            Row("stored msgs/s in process, History group commit "
                f"({w['group']['rows_per_batch']:,.0f} rows/commit)", w["group"]["rows_per_s"],
                "/s", rate_target, naive, "one commit per message",
                w["group"]["rows_per_s"] >= TARGET_RATE, digits=0, spread=w["spread"]["group"]),
            Row("stored msgs/s in process, HistoryStore.append x1000", w["append_1000"], "/s",
                "", naive, "one commit per message", digits=0,
                spread=w["spread"]["append_1000"]),
            Row("stored msgs/s, one transaction per message (synchronous=NORMAL): the "
                "reference", naive, "/s", digits=0, spread=w["spread"]["naive"]),
            Row("messages lost end to end (sent - stored, and peer deliveries)",
                e2e["lost"] + e2e["deliveries_lost"], "", "0", passed=(
                    e2e["lost"] == 0 and e2e["deliveries_lost"] == 0), digits=0,
                note=""),
            Row("server CPU µs per stored message (end to end)", e2e["server_cpu_us_per_row"],
                "µs", "", digits=1, spread=w["spread"]["cpu"]),
            Row(f"server CPU % of the phase (the generator's: {e2e['gen_cpu_pct']:.0f} %)",
                e2e["server_cpu_pct"], "%", digits=0),
        ]
    r = data.get("reads")
    if r:
        big, ref = r["names"]
        stats = r["stats"]

        def lat(kind: str, what: str, name: str) -> float | None:
            value = stats[name].get(kind, {}).get(what)
            return None if value is None else float(value)

        def rounds(kind: str) -> list[float]:
            return [float(v) for v in stats[big].get(kind, {}).get("round_p99_ms", [])]

        for what, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
            value = lat("latest", what, big)
            rows.append(Row(f"CHATHISTORY LATEST {BIG_ROOM} * 100, {label} ({big} store)",
                            value, "ms", f"< {TARGET_LATEST_MS:g} ms" if label == "p99" else "",
                            lat("latest", what, ref), f"{ref} store",
                            None if label != "p99" or value is None
                            else value < TARGET_LATEST_MS,
                            spread=rounds("latest") if label == "p99" else ()))
        rows.append(Row(f"CHATHISTORY BEFORE {BIG_ROOM} timestamp=<random> 100, p99", lat(
            "before", "p99_ms", big), "ms", "", lat("before", "p99_ms", ref), f"{ref} store",
            spread=rounds("before")))
        if r["search"]:
            for what, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
                value = lat("search", what, big)
                rows.append(Row(f"SEARCH in={BIG_ROOM} limit=50, {label} (common, medium and "
                                "rare words)", value, "ms",
                                f"< {TARGET_SEARCH_MS:g} ms" if label == "p99" else "",
                                lat("search", what, ref), f"{ref} store",
                                None if label != "p99" or value is None
                                else value < TARGET_SEARCH_MS,
                                spread=rounds("search") if label == "p99" else ()))
            info = r["stores"][big]["info"]
            for kind, word in info["words"].items():
                rows.append(Row(f"… SEARCH p99, {kind} word ({info['word_hits'][word]:,} of "
                                f"{info['big_room_messages']:,} messages)",
                                lat(f"search:{word}", "p99_ms", big), "ms", "",
                                lat(f"search:{word}", "p99_ms", ref), f"{ref} store"))
        else:
            rows.append(Row("SEARCH p99", None, target=f"< {TARGET_SEARCH_MS:g} ms",
                            note="not measured: no SEARCH yet (no draft/search cap)"))
        join_big = lat("join_big_replay", "p99_ms", big)
        join_empty = lat("join_empty", "p99_ms", big)
        rows.append(Row(f"JOIN {BIG_ROOM} to end of replay (50 lines), p99", join_big, "ms", "",
                        join_empty, "JOIN of an empty room", spread=rounds("join_big_replay")))
        added = None if join_big is None or join_empty is None else join_big - join_empty
        ref_big, ref_empty = lat("join_big_replay", "p99_ms", ref), lat("join_empty", "p99_ms", ref)
        rows.append(Row("replay adds to JOIN, p99 (difference of the two above)", added, "ms",
                        f"< {TARGET_REPLAY_MS:g} ms",
                        None if ref_big is None or ref_empty is None else ref_big - ref_empty,
                        f"{ref} store", None if added is None else added < TARGET_REPLAY_MS))
        for name in (big, ref):
            store = r["stores"][name]
            sizes, count = store["sizes"], max(store["rows"], 1)
            note = f"{sizes['file'] / 1e6:,.0f} MB / {store['rows']:,} rows"
            rows.append(Row(f"bytes per stored message ({name} store; {note})",
                            sizes["file"] / count, "B", digits=0,
                            reference=(sizes["file"] - sizes["fts"]) / count if "fts" in sizes
                            else None, ref_label="without the FTS index" if "fts" in sizes
                            else ""))
            if name == big and "fts" in sizes:
                for part, label in (("messages", "the messages table"),
                                    ("indexes", "its 4 indexes"), ("fts", "the FTS index")):
                    rows.append(Row(f"… of which {label} ({name} store)", sizes[part] / count,
                                    "B", digits=0))
        rows.append(Row(f"pre-fill with HistoryStore.append x20000 ({big} store)",
                        r["stores"][big]["info"]["rows"] / max(
                            r["stores"][big]["info"]["seconds"], 1e-9), "rows/s", digits=0))
    return rows


async def _main(args: argparse.Namespace) -> int:
    sizes = _sizes(args)
    overrides = dict(parse_setting(s) for s in args.settings)
    raise_nofile_limit()
    if why := chaton_unavailable():
        log(f"cannot start chaton: {why}")
        return 2
    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="chaton-history-")) if temp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"sizes": asdict(sizes), "errors": []}
    try:
        certs = workdir / "certs"
        generate_certs(certs, extra_hosts=["localhost", "127.0.0.1"], force=True)
        ctx = client_context(certs / "ca.pem")
        phases: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = []
        if not args.skip_writes:
            phases.append(("writes", lambda: _writes(args, sizes, workdir, certs, ctx,
                                                     overrides)))
        if not args.skip_reads:
            phases.append(("reads", lambda: _reads(args, sizes, workdir, certs, ctx,
                                                   overrides)))
        for name, phase in phases:
            try:
                data[name] = await phase()
            except (BenchError, ServerError, OSError, sqlite3.Error) as exc:
                log(f"{name} FAILED: {exc}")
                data["errors"].append(f"{name}: {str(exc).splitlines()[0][:300]}")
    finally:
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = _rows(data)
    info = machine_info()
    command = " ".join(["python -m bench.history", shlex.join(sys.argv[1:])]).strip()
    header = [
        f"`{command}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, chaton commit "
        f"{chaton_revision()}",
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory']}, "
        f"{info['kernel']}; Python {info['python']}, SQLite {sqlite3.sqlite_version}, "
        f"{info['openssl']}.",
        *(f"- error: {e}" for e in data["errors"]),
        "",
    ]
    table = markdown(rows) + (
        "\n[a-b]: the range over repeats (write rates: the value is their median) or of each "
        "round's p99 (latencies: the value is over all samples).\n")
    print("\n".join(header) + table)
    failed = [r.metric for r in rows if r.passed is False]
    data |= {"command": command, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "machine": info, "sqlite": sqlite3.sqlite_version,
             "rows": [asdict(r) | {"ratio": r.ratio()} for r in rows], "failed": failed,
             "markdown": "\n".join(header) + table}
    write_json(args.json, data)
    log(f"results written to {args.json}")
    if failed:
        log("targets missed: " + "; ".join(failed))
    return 1 if failed or data["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.json is None:
        args.json = RESULTS / ("history-quick.json" if args.quick else "history.json")
    factory, _name = _loop_factory("auto")
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
