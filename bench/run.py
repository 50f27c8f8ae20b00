"""``python -m bench``: run the scenarios against chaton and ngircd, print medians and ratios.

Every (repeat, scenario, server) gets a freshly started server; repeats are interleaved
(repeat 1 of every scenario on every server, then repeat 2, ...) so a drift in the machine
affects both servers alike. Progress goes to stderr, the markdown tables to stdout, and
everything (per-run numbers too) to a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen import WS_SUBPROTOCOL, BenchError, Target
from bench.report import (
    IRCV3,
    NO_HISTORY,
    WEBSOCKET,
    aggregate,
    default_ratios,
    markdown,
    write_json,
)
from bench.scenarios import IRCV3_CAPS, SCENARIOS, Context
from bench.servers import (
    CHATON_BENCH_SETTINGS,
    ChatonServer,
    NgircdServer,
    Server,
    ServerError,
    chaton_unavailable,
    create_chaton_accounts,
    create_chaton_accounts_cli,
    export_revision,
    ngircd_install_hint,
    parse_setting,
    raise_nofile_limit,
)
from chaton.certs import generate
from chaton.tls import client_context

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
#: Clients in the fan-out room when chaton+ws is measured (issue 15: "200 WebSocket clients
#: in the fan-out scenario"); every server of the run gets the same, so ratios pair up.
WS_FANOUT_CLIENTS = 200
_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load-test chaton (and ngircd, when installed) over verified TLS on "
        "127.0.0.1 and print a markdown table of medians and chaton/ngircd ratios.",
        epilog="Scenarios: " + "; ".join(f"{k}) {s.describe(False)}" for k, s in SCENARIOS.items()),
    )
    add = p.add_argument
    # fmt: off
    add("--quick", action="store_true", help="smoke test: small N, one repeat")
    add("--scenarios", default="abcdef", metavar="KEYS",
        help="which scenarios, e.g. 'ad' or 'a,d' (default: abcdef; (g), under attack, "
        "runs only when asked for: --scenarios g)")
    add("--repeats", type=int, metavar="N", help="runs per scenario (default 3; 1 with --quick)")
    add("--servers", default="chaton,ngircd", metavar="LIST",
        help="comma-separated: chaton, ngircd, chaton@REV (chaton at an older git revision, "
        "see --baseline), chaton+ircv3 (this checkout, clients negotiating IRCv3 tags), "
        "chaton+ws (this checkout, clients speaking IRC over WebSocket; (a) and (b) then run "
        f"with {WS_FANOUT_CLIENTS} clients unless --fanout-clients says otherwise), "
        "chaton-history (this checkout with history = false: the ratio chaton/chaton-history "
        "is what the message store costs) (default: chaton,ngircd)")
    add("--baseline", action="append", default=[], metavar="REV",
        help="also measure chaton at git revision REV (commit, tag or branch of this "
        "repository) as the server chaton@<commit>, in the same run: REV is exported with "
        "'git archive' under the workdir and served from there (PYTHONPATH = that tree) with "
        "the settings chaton gets; settings and --chaton-arg options that REV does not know "
        "are dropped for it, and the output says which. Repeats interleave it with the other "
        "servers (the order alternates between repeats) and the table gains a "
        "chaton/chaton@<commit> ratio column, plus a run-by-run spread table. The export is "
        "removed at the end. Same as adding chaton@REV to --servers; may be repeated")
    add("--ngircd", default="ngircd", metavar="PATH", help="ngircd binary (default: ngircd)")
    add("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="extra chaton setting (TOML value), e.g. --set sendq_bytes=4194304")
    add("--chaton-arg", dest="chaton_args", action="append", default=[], metavar="ARG",
        help="extra argument for 'chaton serve', e.g. --chaton-arg=--event-loop=asyncio")
    add("--fanout-clients", type=int, metavar="N",
        help="clients in the room of (a) and (b) (default 200 and 1000; with chaton+ws "
        f"among the servers both use {WS_FANOUT_CLIENTS}, issue 15's WebSocket target)")
    add("--concurrency", type=int, default=8, metavar="N",
        help="connections set up at once (default 8: ngircd listens with a backlog of 10; "
        "more in flight overflows it and costs 1 s SYN retransmits)")
    add("--window", type=int, default=50, metavar="N",
        help="messages per sender between PING round trips (default 50)")
    add("--max-in-flight", type=int, default=0, metavar="N",
        help="also hold senders while receivers lag more than N deliveries behind (default 0: "
        "only the PING window; a cap trades server-side batching for lower queueing latency)")
    add("--step-timeout", type=float, default=30.0, metavar="S",
        help="deadline of one registration, JOIN or PING (default 30)")
    add("--stall-timeout", type=float, default=10.0, metavar="S",
        help="end a delivery phase after S seconds without progress (default 10)")
    add("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="the generator's event loop (default auto: uvloop when installed)")
    add("--profile", type=Path, metavar="DIR",
        help="run every chaton server (chaton@REV too) under cProfile and write "
        "DIR/<server>-<scenario>-<repeat>.prof for each run (read with 'python -m pstats'); "
        "profiling slows the server, so use it to see where the time goes, not for the table")
    add("--json", type=Path, metavar="PATH",
        help="results file (default: bench/results/latest.json, or quick.json with --quick)")
    add("--report", type=Path, metavar="JSON",
        help="run nothing: print the tables of a saved results file again")
    add("--workdir", type=Path, metavar="DIR",
        help="keep configs, certificates and server logs here (default: a temporary "
        "directory, removed afterwards)")
    g = p.add_argument_group("scenario (g), under attack (defaults: full size; --quick smaller)")
    g.add_argument("--attack-duration", type=float, metavar="S",
                   help="seconds the attacks run together (default 15)")
    g.add_argument("--attack-addresses", type=int, metavar="N",
                   help="attacker source addresses 127.0.0.2.. (default 8: up to 127.0.0.9)")
    g.add_argument("--attack-names", type=int, metavar="N",
                   help="NAMES/WHO spam connections (default 20)")
    g.add_argument("--attack-list", type=int, metavar="N",
                   help="LIST connections, each in 50 junk rooms with long topics (default 4)")
    g.add_argument("--attack-pulse", type=int, metavar="N",
                   help="spam lines each connection sends at once, every N/flood_rate s, all "
                   "connections together (default 8; 1 = steady, out of step)")
    g.add_argument("--attack-silent", type=int, metavar="N",
                   help="silent connections held at most (default 500; capped by the fd limit)")
    g.add_argument("--attack-logins", type=int, metavar="N",
                   help="connections guessing SASL passwords (default 16)")
    # fmt: on
    return p


#: Per scenario, which parameter each --attack-* (or other) option sets.
KNOBS = {
    "a": {"clients": "fanout_clients"},
    "b": {"clients": "fanout_clients"},
    "g": {"duration": "attack_duration", "attackers": "attack_addresses", "names": "attack_names",
          "list": "attack_list", "pulse": "attack_pulse", "silent": "attack_silent",
          "logins": "attack_logins"},
}  # fmt: skip


def scenario_params(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """The scenario's parameters (full or --quick) with any command-line knobs applied."""
    params = dict(SCENARIOS[key].params(args.quick))
    for param, option in KNOBS.get(key, {}).items():
        value = getattr(args, option, None)
        if value is not None:
            if value < 0 or (param in ("duration", "attackers", "pulse") and value <= 0):
                raise SystemExit(f"python -m bench: --{option.replace('_', '-')} must be > 0")
            params[param] = value
    return params


def _scenario_keys(text: str) -> list[str]:
    keys = list(text.replace(",", "").replace(" ", "").lower())
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown or not keys:
        raise SystemExit(f"python -m bench: unknown scenario(s) {unknown}; choose from "
                         + "".join(SCENARIOS))  # fmt: skip
    return list(dict.fromkeys(keys))


def _server_specs(text: str, baselines: list[str]) -> tuple[list[str], list[str]]:
    """(``chaton``/``ngircd`` wanted, git revisions of chaton wanted) from --servers and
    --baseline."""
    wanted, revisions = [], []
    for spec in [s.strip() for s in text.split(",") if s.strip()] + [
        f"chaton@{b.strip()}" for b in baselines if b.strip()
    ]:
        name, at, rev = spec.partition("@")
        if name.lower() == "chaton" and at and rev:
            revisions.append(rev)
        elif not at and spec.lower() in ("chaton", "ngircd", IRCV3, NO_HISTORY, WEBSOCKET):
            wanted.append(spec.lower())
        else:
            raise SystemExit(f"python -m bench: unknown server {spec!r}; use chaton, ngircd, "
                             f"{IRCV3}, {WEBSOCKET}, {NO_HISTORY} or chaton@REV")  # fmt: skip
    return list(dict.fromkeys(wanted)), list(dict.fromkeys(revisions))


def _revision_server(
    rev: str, workdir: Path, certs: Path, overrides: dict[str, Any], chaton_args: list[str]
) -> ChatonServer:
    """chaton at git revision ``rev``, exported under ``workdir/revisions``."""
    commit, short, tree = export_revision(rev, workdir / "revisions")
    name = f"chaton@{short}"
    return ChatonServer(
        workdir / name, certs, name=name, data_dir=workdir / name / "data",
        settings=dict(overrides), extra_args=list(chaton_args), root=tree, revision=short,
        commit=commit,
    )  # fmt: skip


def _loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The generator's event loop: uvloop if asked for or available, else asyncio's."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("python -m bench: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop, f"uvloop {getattr(uvloop, '__version__', '?')}"
    return None, "asyncio"


def chaton_revision() -> str:
    """The repository's commit and the last that changed chaton/, with ``+dirty`` if chaton/
    has uncommitted changes."""
    root = str(Path(__file__).resolve().parent.parent)
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "chaton"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        code = subprocess.run(
            ["git", "-C", root, "log", "-1", "--format=%h", "HEAD", "--", "chaton"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # HEAD may be a bench-only commit: also name the last one that changed the server.
    same = not code or code == rev
    return (rev or "unknown") + ("" if same else f" (chaton/ as of {code})") + (
        "+dirty" if dirty else ""
    )


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    mem = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
    }


def _summary(m: dict[str, Any]) -> str:
    parts = []
    if "expected" in m:
        parts.append(f"{m['received']:,}/{m['expected']:,} delivered")
    if "deliveries_per_s" in m:
        parts.append(f"{m['deliveries_per_s']:,.0f}/s")
    if "server_cpu_us_per_delivery" in m:
        parts.append(f"server {m['server_cpu_us_per_delivery']:.2f} µs/delivery")
    if "lat_p99_ms" in m:
        parts.append(f"p99 {m['lat_p99_ms']:.2f} ms")
    if "rss_per_conn_kb" in m:
        parts.append(f"{m['rss_per_conn_kb']:.1f} KiB/conn")
    if "reg_per_s" in m:
        parts.append(f"setup {m['reg_per_s']:,.0f}/s")
    if "storm_p99_ratio" in m:
        parts.append(f"storm p99 {m['storm_p99_ms']:.2f} ms ({m['storm_p99_ratio']:.2f}x)")
    if "during_p99_ratio" in m:
        parts.append(f"attack p99 {m['during_p99_ms']:.2f} ms ({m['during_p99_ratio']:.2f}x)")
    if "normal_dropped" in m:
        parts.append(f"{m['normal_dropped']} normal users refused/dropped, logins "
                     f"{m['logins_ok']}/{m['logins_attempted']} ok ≤ 5 s")  # fmt: skip
    if "plain_reg_per_s" in m:
        parts.append(f"plain reg {m['plain_reg_per_s']:,.0f}/s")
    if "gen_cpu_pct" in m:
        parts.append(f"cpu server {m['server_cpu_pct']:.0f}% gen {m['gen_cpu_pct']:.0f}%")
    return ", ".join(parts)


async def _run_one(
    server: Server, key: str, args: argparse.Namespace, ctx_ssl: ssl.SSLContext,
    ws_ssl: ssl.SSLContext, label: str, accounts: list[str], password: str,
    login_accounts: list[str],
) -> dict[str, Any]:  # fmt: skip
    scenario = SCENARIOS[key]
    record: dict[str, Any] = {"scenario": key, "server": server.name}
    params = scenario_params(key, args)
    budget = (90.0 if args.quick else scenario.budget) + params.get("duration", 0)
    if isinstance(server, ChatonServer):
        server.base = dict(scenario.chaton_settings or CHATON_BENCH_SETTINGS)

    def progress(msg: str) -> None:
        log(f"{label}: {msg}")

    try:
        async with asyncio.timeout(budget):
            await server.start(ctx_ssl)
            ctx = Context(
                server=server,
                target=client_target(server, ctx_ssl, ws_ssl),
                concurrency=args.concurrency,
                window=args.window,
                max_in_flight=args.max_in_flight,
                step_timeout=args.step_timeout,
                stall_timeout=args.stall_timeout,
                progress=progress,
                accounts=accounts,
                password=password,
                login_accounts=login_accounts,
                ircv3=isinstance(server, ChatonServer) and server.ircv3,
            )
            record["metrics"] = await scenario.run(ctx, params)
        progress("done: " + _summary(record["metrics"]))
    except TimeoutError:
        record["error"] = f"scenario exceeded its {budget:g}s budget"
    except (BenchError, ServerError, OSError) as exc:
        record["error"] = str(exc).splitlines()[0][:300]
    finally:
        alive = server.proc is not None and server.proc.poll() is None
        if server.proc is not None and not alive and "error" not in record:
            record["error"] = f"{server.name} died during the run"
        server.stop()
    if "error" in record:
        progress(f"FAILED: {record['error']}\n{server.log_tail(8)}")
    return record


def client_target(server: Server, tls: ssl.SSLContext, ws_tls: ssl.SSLContext) -> Target:
    """Where the generator's clients connect: raw TLS lines, or (``chaton+ws``) WebSocket
    inside TLS with ALPN ``http/1.1``, as a browser offers (chaton then goes straight to
    HTTP, without sniffing the first bytes)."""
    if isinstance(server, ChatonServer) and server.websocket:
        return Target(server.host, server.port, ws_tls, websocket=True)
    return Target(server.host, server.port, tls)


async def _main(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so every server started is stopped.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    keys = _scenario_keys(args.scenarios)
    repeats = args.repeats or (1 if args.quick else 3)
    wanted, revisions = _server_specs(args.servers, args.baseline)
    fanout_note = ""
    if WEBSOCKET in wanted and args.fanout_clients is None and not args.quick:
        args.fanout_clients = WS_FANOUT_CLIENTS
        if "b" in keys:
            fanout_note = (f"(b) runs with {WS_FANOUT_CLIENTS} clients (not 1000) on every "
                           f"server, because {WEBSOCKET} is measured (issue 15's target); "
                           "--fanout-clients N to change.")  # fmt: skip
    overrides = dict(parse_setting(s) for s in args.settings)
    nofile = raise_nofile_limit()
    params = {k: scenario_params(k, args) for k in keys}
    most = max(
        params[k].get("clients", 0) + params[k].get("pairs", 0) * 2
        + params[k].get("plain_regs", 0) + params[k].get("logins", 0)
        + params[k].get("silent", 0)  # (g): the attack process's, under the same limit
        for k in keys
    )  # fmt: skip
    if args.fanout_clients is not None and args.fanout_clients < 2:
        raise SystemExit("python -m bench: --fanout-clients must be at least 2")
    if nofile < most + 100:
        log(f"warning: open-file limit {nofile} is below the {most + 100} this run needs")

    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="chaton-bench-")) if temp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    notes: list[str] = []
    try:
        certs = workdir / "certs"
        generate(certs, extra_hosts=["localhost", "127.0.0.1"], force=True)
        ctx_ssl = client_context(certs / "ca.pem")
        ws_ssl = client_context(certs / "ca.pem")
        ws_ssl.set_alpn_protocols(["http/1.1"])
        if fanout_note:
            notes.append(fanout_note)
            log(fanout_note)

        if "chaton" in wanted:
            why = chaton_unavailable()
            if why:
                notes.append(f"chaton could not be started (python -m chaton serve: {why}).")
                log("skipping chaton: " + notes[-1])
            else:
                servers.append(ChatonServer(
                    workdir / "chaton", certs, data_dir=workdir / "chaton" / "data",
                    settings=overrides, extra_args=list(args.chaton_args),
                ))  # fmt: skip
        if IRCV3 in wanted and not chaton_unavailable():
            servers.append(ChatonServer(
                workdir / IRCV3, certs, name=IRCV3, data_dir=workdir / IRCV3 / "data",
                settings=overrides, extra_args=list(args.chaton_args), ircv3=True,
            ))  # fmt: skip
        if WEBSOCKET in wanted and not chaton_unavailable():
            servers.append(ChatonServer(
                workdir / WEBSOCKET, certs, name=WEBSOCKET, data_dir=workdir / WEBSOCKET / "data",
                settings=overrides, extra_args=list(args.chaton_args), websocket=True,
            ))  # fmt: skip
        if NO_HISTORY in wanted and not chaton_unavailable():
            servers.append(ChatonServer(
                workdir / NO_HISTORY, certs, name=NO_HISTORY,
                data_dir=workdir / NO_HISTORY / "data",
                settings={**overrides, "history": False}, extra_args=list(args.chaton_args),
            ))  # fmt: skip
        for rev in revisions:
            try:
                old = _revision_server(rev, workdir, certs, overrides, args.chaton_args)
            except ServerError as exc:
                log(f"cannot measure chaton@{rev}: {exc}")
                return 2
            if any(s.name == old.name for s in servers):
                continue  # the same commit named twice
            log(f"{old.name}: commit {old.commit} exported to {old.root}")
            for note in old.probe():
                notes.append(note + ".")
                log(note)
            if why := chaton_unavailable(old):
                log(f"cannot measure {old.name}: python -m chaton serve: {why}")
                return 2
            servers.append(old)
        if "ngircd" in wanted:
            binary = shutil.which(args.ngircd)
            if binary is None:
                notes.append(ngircd_install_hint())
                log(notes[-1])
            else:
                servers.append(NgircdServer(workdir / "ngircd", certs, binary=binary))
        if not servers:
            log("no server to measure")
            return 2

        accounts: list[str] = []
        password = ""
        chatons = [s for s in servers if isinstance(s, ChatonServer)]
        for chaton in chatons:
            try:
                chaton.check_config()
            except ServerError as exc:
                log(str(exc))
                return 2
        ircv3_senders = [s for s in chatons if s.ircv3]
        if chatons and ("f" in keys or "g" in keys or ircv3_senders):
            password = secrets.token_urlsafe(18)
        if chatons and "f" in keys:
            n = params["f"]["logins"]
            accounts = [f"storm{i}" for i in range(n)]
            for chaton in chatons:
                log(f"creating {n} SASL accounts in {chaton.name}'s database (default argon2 "
                    "settings)")  # fmt: skip
                create_chaton_accounts(chaton, accounts, password)
        fanout_senders = max((params[k].get("senders", 0) for k in keys if k in "ab"),
                             default=0)
        sender_accounts = [f"f{i}" for i in range(fanout_senders)] + (["l0"] if "e" in keys
                                                                       else [])
        for chaton in ircv3_senders:  # its senders log in, so account-tag has something to say
            log(f"creating {len(sender_accounts)} sender accounts in {chaton.name}'s database")
            create_chaton_accounts(chaton, sender_accounts, password)
        login_accounts: list[str] = []
        if chatons and "g" in keys:
            wanted_names = [f"newbie{i}" for i in range(params["g"]["new_logins"])]
            unusable: set[str] = set()
            for chaton in chatons:
                log(f"creating {len(wanted_names)} accounts for (g) in {chaton.name} with "
                    "'python -m chaton account add --password-stdin'")  # fmt: skip
                chaton.base = dict(SCENARIOS["g"].chaton_settings or CHATON_BENCH_SETTINGS)
                not_made = create_chaton_accounts_cli(chaton, wanted_names, password)
                for why in not_made:
                    log(f"could not create account {why}")
                unusable |= {why.split(":", 1)[0] for why in not_made}
            login_accounts = [a for a in wanted_names if a not in unusable]

        titles = {k: SCENARIOS[k].describe(args.quick, params[k]) for k in keys}

        def runs_on(key: str) -> list[Server]:
            if not SCENARIOS[key].chaton_only:
                return servers
            return [s for s in servers if isinstance(s, ChatonServer)]

        for key in keys:
            skipped = [s.name for s in servers if s not in runs_on(key)]
            if skipped:
                notes.append(f"({key}) is chaton-only; not run on {', '.join(skipped)}.")
        runs: list[dict[str, Any]] = []
        total, i = repeats * sum(len(runs_on(k)) for k in keys), 0
        for rep in range(1, repeats + 1):
            for key in keys:
                # Alternate the order (A B, B A, ...) so a server is not always the one that
                # runs right after the other (warm caches, a neighbour's load just starting).
                order = runs_on(key) if rep % 2 else runs_on(key)[::-1]
                for server in order:
                    i += 1
                    label = f"[{i}/{total}] ({key}) {server.name} #{rep}"
                    if isinstance(server, ChatonServer) and args.profile is not None:
                        server.profile_path = (
                            args.profile.resolve() / f"{server.name}-{key}-{rep}.prof"
                        )
                    record = await _run_one(server, key, args, ctx_ssl, ws_ssl, label,
                                            accounts, password, login_accounts)  # fmt: skip
                    runs.append({**record, "repeat": rep})

        names = [s.name for s in servers]
        medians = {
            k: {n: aggregate([r for r in runs if r["scenario"] == k and r["server"] == n])
                for n in names}
            for k in keys
        }  # fmt: skip
        info = machine_info() | {"generator": f"one process, {args.loop_name} event loop"}
        versions: dict[str, dict[str, Any]] = {
            s.name: {"version": s.version(), "tls": s.tls, "config": s.config_summary}
            for s in servers
        }
        for name in ("chaton", IRCV3, WEBSOCKET, NO_HISTORY):  # all run this checkout
            if name in versions:
                versions[name]["version"] += f", commit {chaton_revision()}"
        if IRCV3 in versions:
            versions[IRCV3]["version"] += "; clients negotiate " + " ".join(IRCV3_CAPS) + (
                ", senders log in (SASL) and label every message")
        if WEBSOCKET in versions:
            versions[WEBSOCKET]["version"] += (
                f"; clients speak IRC over WebSocket ({WS_SUBPROTOCOL}, GET /ws, ALPN http/1.1)")
        ratios = default_ratios(names)
        table = markdown(medians, names, titles, repeats, ratios=ratios, runs=runs)
        command = " ".join(["python -m bench", shlex.join(sys.argv[1:])]).strip()
        header = [
            f"`{command}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory']}, "
            f"{info['kernel']}; Python {info['python']}, {info['openssl']}; "
            f"generator: {info['generator']}.",
            *(f"- {n}: {v['version']}; TLS {v['tls'] or '?'}" for n, v in versions.items()),
            *(f"- {note}" for note in notes),
            "",
        ]
        print("\n".join(header) + table)
        data = {
            "command": command,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "repeats": repeats,
            "options": {"concurrency": args.concurrency, "window": args.window,
                        "max_in_flight": args.max_in_flight, "chaton_args": args.chaton_args,
                        "chaton_overrides": overrides},
            "machine": info,
            "servers": versions,
            "notes": notes,
            "ratios": ratios,
            "scenarios": {k: {"title": titles[k], "params": params[k]} for k in keys},
            "medians": medians,
            "runs": runs,
            "header": header,
            "markdown": "\n".join(header) + table,
        }  # fmt: skip
        write_json(args.json, data)
        log(f"results written to {args.json}")
        failed = sum(1 for r in runs if "error" in r)
        lossy = sum(1 for r in runs if r.get("metrics", {}).get("lost"))
        return 1 if failed or lossy else 0
    finally:
        # The exported revisions go even when --workdir is kept (they are only git's copy).
        shutil.rmtree(workdir / "revisions", ignore_errors=True)
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)


def _reprint(path: Path) -> int:
    """Render the tables of a saved results file with the current report code."""
    try:
        data = json.loads(path.read_text())
        titles = {k: v["title"] for k, v in data["scenarios"].items()}
        servers = list(data["servers"])
        ratios = [tuple(r) for r in data.get("ratios", default_ratios(servers))]
        table = markdown(data["medians"], servers, titles, data["repeats"], ratios=ratios,
                         runs=data.get("runs"))  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"python -m bench: cannot read {path}: {exc}") from None
    print("\n".join(data.get("header", [])) + table)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit("python -m bench: --repeats must be at least 1")
    if args.report is not None:
        return _reprint(args.report)
    if args.json is None:
        args.json = RESULTS / ("quick.json" if args.quick else "latest.json")
    factory, args.loop_name = _loop_factory(args.loop)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130
