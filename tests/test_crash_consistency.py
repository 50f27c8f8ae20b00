"""kill -9 at random moments while the IRC admin and the CLI write: nothing acknowledged is lost.

The harness (``bench/crash.py``) is shared with the soak (``python -m bench.crash``); here it
runs a short, seeded version on every CI run.
"""

from __future__ import annotations

from pathlib import Path

from bench.crash import run_cycles

CI_CYCLES = 20


def test_acknowledged_writes_survive_kill9_next_to_the_cli(tmp_path: Path) -> None:
    report = run_cycles(tmp_path, CI_CYCLES, seed=20261202)
    assert report.problems == []
    assert report.cli_failures == []
    assert report.cycles == CI_CYCLES
    # The run must actually have exercised both writers across the crashes.
    assert report.acknowledged >= CI_CYCLES * 5
