"""contrib/chaton.service: systemd accepts it, it is hardened, and its ExecStart serves.

``systemd-analyze verify`` is skipped where it is missing, except under ``CI=true`` (``.ci/run``
installs it), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from chaton.cli import build_parser

from conftest import REPO

UNIT = REPO / "contrib" / "chaton.service"


def unit_entries(text: str | None = None) -> dict[str, list[str]]:
    """The [Service] (and other) keys of the unit, each with every value it is given."""
    entries: dict[str, list[str]] = {}
    for line in (text if text is not None else UNIT.read_text(encoding="utf-8")).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def one(key: str) -> str:
    values = unit_entries()[key]
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


def exec_start() -> list[str]:
    return shlex.split(one("ExecStart"))


def state_directory() -> Path:
    return Path("/var/lib") / one("StateDirectory")


def executable_for_verify(tmp_path: Path) -> Path:
    """``systemd-analyze verify`` wants ExecStart's binary to exist: the venv's, or a stub."""
    venv_chaton = Path(sys.executable).parent / "chaton"
    if venv_chaton.is_file() and os.access(venv_chaton, os.X_OK):
        return venv_chaton
    stub = tmp_path / "chaton"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    return stub


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing under CI=true (.ci/run installs systemd)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    binary = exec_start()[0]
    copy = tmp_path / "chaton.service"  # the name must stay chaton.service
    copy.write_text(
        UNIT.read_text(encoding="utf-8").replace(binary, str(executable_for_verify(tmp_path))),
        encoding="utf-8",
    )
    done = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60)
    # An unknown or misspelt key is only a warning (exit 0), so any output is a failure too.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_unit_is_hardened() -> None:
    e = unit_entries()
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "chaton",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "StandardError": "journal",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }.items():
        assert e.get(key) == [value], key
    assert e["SystemCallFilter"][0] == "@system-service"


def test_exec_start_keeps_everything_in_the_state_directory() -> None:
    argv = exec_start()
    assert Path(argv[0]).name == "chaton" and argv[1] == "serve"
    args = build_parser().parse_args(argv[1:])
    state = state_directory()
    assert args.data_dir == state / "data"
    assert args.certs_dir == state / "certs"
    assert one("WorkingDirectory") == str(state)
    # No capabilities at all (CapabilityBoundingSet= is empty): the port must be unprivileged.
    assert (args.port or 5555) >= 1024
    assert args.config is None  # a --config FILE that is missing would stop the start


def test_exec_start_serves_and_logs_to_stderr(tmp_path: Path) -> None:
    """The unit's own command line, with the state directory moved to tmp_path and port 0."""
    argv = [a.replace(str(state_directory()), str(tmp_path)) for a in exec_start()[1:]]
    # Later options win; --cert-host is what the README says to add before the first start.
    argv = [*argv, "--host", "127.0.0.1", "--port", "0", "--cert-host", "chat.example.com"]
    proc = subprocess.Popen([sys.executable, "-m", "chaton", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            listening = re.search(r"listening on 127\.0\.0\.1 port (\d+) \(TLS\)", line)
            if listening:
                break
        else:
            pytest.fail("no 'listening' line on stderr:\n" + "".join(seen))
        # A TLS handshake verified with the CA it made (the event loop is up, its SIGTERM
        # handler too).
        context = ssl.create_default_context(cafile=tmp_path / "certs" / "ca.pem")
        port = int(listening.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        proc.send_signal(signal.SIGTERM)  # what systemctl stop sends
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out == ""  # everything goes to stderr, the journal
    assert (tmp_path / "certs" / "ca.pem").is_file()
    assert (tmp_path / "certs" / "server-key.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "data" / "chaton.db").is_file()
    # The first start says where the CA is and its fingerprint (the README: journalctl -u chaton).
    first_run = "".join(seen)
    assert str(tmp_path / "certs" / "ca.pem") in first_run
    assert re.search(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", first_run), first_run
    cert = x509.load_pem_x509_certificate((tmp_path / "certs" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "chat.example.com" in names.get_values_for_type(x509.DNSName)
