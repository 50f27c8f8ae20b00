"""Medians over repeats, the markdown tables and the JSON results file."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IRCV3", "NO_HISTORY", "ROWS", "SPREAD", "TARGETS", "WEBSOCKET", "Target",
           "aggregate", "default_ratios", "markdown", "write_json"]

#: chaton measured with IRCv3 clients (see ``ChatonServer.ircv3``).
IRCV3 = "chaton+ircv3"
#: this checkout with the message store off (``history = false``): what history costs.
NO_HISTORY = "chaton-history"
#: chaton measured with WebSocket clients (see ``ChatonServer.websocket``).
WEBSOCKET = "chaton+ws"

#: Per scenario, the rows of the results table: (label, metric key, format).
ROWS: dict[str, list[tuple[str, str, str]]] = {}
_FANOUT = [
    ("deliveries lost / expected", "lost", "loss"),
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("latency p50 ms", "lat_p50_ms", "{:.2f}"),
    ("latency p99 ms", "lat_p99_ms", "{:.2f}"),
    ("latency max ms", "lat_max_ms", "{:.2f}"),
    ("server CPU % of phase", "server_cpu_pct", "{:.0f}"),
    ("generator CPU % of phase", "gen_cpu_pct", "{:.0f}"),
    ("generator CPU µs/delivery", "gen_cpu_us_per_delivery", "{:.2f}"),
    ("connect+register+join/s", "reg_per_s", "{:,.0f}"),
    ("server CPU ms/connect+register+join", "setup_server_cpu_ms_per_client", "{:.3f}"),
    ("server CPU µs/QUIT (all but one quit)", "quit_server_cpu_us_per_quit", "{:.0f}"),
    ("RSS before → after MB", "rss_after_mb", "rss"),
]
ROWS["a"] = ROWS["b"] = _FANOUT
_PAIRS_LABELS = {"reg_per_s": "connect+register/s",
                 "setup_server_cpu_ms_per_client": "server CPU ms/connect+register"}
ROWS["c"] = [(_PAIRS_LABELS.get(k, lb), k, f) for lb, k, f in _FANOUT
             if k != "quit_server_cpu_us_per_quit"]  # fmt: skip
ROWS["d"] = [
    ("registrations/s", "reg_per_s", "{:,.0f}"),
    ("registration p99 ms", "reg_p99_ms", "{:.1f}"),
    ("server CPU ms/registration", "server_cpu_ms_per_reg", "{:.2f}"),
    ("listen-queue drops (SYN retries)", "listen_drops", "{:.0f}"),
    ("server CPU % during setup", "setup_server_cpu_pct", "{:.0f}"),
    ("generator CPU % during setup", "setup_gen_cpu_pct", "{:.0f}"),
    ("RSS per idle connection KiB", "rss_per_conn_kb", "{:.1f}"),
    ("RSS before → after MB", "rss_after_mb", "rss"),
]
ROWS["e"] = [
    ("deliveries lost / expected", "lost", "loss"),
    ("latency p50 ms", "lat_p50_ms", "{:.2f}"),
    ("latency p99 ms", "lat_p99_ms", "{:.2f}"),
    ("latency max ms", "lat_max_ms", "{:.2f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("server CPU % of phase", "server_cpu_pct", "{:.1f}"),
]
ROWS["f"] = [
    ("deliveries lost / expected", "lost", "loss"),
    ("chat p99 ms before storm", "before_p99_ms", "{:.2f}"),
    ("chat p99 ms during storm", "storm_p99_ms", "{:.2f}"),
    ("storm p99 / before p99", "storm_p99_ratio", "{:.2f}"),
    ("SASL logins/s in storm", "storm_reg_per_s", "{:,.1f}"),
    ("SASL login p99 ms", "storm_reg_p99_ms", "{:,.0f}"),
    ("server CPU ms/SASL login", "storm_server_cpu_ms_per_login", "{:.1f}"),
    ("registrations/s (no SASL)", "plain_reg_per_s", "{:,.0f}"),
    ("registration p99 ms (no SASL)", "plain_reg_p99_ms", "{:.1f}"),
    ("server CPU ms/registration", "plain_server_cpu_ms_per_reg", "{:.2f}"),
    ("listen-queue drops (SYN retries)", "plain_listen_drops", "{:.0f}"),
]

ROWS["g"] = [
    ("deliveries lost / expected", "lost", "loss"),
    ("chat p50 ms before attack", "before_p50_ms", "{:.2f}"),
    ("chat p99 ms before attack", "before_p99_ms", "{:.2f}"),
    ("chat p50 ms during attack", "during_p50_ms", "{:.2f}"),
    ("chat p99 ms during attack", "during_p99_ms", "{:.2f}"),
    ("chat max ms during attack", "during_max_ms", "{:.2f}"),
    ("during p99 / before p99", "during_p99_ratio", "{:.2f}"),
    ("normal users refused or disconnected", "normal_dropped", "{:.0f}"),
    ("normal SASL logins ok ≤ 5 s / attempted", "logins_ok", "of:logins_attempted"),
    ("normal SASL login max s", "login_max_s", "{:.2f}"),
    ("server CPU % before attack", "before_server_cpu_pct", "{:.0f}"),
    ("server CPU % during attack", "during_server_cpu_pct", "{:.0f}"),
    ("RSS before → after attack MB", "rss_after_mb", "rss"),
    ("generator CPU % during attack", "during_gen_cpu_pct", "{:.0f}"),
    ("attacker process CPU % during attack", "atk_cpu_pct", "{:.0f}"),
    ("attack: NAMES/WHO/LIST lines sent", "atk_spam_lines", "{:,.0f}"),
    ("attack: MB received", "atk_rx_mb", "{:,.1f}"),
    ("attack: silent connections peak / mean", "atk_silent_peak", "of:atk_silent_mean"),
    ("attack: silent connections opened", "atk_silent_opened", "{:,.0f}"),
    ("attack: connections refused / dropped", "atk_refused", "of:atk_dropped"),
    ("attack: SASL guesses", "atk_login_attempts", "{:,.0f}"),
    ("attack: guesses hashed / throttled", "atk_login_wrong", "of:atk_login_throttled"),
]

#: Per scenario, the metrics whose run-by-run values and paired ratios the spread table shows
#: (the server-side costs that compare servers fairly, and the throughput the issue names).
SPREAD: dict[str, list[tuple[str, str, str]]] = {
    "a": [("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
          ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
          ("server CPU ms/connect+register+join", "setup_server_cpu_ms_per_client", "{:.3f}"),
          ("server CPU µs/QUIT", "quit_server_cpu_us_per_quit", "{:.0f}")],
    "c": [("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
          ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
          ("server CPU ms/connect+register", "setup_server_cpu_ms_per_client", "{:.3f}")],
    "d": [("server CPU ms/registration", "server_cpu_ms_per_reg", "{:.3f}"),
          ("RSS per idle connection KiB", "rss_per_conn_kb", "{:.1f}")],
    "e": [("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
          ("latency p99 ms", "lat_p99_ms", "{:.2f}")],
    "f": [("chat p99 ms before storm", "before_p99_ms", "{:.2f}"),
          ("server CPU ms/SASL login", "storm_server_cpu_ms_per_login", "{:.1f}"),
          ("server CPU ms/registration", "plain_server_cpu_ms_per_reg", "{:.3f}")],
    "g": [("during p99 / before p99", "during_p99_ratio", "{:.2f}")],
}  # fmt: skip
SPREAD["b"] = SPREAD["a"]

#: The worst repeat, not the median: a loss or a refused user in any run counts.
_MAX_KEYS = frozenset({"lost", "duplicates", "normal_dropped", "logins_failed"})


@dataclass(frozen=True)
class Target:
    """A goal from an issue: a server's value, or its ratio to another's (chaton/ngircd
    unless ``pair`` says otherwise), against a bound."""

    label: str
    scenario: str
    key: str
    op: str  # "<=" or ">="
    bound: float
    versus_ngircd: bool = True
    fmt: str = "{:.2f}"  # how the measured value is shown
    #: whose value (the first) or the ratio of which two (with ``versus_ngircd``); the row
    #: is left out of a run that lacks the first, unless it is chaton (rows say what they need)
    pair: tuple[str, str] = ("chaton", "ngircd")

    def check(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


TARGETS = [
    Target("fan-out server CPU/delivery ≤ 0.5x ngircd", "a", "server_cpu_us_per_delivery",
           "<=", 0.5),
    Target("light-load p99 ≤ ngircd", "e", "lat_p99_ms", "<=", 1.0),
    Target("RSS per idle connection ≤ 1.5x ngircd", "d", "rss_per_conn_kb", "<=", 1.5),
    Target("storm p99 ≤ 2x before storm", "f", "storm_p99_ratio", "<=", 2.0,
           versus_ngircd=False),
    Target("registrations/s ≥ ngircd", "f", "plain_reg_per_s", ">=", 1.0),
    Target("WebSocket fan-out server CPU/delivery ≤ 1.5x TLS", "b",
           "server_cpu_us_per_delivery", "<=", 1.5, pair=(WEBSOCKET, "chaton")),
    Target("WebSocket fan-out: 0 deliveries lost (worst run)", "b", "lost", "<=", 0,
           versus_ngircd=False, fmt="{:,.0f} lost", pair=(WEBSOCKET, "chaton")),
    Target("under attack: chat p99 ≤ 2x before", "g", "during_p99_ratio", "<=", 2.0,
           versus_ngircd=False),
    Target("under attack: 0 normal users refused or disconnected", "g", "normal_dropped",
           "<=", 0, versus_ngircd=False, fmt="{:.0f}"),
    Target("under attack: every normal login succeeds within 5 s", "g", "logins_failed",
           "<=", 0, versus_ngircd=False, fmt="{:.0f} failed or slow"),
]  # fmt: skip


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of numeric metrics over repeats (worst for loss), errors summed."""
    ok = [r["metrics"] for r in runs if "metrics" in r]
    out: dict[str, Any] = {"repeats": len(runs), "failed": len(runs) - len(ok)}
    failures = [f"run failed: {r['error']}" for r in runs if "error" in r]
    failures += [f"{k.removesuffix('_error')} failed: {v}" for m in ok for k, v in m.items()
                 if k.endswith("_error")]  # fmt: skip
    if failures:
        out["failures"] = failures
    keys = {k for m in ok for k, v in m.items() if isinstance(v, int | float)}
    for key in sorted(keys):
        values = [m[key] for m in ok if isinstance(m.get(key), int | float)]
        out[key] = max(values) if key in _MAX_KEYS else statistics.median(values)
    errors: Counter[str] = Counter()
    for m in ok:
        errors.update(m.get("errors", {}))
    if errors:
        out["errors"] = dict(errors)
    return out


def _cell(m: dict[str, Any] | None, key: str, fmt: str) -> str:
    if m is None:
        return "—"
    if key not in m:
        return "failed" if m.get("failed") == m.get("repeats") else "n/a"
    if fmt == "loss":
        return f"{m['lost']:,.0f} / {m.get('expected', 0):,.0f}"
    if fmt == "rss":
        return f"{m.get('rss_before_mb', 0):.1f} → {m['rss_after_mb']:.1f}"
    if fmt.startswith("of:"):  # "value / other value", e.g. logins ok / attempted
        return f"{m[key]:,.0f} / {m.get(fmt[3:], 0):,.0f}"
    return fmt.format(m[key])


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    if not a or not b:
        return None
    x, y = a.get(key), b.get(key)
    if not isinstance(x, int | float) or not isinstance(y, int | float) or y == 0:
        return None
    return x / y


def default_ratios(servers: list[str]) -> list[tuple[str, str]]:
    """The ratio columns: chaton/ngircd, chaton/chaton@REV for each older revision, and
    chaton+ircv3/chaton (the cost of the IRCv3 tags), chaton+ws/chaton (the cost of
    WebSocket framing), chaton/chaton-history (the cost of the message store)."""
    out = [("chaton", "ngircd")] if "chaton" in servers and "ngircd" in servers else []
    if "chaton" in servers:
        out += [("chaton", s) for s in servers if s.startswith("chaton@")]
        if IRCV3 in servers:
            out.append((IRCV3, "chaton"))
        if WEBSOCKET in servers:
            out.append((WEBSOCKET, "chaton"))
        if NO_HISTORY in servers:
            out.append(("chaton", NO_HISTORY))
    return out


def markdown(
    medians: dict[str, dict[str, dict[str, Any]]],
    servers: list[str],
    titles: dict[str, str],
    repeats: int,
    *,
    ratios: list[tuple[str, str]] | None = None,
    runs: list[dict[str, Any]] | None = None,
) -> str:
    """The results table (one block per scenario, a column per ratio), the spread table of
    the ratio pairs (with ``runs``), and the targets table."""
    ratios = default_ratios(servers) if ratios is None else ratios
    head = ["Scenario", "Metric", *servers, *(f"{a}/{b}" for a, b in ratios)]
    lines = [
        f"Medians of {repeats} run(s); losses are the worst run.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for key, title in titles.items():
        first = True
        for label, metric, fmt in ROWS[key]:
            per = [medians.get(key, {}).get(s) for s in servers]
            if all(m is None or (metric not in m and not m.get("failed")) for m in per):
                continue  # a metric no server produced (e.g. storm rows on ngircd only)
            row = [f"({key}) {title}" if first else "", label]
            row += [_cell(m, metric, fmt) for m in per]
            pair = medians.get(key, {})
            for a, b in ratios:
                r = (
                    None
                    if fmt == "loss" or fmt.startswith("of:")
                    else _ratio(pair.get(a), pair.get(b), metric)
                )
                row.append(f"{r:.2f}x" if r is not None else "")
            lines.append("| " + " | ".join(row) + " |")
            first = False
    lines.append("")
    if runs and repeats > 1:
        lines += _spread(runs, list(titles), ratios)
    lines += [*_targets(medians, servers), *_problems(medians)]
    return "\n".join(lines)


def _per_repeat(runs: list[dict[str, Any]], key: str, server: str, metric: str
                ) -> dict[int, float]:
    out = {}
    for r in runs:
        if r["scenario"] == key and r["server"] == server:
            v = r.get("metrics", {}).get(metric)
            if isinstance(v, int | float):
                out[int(r.get("repeat", 0))] = v
    return out


def _spread(runs: list[dict[str, Any]], keys: list[str], ratios: list[tuple[str, str]]
            ) -> list[str]:
    """Per ratio pair: each repeat's value on both servers, and the ratio of the two runs of
    the same repeat (they ran back to back), as median [min-max]."""
    out = []
    for a, b in ratios:
        rows = []
        for key in keys:
            for label, metric, fmt in SPREAD.get(key, []):
                va, vb = _per_repeat(runs, key, a, metric), _per_repeat(runs, key, b, metric)
                if not va or not vb:
                    continue
                paired = [va[i] / vb[i] for i in sorted(va) if vb.get(i)]
                shown = (f"{statistics.median(paired):.2f}x [{min(paired):.2f}-"
                         f"{max(paired):.2f}]" if paired else "")  # fmt: skip
                rows.append(f"| ({key}) | {label} | "
                            + ", ".join(fmt.format(va[i]) for i in sorted(va)) + " | "
                            + ", ".join(fmt.format(vb[i]) for i in sorted(vb))
                            + f" | {shown} |")  # fmt: skip
        if rows:
            out += [f"### Spread: {a} vs {b}, run by run", "",
                    f"Each repeat's value (in repeat order) and {a}/{b} of the two runs of one "
                    "repeat: median [min-max].", "",
                    f"| Scenario | Metric | {a} | {b} | {a}/{b} per repeat |",
                    "|---|---|---|---|---|",
                    *rows, ""]  # fmt: skip
    return out


def _targets(medians: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> list[str]:
    rows = ["| Target | Measured | Status |", "|---|---|---|"]
    any_row = False
    for t in TARGETS:
        if t.scenario not in medians:
            continue
        first, second = t.pair
        if first != "chaton" and first not in medians[t.scenario]:
            continue  # e.g. the WebSocket target in a run without chaton+ws
        chaton = medians[t.scenario].get(first)
        if t.versus_ngircd:
            value = _ratio(medians[t.scenario].get(first), medians[t.scenario].get(second),
                           t.key)  # fmt: skip
            shown = f"{value:.2f}x" if value is not None else f"needs {first} and {second}"
        else:
            v = chaton.get(t.key) if chaton else None
            value = v if isinstance(v, int | float) else None
            shown = t.fmt.format(value) if value is not None else f"needs {first}"
        status = "—" if value is None else "✅ met" if t.check(value) else "❌ missed"
        rows.append(f"| {t.label} | {shown} | {status} |")
        any_row = True
    return ["### Targets", "", *rows, ""] if any_row else []


#: (scenario, generator CPU % metric, what it limits, the server-side metric to compare)
_GENERATOR_BOUND = [
    ("a", "gen_cpu_pct", "deliveries/s", "server_cpu_us_per_delivery"),
    ("b", "gen_cpu_pct", "deliveries/s", "server_cpu_us_per_delivery"),
    ("c", "gen_cpu_pct", "deliveries/s", "server_cpu_us_per_delivery"),
    ("d", "setup_gen_cpu_pct", "registrations/s", "server_cpu_ms_per_reg"),
    ("f", "plain_gen_cpu_pct", "registrations/s", "plain_server_cpu_ms_per_reg"),
]


def _problems(medians: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    out = []
    for key, gen_key, limited, fair in _GENERATOR_BOUND:
        per = medians.get(key, {})
        busiest = max((m.get(gen_key, 0) for m in per.values()), default=0)
        if busiest >= 90:
            r = _ratio(per.get("chaton"), per.get("ngircd"), fair)
            cmp = f" (chaton/ngircd {r:.2f}x)" if r is not None else ""
            out.append(
                f"- ({key}) the generator ran at {busiest:.0f}% CPU, so {limited} measure it "
                f"as much as the server; compare `{fair}`{cmp}."
            )
    g = medians.get("g", {}).get("chaton")
    if g:
        last = 1 + int(g.get("atk_addresses", 8))
        out.append("- (g) chaton runs with its shipped limits (flood control, per-address and "
                   "login limits on), not the benchmark settings; the attackers connect from "
                   f"127.0.0.2-{last}, normal users from 127.1.x.y and 127.2.x.y.")
        pulse = int(g.get("atk_pulse", 1))
        out.append(f"- (g) spam comes in pulses of {pulse} lines per connection, all "
                   "connections at once (within the flood limit on average)." if pulse > 1 else
                   "- (g) spam is steady, each connection at the flood rate, out of step.")
        busy = [f"{who} {g[k]:.0f}%" for who, k in
                (("generator", "during_gen_cpu_pct"), ("attacker process", "atk_cpu_pct"))
                if g.get(k, 0) >= 90]  # fmt: skip
        if busy:
            out.append(f"- (g) {', '.join(busy)} CPU during the attack (2 cores shared with the "
                       "server): chat latency during it includes the load generators' delays.")
        if g.get("atk_login_accepted"):
            out.append(f"- (g) the server ACCEPTED {g['atk_login_accepted']:.0f} wrong "
                       "password(s) from the login storm.")
    for key, per in medians.items():
        for server, m in per.items():
            for failure in m.get("failures", []):
                out.append(f"- ({key}) {server}: {failure}")
            if m.get("errors"):
                seen = ", ".join(f"{k} x{v}" for k, v in sorted(m["errors"].items()))
                out.append(f"- ({key}) {server}: clients saw {seen}")
    if "ngircd" in {s for per in medians.values() for s in per}:
        out.append("- ngircd has no SASL without a services daemon: storm rows are chaton only.")
    return ["### Notes", "", *out, ""] if out else []


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
