"""The client's TLS checks against a real TLS socket (a tiny accept-and-hold server, not chaton).

Each test runs ``python -m chaton.client`` as a subprocess in non-interactive mode, so the
exit status and the words on stderr are what a user would see.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from chaton import tls

REPO = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT = 30


class TinyServer:
    """Accept TLS (or plain TCP) connections; record the first line each client sends.

    After a line arrives it answers ``reply`` and closes, so a client that got through the
    handshake ends promptly and deterministically.
    """

    def __init__(
        self,
        context: ssl.SSLContext | None,
        reply: bytes = b"ERROR :bye\r\n",
        greeting: bytes = b"",
    ) -> None:
        self.context = context
        self.reply = reply
        self.greeting = greeting
        self.lines: queue.Queue[str] = queue.Queue()
        self.handshakes = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        stream: socket.socket = conn
        try:
            if self.context is not None:
                stream = self.context.wrap_socket(conn, server_side=True)
                self.handshakes += 1
            if self.greeting:
                stream.sendall(self.greeting)
            data = b""
            while b"\n" not in data:
                chunk = stream.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.lines.put(data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r"))
            stream.sendall(self.reply)
            # Read what else the client sent before closing: closing with unread data
            # would reset the connection and could destroy the reply in flight.
            stream.settimeout(0.3)
            with contextlib.suppress(OSError, ssl.SSLError):
                while stream.recv(4096):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)

    def first_line(self, timeout: float = 5.0) -> str:
        return self.lines.get(timeout=timeout)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    return ctx


def der_fingerprint(cert: trustme.LeafCert) -> str:
    return tls.fingerprint_of_der(
        ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tiny(request: pytest.FixtureRequest) -> Iterator[list[TinyServer]]:
    servers: list[TinyServer] = []
    yield servers
    for s in servers:
        s.close()


def start(tiny: list[TinyServer], cert: trustme.LeafCert | None, **kw: bytes) -> TinyServer:
    srv = TinyServer(server_context(cert) if cert is not None else None, **kw)
    tiny.append(srv)
    return srv


def run_client(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the client where no certs/ca.pem exists, with stdin at EOF (non-interactive)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "chaton.client", *args, "--nick", "tester"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        cwd=tmp_path,
        env=env,
    )


def write_ca(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


# --- refusals -------------------------------------------------------------------------------
def test_unknown_ca_exits_3_and_points_to_cafile(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("127.0.0.1"))
    other = write_ca(trustme.CA(), tmp_path / "other-ca.pem")
    proc = run_client(tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(other))
    assert proc.returncode == 3, proc.stderr
    assert "not trust" in proc.stderr
    assert "--cafile certs/ca.pem" in proc.stderr
    assert "--fingerprint" in proc.stderr
    assert "Nothing was sent" in proc.stderr
    assert srv.lines.empty()
    assert_no_traceback(proc)


def test_host_name_mismatch_exits_3_and_names_the_certificate(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("chat.example.test"))
    proc = run_client(
        tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
    )
    assert proc.returncode == 3, proc.stderr
    assert "not valid for the name '127.0.0.1'" in proc.stderr
    assert "It is valid for: chat.example.test" in proc.stderr
    assert "--server-name chat.example.test" in proc.stderr
    assert srv.lines.empty()
    assert_no_traceback(proc)


def test_wrong_fingerprint_exits_3_showing_expected_and_actual(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    srv = start(tiny, cert)
    wrong = "00" * 32
    proc = run_client(tmp_path, f"127.0.0.1:{srv.port}", "--fingerprint", wrong)
    assert proc.returncode == 3, proc.stderr
    assert "expected (--fingerprint): " + ":".join(["00"] * 32) in proc.stderr
    assert "actual (server):          " + der_fingerprint(cert) in proc.stderr
    assert srv.lines.empty()
    assert_no_traceback(proc)


def test_expired_certificate_exits_3(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    cert = ca.issue_cert("127.0.0.1", not_before=past - timedelta(days=30), not_after=past)
    srv = start(tiny, cert)
    proc = run_client(
        tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
    )
    assert proc.returncode == 3, proc.stderr
    assert "expired on " + past.strftime("%Y-%m-%d") in proc.stderr
    assert srv.lines.empty()
    assert_no_traceback(proc)


# --- hostile text from the server on stderr ----------------------------------------------------
HOSTILE = "\x1b]0;pwned\x07\x1b[2J"
SHOWN = "^[]0;pwned^G^[[2J"


def assert_inert(text: str) -> None:
    bad = [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)]
    assert not bad, ascii(text)


def hostile_name_cert(ca: trustme.CA, tmp_path: Path) -> ssl.SSLContext:
    """A server context whose certificate (signed by ``ca``) holds a DNS name made of escapes.

    trustme refuses such a name (IDNA), so the certificate is built with cryptography.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"evil{HOSTILE}.test")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "hostile.pem", tmp_path / "hostile-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def test_hostile_certificate_name_is_shown_escaped(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = TinyServer(hostile_name_cert(ca, tmp_path))
    tiny.append(srv)
    proc = run_client(
        tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
    )
    assert proc.returncode == 3, proc.stderr
    assert f"It is valid for: evil{SHOWN}.test" in proc.stderr, ascii(proc.stderr)
    assert f"--server-name evil{SHOWN}.test" in proc.stderr
    assert_inert(proc.stderr + proc.stdout)
    assert_no_traceback(proc)


def test_hostile_error_reason_is_shown_escaped_on_exit(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("127.0.0.1"), reply=f"ERROR :{HOSTILE}\r\n".encode())
    proc = run_client(
        tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
    )
    assert proc.returncode == 1, proc.stderr
    assert f"chaton: disconnected by the server: {SHOWN}" in proc.stderr, ascii(proc.stderr)
    assert f"-!- ERROR: {SHOWN}" in proc.stdout
    assert_inert(proc.stderr + proc.stdout)
    assert_no_traceback(proc)


def test_plaintext_server_is_never_spoken_to_in_plaintext(
    tmp_path: Path, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, None, greeting=b":irc.plain NOTICE * :hello\r\n")
    proc = run_client(tmp_path, f"127.0.0.1:{srv.port}", "--fingerprint", "00" * 32)
    assert proc.returncode == 3, proc.stderr
    assert "does not speak TLS" in proc.stderr
    assert not any("CAP" in line for line in list(srv.lines.queue))
    assert_no_traceback(proc)


def test_connection_refused_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_client(tmp_path, f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "connection refused" in proc.stderr
    assert_no_traceback(proc)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--fingerprint", "zz"], "64 hex digits"),
        (["--cafile", "missing.pem"], "does not exist"),
        (["localhost:99999"], "bad port"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    proc = run_client(tmp_path, *args)
    assert proc.returncode == 2
    assert words in proc.stderr
    assert_no_traceback(proc)


def test_nick_is_required_without_a_terminal(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "chaton.client", "127.0.0.1:1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2
    assert "--nick is required" in proc.stderr


# --- acceptance -----------------------------------------------------------------------------
def _assert_got_through(proc: subprocess.CompletedProcess[str], srv: TinyServer) -> None:
    assert srv.first_line() == "CAP LS 302"
    # The tiny server answers ERROR and closes: the client reports it and exits 1, not 3.
    assert proc.returncode == 1, proc.stderr
    assert "-!- ERROR: bye" in proc.stdout
    assert "disconnected by the server: bye" in proc.stderr
    assert_no_traceback(proc)


def test_right_ca_gets_past_the_handshake(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("127.0.0.1"))
    proc = run_client(
        tmp_path, f"127.0.0.1:{srv.port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
    )
    _assert_got_through(proc, srv)
    assert "certificate verified" in proc.stdout


def test_default_cafile_is_certs_ca_pem(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("127.0.0.1"))
    (tmp_path / "certs").mkdir()
    write_ca(ca, tmp_path / "certs" / "ca.pem")
    _assert_got_through(run_client(tmp_path, f"127.0.0.1:{srv.port}"), srv)


def test_server_name_override_checks_that_name(
    tmp_path: Path, ca: trustme.CA, tiny: list[TinyServer]
) -> None:
    srv = start(tiny, ca.issue_cert("chat.example.test"))
    proc = run_client(
        tmp_path,
        f"127.0.0.1:{srv.port}",
        "--cafile",
        str(write_ca(ca, tmp_path / "ca.pem")),
        "--server-name",
        "chat.example.test",
    )
    _assert_got_through(proc, srv)


@pytest.mark.parametrize("style", ["colons", "plain", "prefixed"])
def test_right_fingerprint_gets_past_the_handshake(
    tmp_path: Path, tiny: list[TinyServer], style: str
) -> None:
    cert = trustme.CA().issue_cert("somewhere.else")  # CA and name do not matter when pinned
    srv = start(tiny, cert)
    pin = der_fingerprint(cert)
    if style == "plain":
        pin = pin.replace(":", "").lower()
    elif style == "prefixed":
        pin = "sha256:" + pin
    proc = run_client(tmp_path, f"127.0.0.1:{srv.port}", "--fingerprint", pin)
    _assert_got_through(proc, srv)
    assert "certificate pinned" in proc.stdout


def test_ipv6_loopback(tmp_path: Path, ca: trustme.CA) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sock = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    ctx = server_context(ca.issue_cert("::1"))
    port = sock.getsockname()[1]
    got: queue.Queue[str] = queue.Queue()

    def serve() -> None:
        sock.settimeout(CLIENT_TIMEOUT)
        with contextlib.suppress(OSError, ssl.SSLError):
            conn, _ = sock.accept()
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.settimeout(10)
                got.put(s.recv(4096).split(b"\r\n")[0].decode())
                s.sendall(b"ERROR :bye\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        proc = run_client(
            tmp_path, f"[::1]:{port}", "--cafile", str(write_ca(ca, tmp_path / "ca.pem"))
        )
    finally:
        sock.close()
        thread.join(5)
    assert got.get(timeout=1) == "CAP LS 302"
    assert proc.returncode == 1, proc.stderr
