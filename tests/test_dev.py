"""./dev installs only what a command needs, once per set, again when pyproject.toml changes.

A stub ``python3`` (PYTHON=) records what ./dev asks pip for; nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import REPO

STUB = """#!/bin/sh
# python3 -m venv DIR: make DIR/bin/python (this stub) and DIR/bin/chaton
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
    printf '#!/bin/sh\\necho "chaton $*"\\n' > "$3/bin/chaton" && chmod +x "$3/bin/chaton"
    exit 0
fi
echo "$*" >> "$(dirname "$0")/../pip.log"
[ -z "${FAIL_PIP:-}" ]
"""


def dev(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tmp / "dev"), *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHON": str(tmp / "python3"), "CHATON_VENV": "venv", **env},
    )


def pip_calls(tmp: Path) -> list[str]:
    log = tmp / "venv" / "pip.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("-m pip ")]


def test_dev_installs_per_command_and_per_marker(tmp_path: Path) -> None:
    shutil.copy(REPO / "dev", tmp_path / "dev")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "python3").write_text(STUB)
    (tmp_path / "python3").chmod(0o755)

    assert dev(tmp_path, "help").returncode == 0
    assert not (tmp_path / "venv").exists()  # help installs nothing

    done = dev(tmp_path, "serve", "--help")
    assert (done.returncode, done.stdout) == (0, "chaton serve --help\n")
    assert pip_calls(tmp_path) == ["-m pip install --quiet -e ."]  # no test tools
    dev(tmp_path, "chaton", "--version")
    assert len(pip_calls(tmp_path)) == 1  # marked: not again

    # pyproject.toml newer than the marker: installed again.
    past = time.time() - 100
    os.utime(tmp_path / "pyproject.toml", (past + 50, past + 50))
    os.utime(tmp_path / "venv" / ".installed-base", (past, past))
    dev(tmp_path, "serve")
    assert pip_calls(tmp_path)[1:] == ["-m pip install --quiet -e ."]

    # bench (like test) needs the test set, which then also counts for serve.
    failed = dev(tmp_path, "bench", FAIL_PIP="1")
    assert failed.returncode != 0
    assert not (tmp_path / "venv" / ".installed-test").exists()  # a failed install: no marker
    dev(tmp_path, "bench")
    assert pip_calls(tmp_path)[2:] == ["-m pip install --quiet -e .[test]"] * 2
    dev(tmp_path, "serve")
    assert len(pip_calls(tmp_path)) == 4
