"""Certificate tooling: scripts/gen_certs.py and `chaton certs`, end to end with a server."""

from __future__ import annotations

import ipaddress
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chaton import tls

from conftest import REPO, IrcClient, run_chaton
from web_clients import https_request


def gen_certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_certs.py"), *args],
        capture_output=True, text=True, timeout=60, cwd="/",
    )


def test_gen_certs_makes_a_ca_and_server_cert_with_the_right_names(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    result = gen_certs("--certs-dir", str(d), "--host", "chat.example.com", "--host", "192.0.2.7")
    assert result.returncode == 0, result.stderr
    for key in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((d / key).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "chat.example.com", socket.gethostname().lower()} <= names
    assert {"127.0.0.1", "::1", "192.0.2.7"} <= ips
    # It prints the CA fingerprint, which matches the file, and what to give clients.
    fp = tls.fingerprint_of_pem_file(d / "ca.pem")
    assert fp in result.stdout
    assert "--cafile" in result.stdout


def test_gen_certs_never_overwrites_without_force(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    assert gen_certs("--certs-dir", str(d)).returncode == 0
    before = (d / "ca.pem").read_bytes()
    again = gen_certs("--certs-dir", str(d))
    assert again.returncode != 0
    assert "--force" in again.stderr and "Traceback" not in again.stderr
    assert (d / "ca.pem").read_bytes() == before
    forced = gen_certs("--certs-dir", str(d), "--force")
    assert forced.returncode == 0
    assert (d / "ca.pem").read_bytes() != before


def test_bad_host_is_a_clear_error(tmp_path: Path) -> None:
    result = run_chaton("certs", "--certs-dir", str(tmp_path / "c"), "--host", "bad host!")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "bad host" in result.stderr


def test_first_serve_generates_certs_and_clients_verify_them(tmp_path: Path) -> None:
    """`chaton serve` with an empty certs dir makes what it needs; ca.pem then verifies it."""
    certs_dir = tmp_path / "certs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaton", "serve", "--port", "0", "--certs-dir", str(certs_dir),
         "--data-dir", str(tmp_path / "data")],
        cwd=REPO, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stderr is not None
        port = 0
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not port and time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            found = re.search(r"listening on \S+ port (\d+)", line)
            if found:
                port = int(found.group(1))
        assert port, "".join(seen)
        assert any("ca.pem" in line for line in seen)  # it says where the CA is
        web = re.search(r"web client: (https://\S+)", proc.stderr.readline())
        assert web is not None and web.group(1) == f"https://localhost:{port}/"
        page = https_request("127.0.0.1", port, certs_dir / "ca.pem", "/")  # checks the name
        assert page.status == 200 and b"<script" in page.body
        assert stat.S_IMODE((certs_dir / "server-key.pem").stat().st_mode) == 0o600
        c = IrcClient("127.0.0.1", port, certs_dir / "ca.pem")
        c.register("first")
        fingerprint = tls.fingerprint_of_pem_file(certs_dir / "server.pem")
        pinned = tls.client_context(fingerprint=fingerprint)
        p = IrcClient("127.0.0.1", port, certs_dir / "ca.pem", context=pinned)
        tls.check_fingerprint(p.sock, fingerprint)
        p.register("pinned")
        c.close()
        p.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_server_cert_from_gen_certs_is_valid_for_the_host_names(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    assert gen_certs("--certs-dir", str(d), "--host", "10.9.8.7").returncode == 0
    cert = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.9.8.7") in san.get_values_for_type(x509.IPAddress)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
