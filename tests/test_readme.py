"""The README's limits table must match the defaults in the code."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from chaton.config import Settings

from conftest import REPO, run_chaton


def test_readme_limits_table_matches_settings() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, flags=re.MULTILINE))
    documented = {name: str(default) for name, default, _ in Settings.field_docs()}
    documented.pop("motd")
    assert rows == documented


def test_readme_gives_the_two_setup_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "./dev serve" in text and "./dev test" in text
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "./dev test" in ci  # CI runs the README's test command


def test_readme_names_every_capability_the_server_offers() -> None:
    """The capability table is what CAP LS offers: nothing missing, nothing invented."""
    from chaton.server.registration import HISTORY_CAPS, SUPPORTED_CAPS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("### What IRC clients and bots get", 1)[1].split("\nAlso:", 1)[0]
    named = set(re.findall(r"^\| (`[^|]*`) \|", table, flags=re.MULTILINE))
    caps = {c for cell in named for c in re.findall(r"`([a-z0-9/-]+)`", cell)}
    assert caps == set(SUPPORTED_CAPS + HISTORY_CAPS)


def operating_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Operating chaton\n", 1)[1].split("\n## ", 1)[0]


def readme_commands(section: str) -> list[list[str]]:
    """Every command of the section's ``sh`` blocks: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


SYSTEMD_RUN_PREFIX = ["sudo", "systemd-run", "--pty", "--wait", "--collect"]


def as_service_user(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``sudo systemd-run ... -p K=V ... chaton ARGS`` into the properties and the command."""
    assert words[: len(SYSTEMD_RUN_PREFIX)] == SYSTEMD_RUN_PREFIX
    rest = words[len(SYSTEMD_RUN_PREFIX):]
    props = {}
    while rest[0] == "-p":
        key, _, value = rest[1].partition("=")
        props[key] = value
        rest = rest[2:]
    return props, rest


def test_readme_operating_section_sits_after_history_before_configuration() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    heads = re.findall(r"^## (.*)$", text, flags=re.MULTILINE)
    at = heads.index("Operating chaton")
    assert heads[at - 2 : at + 2] == [
        "Durability and backups", "History", "Operating chaton", "Configuration"]
    # The reload and renewal it promises are the commands that exist (tests/test_reload.py)
    section = operating_section()
    for command in ("systemctl reload chaton", "chaton reload", "chaton certs --renew"):
        assert command in section


def test_readme_service_steps_match_the_unit() -> None:
    from test_contrib import exec_start, state_directory, unit_entries

    section = operating_section()
    commands = readme_commands(section)
    cp = next(c for c in commands if c[:2] == ["sudo", "cp"])
    assert (REPO / cp[2]).resolve() == (REPO / "contrib" / "chaton.service").resolve()
    unit_path = Path(cp[3]) / (REPO / cp[2]).name
    assert unit_path == Path("/etc/systemd/system/chaton.service")
    assert ["sudo", "systemctl", "daemon-reload"] in commands
    assert ["sudo", "systemctl", "enable", "--now", "chaton"] in commands
    assert ["journalctl", "-u", "chaton"] in commands
    binary = exec_start()[0]
    assert f"if not {binary}, fix ExecStart=" in " ".join(" ".join(c) for c in commands) + \
        section.replace("\n", " ")
    service_runs = [c for c in commands if c[:2] == ["sudo", "systemd-run"]]
    assert len(service_runs) == 3
    entries = unit_entries()
    state = str(state_directory())
    data_dir = exec_start()[exec_start().index("--data-dir") + 1]
    for words in service_runs:
        props, command = as_service_user(words)
        # The same user and state directory as the service, so their files stay its own.
        assert props == {k: entries[k][0] for k in ("DynamicUser", "User", "StateDirectory")}
        assert command[0] == "chaton"
        assert command[command.index("--data-dir") + 1] == data_dir
        assert all(w.startswith(state) for w in command if w.startswith("/"))
    for path in ("/var/lib/chaton/data", "/var/lib/chaton/certs", "/var/lib/chaton/certs/ca.pem"):
        assert path.startswith(state) and f"`{path}`" in section


def test_readme_admin_commands_work_on_a_state_directory(tmp_path: Path) -> None:
    """First admin, backup, restore: the README's own command lines on a moved state dir."""
    from test_contrib import state_directory

    state = str(state_directory())
    outputs = []
    for words in readme_commands(operating_section()):
        if words[:2] != ["sudo", "systemd-run"]:
            continue
        command = [w.replace(state, str(tmp_path)) for w in as_service_user(words)[1][1:]]
        if command[:2] == ["account", "add"]:  # the README's asks at the terminal
            done = run_chaton(*command, "--password-stdin", input="correct horse battery\n")
        else:
            done = run_chaton(*command)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(command[0])
    assert outputs == ["account", "backup", "restore"]
    listed = run_chaton("account", "list", "--data-dir", str(tmp_path / "data"))
    assert listed.returncode == 0
    assert re.search(r"^alice\s+admin\b", listed.stdout, flags=re.MULTILINE), listed.stdout
    assert list((tmp_path / "data").glob("chaton.db.before-restore-*"))


def test_readme_cert_host_option_exists() -> None:
    assert "add `--cert-host chat.example.com` to `ExecStart=`" in operating_section().replace(
        "\n", " ")
    assert "--cert-host" in run_chaton("serve", "--help").stdout


@pytest.mark.timeout(600)
def test_pip_install_gives_a_working_chaton(tmp_path: Path) -> None:
    """What ``pip install .`` and ``pipx install .`` do: build a wheel, install it alone."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "chaton", src / "chaton",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Nothing of this test run's environment (PYTHONPATH would show pip a chaton already).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-v", "-w", str(tmp_path / "wheel"),
                            str(src)], capture_output=True, text=True, timeout=300, env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    # project.license is an SPDX string: no deprecation warning from setuptools.
    assert "SetuptoolsDeprecationWarning" not in built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("chaton-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
        names = z.namelist()
    assert "License-Expression: MIT" in metadata.decode().splitlines()
    assert "chaton/web/static/index.html" in names  # the web client ships in the package
    assert "chaton/web/static/app.js" in names
    installed = subprocess.run([*pip, "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=300, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["version"]
    done = subprocess.run([str(venv / "bin" / "chaton"), "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout.strip()) == (0, f"chaton {version}")
    served = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from chaton.web.static_files import load_assets; a = load_assets();"
         " print(a['/'].content_type, '/app.js' in a)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert served.stdout.split() == ["text/html;", "charset=utf-8", "True"], served.stderr
    assert f"# chaton {version}" in operating_section()
    # No test tools came with it.
    listed = subprocess.run([*pip, "list"], capture_output=True, text=True, timeout=60,
                            env=env).stdout
    assert not re.search(r"^(pytest|mypy|ruff|hypothesis)\s", listed, flags=re.MULTILINE)
