"""``python -m bench.metrics_cost``: what counting a message costs, prometheus_client or ``+=``.

chaton counts on its hot paths with plain integer attributes (``metrics.messages += 1``,
``metrics.deliveries += n``; labelled counts are dict items, ``metrics.logins["ok"] += 1``)
and turns them into metric families only when ``/metrics`` is scraped
(:mod:`chaton.server.metrics`). The alternative is ``prometheus_client``'s own ``Counter``,
whose ``inc()`` checks the metric is observable and the amount non-negative, then takes a
``threading.Lock`` around the ``+=``. This measures both, in one process and one run:

- ``obj.attr += 1`` on a plain object: the reference every ratio is against;
- ``d["ok"] += 1`` on a dict item (chaton's labelled counts);
- ``Counter.inc()`` (no labels), and ``Counter.inc(n)`` as for a room's deliveries;
- ``Counter.labels("ok").inc()`` with the child looked up once and kept (the fast way to
  use a labelled counter) and, for scale, with ``labels()`` on every call.

Method: each statement is repeated ``UNROLL`` times per loop iteration (``timeit``), so the
loop's own cost is spread thin, and the cost of the same loop around ``pass`` is subtracted.
Rounds interleave the cases (A B C ... A B C ...) so drift on shared cores hits each alike;
the value shown is the median over rounds, with the fastest and slowest round.

Per delivery: chaton counts once per *message* (two increments: ``messages`` and
``deliveries``), so in a room of N members each increment's cost is shared by N - 1
deliveries; a server that counted every copy would pay one increment per delivery. Both are
shown against the server CPU a delivery costs in the fan-out (``--delivery-us``, 0.5 µs in
BENCHMARKS.md, scenario (b)).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter

__all__ = ["Case", "main", "measure"]

UNROLL = 20  # statements per loop iteration


class _Plain:
    """Shaped like chaton's ``Metrics``: an ordinary class (no ``__slots__``)."""

    def __init__(self) -> None:
        self.messages = 0
        self.logins = {"ok": 0, "failed": 0}


@dataclass(frozen=True)
class Case:
    label: str
    stmt: str
    note: str = ""


CASES = [
    Case("plain attribute: m.messages += 1 (chaton; the reference)", "m.messages += 1"),
    Case("dict item: m.logins['ok'] += 1 (chaton, labelled)", "m.logins['ok'] += 1"),
    Case("prometheus_client Counter.inc()", "c.inc()"),
    Case("prometheus_client Counter.inc(199)", "c.inc(199)"),
    Case("prometheus_client labelled, cached child: child.inc()", "child.inc()"),
    Case("prometheus_client labelled: c2.labels('ok').inc() each time",
         "c2.labels('ok').inc()", "the label lookup on every call"),
]  # fmt: skip
_EMPTY = Case("empty loop", "pass")


def _namespace() -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)  # private: nothing global changes
    c = Counter("bench_messages", "Messages.", registry=registry)
    c2 = Counter("bench_logins", "Logins by result.", ["result"], registry=registry)
    return {"m": _Plain(), "c": c, "c2": c2, "child": c2.labels("ok")}


def measure(cases: list[Case], ops: int, rounds: int,
            progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """ns per statement, one value per round, for each case and the empty loop."""
    names = _namespace()
    loops = max(1, ops // UNROLL)
    timers = {case.label: timeit.Timer("\n".join([case.stmt] * UNROLL), globals=names)
              for case in [_EMPTY, *cases]}  # fmt: skip
    out: dict[str, list[float]] = {label: [] for label in timers}
    for timer in timers.values():  # warm up (and fail early on a bad statement)
        timer.timeit(max(1, loops // 10))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for label, timer in timers.items():
                out[label].append(timer.timeit(loops) * 1e9 / (loops * UNROLL))
            if progress is not None:
                progress(f"round {r + 1}/{rounds}")
    finally:
        if gc_was:
            gc.enable()
    return out


def _fmt_ns(v: float) -> str:
    return f"{v:.1f}"


def table(raw: dict[str, list[float]], cases: list[Case], room: int, delivery_us: float
          ) -> list[str]:
    """The markdown table: net ns/op per case (median [min-max] over rounds), the ratio to
    the reference, and what the extra cost adds per delivery in the fan-out."""
    empty = raw[_EMPTY.label]
    net = {c.label: [v - e for v, e in zip(raw[c.label], empty, strict=True)] for c in cases}
    ref_label = cases[0].label
    ref = statistics.median(net[ref_label])
    per_round_ref = net[ref_label]
    lines = [
        "| counting | ns/op: median [min-max] | vs plain `+=` (paired per round) | extra ns "
        f"per delivery, counted per message (2 per message, room of {room}) | extra ns per "
        "delivery, counted per delivery | share of a delivery's server CPU "
        f"({delivery_us:g} µs): per message / per delivery |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        values = net[case.label]
        med = statistics.median(values)
        ratios = [v / r for v, r in zip(values, per_round_ref, strict=True) if r > 0]
        ratio = statistics.median(ratios) if ratios else float("nan")
        extra = max(0.0, med - ref)
        per_msg = 2 * extra / max(1, room - 1)
        label = case.label + (f" ({case.note})" if case.note else "")
        if case.label == ref_label:
            extra_cells = ["—", "—", "—"]
        else:
            extra_cells = [f"{per_msg:.2f}", f"{extra:.1f}",
                           f"{100 * per_msg / (delivery_us * 1e3):.2f} % / "
                           f"{100 * extra / (delivery_us * 1e3):.1f} %"]  # fmt: skip
        lines.append(f"| {label} | {_fmt_ns(med)} [{_fmt_ns(min(values))}-"
                     f"{_fmt_ns(max(values))}] | {ratio:.1f}x | " + " | ".join(extra_cells)
                     + " |")  # fmt: skip
    e = statistics.median(empty)
    lines += ["", f"ns/op is net of the loop: the same loop around `pass` cost {e:.1f} ns per "
              "statement in this run and is subtracted round by round."]  # fmt: skip
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.metrics_cost",
        description="Cost per increment of prometheus_client counters against the plain "
        "attribute += chaton uses, and what it would add per fan-out delivery.",
    )
    p.add_argument("--ops", type=int, default=1_000_000, metavar="N",
                   help="increments per case per round (default 1,000,000)")
    p.add_argument("--rounds", type=int, default=5, metavar="N",
                   help="rounds; cases interleave within a round (default 5)")
    p.add_argument("--room", type=int, default=200, metavar="N",
                   help="room members for the per-delivery columns (default 200: each "
                   "message reaches 199)")
    p.add_argument("--delivery-us", type=float, default=0.5, metavar="US",
                   help="chaton's server CPU per fan-out delivery, µs (default 0.5, "
                   "BENCHMARKS.md (b))")
    p.add_argument("--quick", action="store_true", help="200,000 ops, 3 rounds (~2 s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.ops, args.rounds = 200_000, 3
    if args.ops < UNROLL or args.rounds < 1 or args.room < 2 or args.delivery_us <= 0:
        raise SystemExit("python -m bench.metrics_cost: --ops >= 20, --rounds >= 1, "
                         "--room >= 2 and --delivery-us > 0, please")  # fmt: skip
    try:
        prom = metadata.version("prometheus_client")
    except metadata.PackageNotFoundError:
        prom = "?"

    def progress(msg: str) -> None:
        print(f"metrics_cost: {msg}", file=sys.stderr, flush=True)

    raw = measure(CASES, args.ops, args.rounds, progress)
    shown = " ".join(["python -m bench.metrics_cost", *(sys.argv[1:] if argv is None else argv)])
    print(f"`{shown}` — Python {platform.python_version()}, prometheus_client {prom}, "
          f"{platform.machine()} {platform.system()} {platform.release()}; "
          f"{args.ops:,} increments x {args.rounds} rounds per case.")
    print()
    print("\n".join(table(raw, CASES, args.room, args.delivery_us)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
