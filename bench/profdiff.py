"""``python -m bench.profdiff NEW.prof --old OLD.prof``: where two cProfile runs of chaton differ.

Made for ``python -m bench --profile DIR --baseline REV``: one ``.prof`` per run, of HEAD and
of the older revision. Functions are matched by ``chaton/...py:function`` (the tree each ran
from is cut off, and line numbers are ignored, since code moves between revisions), their
own time (``tottime``) and time with callees (``cumtime``) summed over the profiles given,
and the functions whose time grew most are listed first. Several profiles of each side may
be given: ``NEW1.prof NEW2.prof --old OLD1.prof OLD2.prof``.

cProfile slows the server down several times over, more so for many small Python calls than
for time spent in C (OpenSSL, the socket calls): use the differences to find where extra
time goes, and the benchmark without ``--profile`` for how much.
"""

from __future__ import annotations

import argparse
import pstats
import re
from collections import defaultdict
from pathlib import Path

__all__ = ["load", "main"]

_TREE = re.compile(r"^.*?/(chaton/[^:]*)$")


def _where(filename: str, name: str) -> str:
    """``chaton/server/rooms.py:send_names``; stdlib and C functions keep their short form."""
    m = _TREE.match(filename)
    if m:
        return f"{m.group(1)}:{name}"
    if filename == "~":  # a built-in: "{method 'send' of '_socket.socket' objects}"
        return name
    return f"{Path(filename).name}:{name}"


def load(paths: list[Path]) -> tuple[dict[str, list[float]], float]:
    """Per function: [calls, tottime, cumtime] summed over ``paths``; and the total time."""
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    total = 0.0
    for path in paths:
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        for (filename, _line, name), (_cc, nc, tt, ct, _callers) in stats.items():
            row = out[_where(filename, name)]
            row[0] += nc
            row[1] += tt
            row[2] += ct
            total += tt
    return dict(out), total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profdiff",
                                description=(__doc__ or "").split("\n\n")[0])  # fmt: skip
    p.add_argument("new", nargs="+", type=Path, metavar="NEW.prof",
                   help="profile(s) of the new revision (chaton-<scenario>-<repeat>.prof)")
    p.add_argument("--old", nargs="+", type=Path, required=True, metavar="OLD.prof",
                   help="profile(s) of the old one (chaton@REV-<scenario>-<repeat>.prof)")
    p.add_argument("--top", type=int, default=25, help="rows to show (default 25)")
    p.add_argument("--sort", choices=("tottime", "cumtime"), default="tottime",
                   help="which time's growth orders the rows (default tottime)")  # fmt: skip
    p.add_argument("--only", default="chaton/", metavar="TEXT",
                   help="only functions whose name contains TEXT (default chaton/; '' for all)")
    args = p.parse_args(argv)
    new, old = args.new, args.old
    a, ta = load(new)
    b, tb = load(old)
    col = 1 if args.sort == "tottime" else 2
    names = [n for n in set(a) | set(b) if args.only in n]
    zero = [0.0, 0.0, 0.0]
    names.sort(key=lambda n: a.get(n, zero)[col] - b.get(n, zero)[col], reverse=True)
    print(f"new: {', '.join(map(str, new))}\nold: {', '.join(map(str, old))}")
    print(f"total own time of all functions: new {ta:.2f} s, old {tb:.2f} s\n")
    print(f"| function | calls new | calls old | tottime new s | tottime old s | "
          f"cumtime new s | cumtime old s | {args.sort} new-old s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in names[: args.top]:
        x, y = a.get(n, zero), b.get(n, zero)
        print(f"| `{n}` | {x[0]:,.0f} | {y[0]:,.0f} | {x[1]:.3f} | {y[1]:.3f} | {x[2]:.3f} | "
              f"{y[2]:.3f} | {x[col] - y[col]:+.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
