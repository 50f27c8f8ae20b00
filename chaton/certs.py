"""A private CA and a server certificate for chaton, made with ``cryptography``.

chaton is TLS-only, so a fresh install needs a certificate before it can serve anyone.
Rather than a self-signed leaf (which clients can only pin), we make a small private CA:
clients trust ``ca.pem`` once, and the server certificate can be re-issued (new host names,
expiry) without touching any client.

Invariants kept here:
- Private keys are never readable by others, not even for a moment: each is written to a
  fresh 0600 temporary file in the same directory, synced, then renamed over the target.
  A crash leaves either the old file or the new one, never half a key.
- Nothing is overwritten without ``force``; a partial set is repaired only in the one safe
  direction (a missing server certificate is re-issued from an existing CA).
- The CA signs only server certificates (path length 0) and the leaf is good only for
  ``serverAuth``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chaton.tls import fingerprint_of_der

__all__ = [
    "DEFAULT_CA_DAYS",
    "DEFAULT_SERVER_DAYS",
    "CertError",
    "CertPaths",
    "GeneratedCerts",
    "add_arguments",
    "default_hosts",
    "describe",
    "ensure_server_certs",
    "generate",
    "issue_server_cert",
    "load_ca",
    "main",
    "make_ca",
    "run",
    "validate_host",
]

#: A private CA outlives many server certificates; re-issuing it means touching every client.
DEFAULT_CA_DAYS = 3650
#: 825 days is the longest leaf lifetime that Apple platforms (and hence many clients) accept.
DEFAULT_SERVER_DAYS = 825
#: Start validity a little in the past so a client whose clock lags still accepts the cert.
_BACKDATE = dt.timedelta(minutes=5)
_MAX_DAYS = 100 * 366

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


class CertError(Exception):
    """A certificate operation cannot proceed; the message tells the user what to do."""


@dataclass(frozen=True)
class CertPaths:
    """Where the four PEM files live (the same names :class:`chaton.config.Settings` uses)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, certs_dir: Path) -> CertPaths:
        certs_dir = Path(certs_dir)
        return cls(
            ca_cert=certs_dir / "ca.pem",
            ca_key=certs_dir / "ca-key.pem",
            server_cert=certs_dir / "server.pem",
            server_key=certs_dir / "server-key.pem",
        )

    def all(self) -> tuple[Path, Path, Path, Path]:
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key)


@dataclass(frozen=True)
class GeneratedCerts:
    """What was written, and the fingerprints a user needs to hand to clients."""

    paths: CertPaths
    hosts: list[str]
    ca_fingerprint: str
    server_fingerprint: str


# --- host names ----------------------------------------------------------------------------


def validate_host(value: str) -> str:
    """Return ``value`` normalized (IPs canonical, names lower-case) or raise :class:`CertError`.

    Checked up front so a typo is reported in words instead of as an unusable certificate.
    """
    text = value.strip()
    if not text or any(c.isspace() for c in text):
        raise CertError(f"invalid host {value!r}: a host name or IP address has no spaces")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            raise CertError(f"invalid host {value!r}: a certificate cannot name a scoped address")
        return str(ip)
    name = text.lower().removesuffix(".")
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # a wildcard is allowed as the whole left-most label only
    if len(name) > 253 or not name.isascii() or not all(_LABEL.fullmatch(lb) for lb in labels):
        raise CertError(
            f"invalid host {value!r}: use an IP address or a DNS name made of letters, digits "
            "and hyphens (e.g. chat.example.com)"
        )
    return name


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def default_hosts() -> list[str]:
    """The names a client on this machine or the LAN is likely to use to reach the server."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    candidates = [hostname]
    fqdn = socket.getfqdn()
    if fqdn != hostname and fqdn != "localhost":
        candidates.append(fqdn)
    for name in candidates:
        try:
            hosts.append(validate_host(name))
        except CertError:
            continue  # an odd machine name must not stop certificate generation
    return _dedupe(hosts)


def _all_hosts(extra_hosts: Sequence[str]) -> list[str]:
    if isinstance(extra_hosts, str):  # a lone string would be split into letters
        extra_hosts = [extra_hosts]
    return _dedupe([*default_hosts(), *(validate_host(h) for h in extra_hosts)])


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


# --- certificates --------------------------------------------------------------------------


def _check_days(days: int, what: str) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= _MAX_DAYS:
        raise CertError(f"{what} validity must be a whole number of days from 1 to {_MAX_DAYS}")


def _signing_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign the message directly and refuse a separate digest.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _common_name(prefix: str, detail: str) -> x509.Name:
    room = 64 - len(prefix) - 3  # X.520 caps a common name at 64 characters
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix} ({detail[:room]})")])


def make_ca(*, days: int = DEFAULT_CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new private CA (ECDSA P-256) that may sign server certificates but no other CA."""
    _check_days(days, "CA")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _common_name("chaton private CA", socket.gethostname() or "localhost")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_server_cert(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    days: int = DEFAULT_SERVER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new server key and certificate for ``hosts``, signed by the CA.

    The leaf never outlives its CA: a client would reject it at the CA's expiry anyway, and
    a date past it would only mislead whoever reads the certificate.
    """
    _check_days(days, "server certificate")
    names = _dedupe(validate_host(h) for h in hosts)
    if not names:
        raise CertError("a server certificate needs at least one host name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CertError("the CA certificate has expired; make a new CA with --force")
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_common_name("chaton server", names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, _signing_hash(ca_key))
    )
    return key, cert


_ISSUER_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_ca(paths: CertPaths) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
    """Read an existing CA, refusing a key that does not belong to the certificate."""
    try:
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(
            f"cannot read the CA from {paths.ca_cert} and {paths.ca_key} ({exc}); "
            "the key must be an unencrypted PEM key"
        ) from None
    if not isinstance(key, _ISSUER_KEYS):
        raise CertError(f"{paths.ca_key} holds a key type that cannot sign certificates")
    if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
        raise CertError(
            f"{paths.ca_key} does not belong to {paths.ca_cert}; restore the matching pair "
            "or make a new CA with --force"
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertError(f"{paths.ca_cert} is not a CA certificate")
    return key, cert


# --- files ---------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported everywhere (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # mkstemp opens with O_CREAT|O_EXCL and mode 0600, so a key is never readable by others;
    # fchmod then sets the final mode regardless of the umask.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _fingerprint(cert: x509.Certificate) -> str:
    return fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER))


def _make_dir(certs_dir: Path) -> None:
    if certs_dir.exists():
        if not certs_dir.is_dir():
            raise CertError(f"{certs_dir} exists and is not a directory")
        return
    certs_dir.mkdir(mode=0o700, parents=True)
    os.chmod(certs_dir, 0o700)  # mkdir's mode is filtered by the umask


def _write_server(
    paths: CertPaths, key: CertificateIssuerPrivateKeyTypes, cert: x509.Certificate
) -> None:
    # Key first: a crash in between leaves a key without a certificate, which
    # ensure_server_certs reports, rather than a certificate whose key is missing.
    _write_atomic(paths.server_key, _key_pem(key), 0o600)
    _write_atomic(paths.server_cert, _cert_pem(cert), 0o644)


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if os.path.lexists(p)]


def generate(
    certs_dir: Path,
    *,
    extra_hosts: Sequence[str] = (),
    force: bool = False,
    ca_days: int = DEFAULT_CA_DAYS,
    server_days: int = DEFAULT_SERVER_DAYS,
) -> GeneratedCerts:
    """Make a new CA and a server certificate for this machine's names plus ``extra_hosts``.

    All four files are new; without ``force`` an existing file is an error, because a
    replaced CA means every client must be handed the new ``ca.pem``.
    """
    certs_dir = Path(certs_dir)
    paths = CertPaths.in_dir(certs_dir)
    hosts = _all_hosts(extra_hosts)
    _check_days(ca_days, "CA")
    _check_days(server_days, "server certificate")
    existing = _existing(paths.all())
    if existing and not force:
        listed = ", ".join(str(p) for p in existing)
        raise CertError(
            f"refusing to overwrite {listed}; pass --force to replace them "
            "(clients will then need the new ca.pem)"
        )
    _make_dir(certs_dir)
    ca_key, ca_cert = make_ca(days=ca_days)
    server_key, server_cert = issue_server_cert(ca_key, ca_cert, hosts, server_days)
    # Drop the old server pair before the CA changes, so a crash part-way leaves a CA and no
    # server certificate -- which ensure_server_certs repairs -- never a mismatched pair.
    for old in (paths.server_cert, paths.server_key):
        old.unlink(missing_ok=True)
    _write_atomic(paths.ca_key, _key_pem(ca_key), 0o600)
    _write_atomic(paths.ca_cert, _cert_pem(ca_cert), 0o644)
    _write_server(paths, server_key, server_cert)
    return GeneratedCerts(paths, hosts, _fingerprint(ca_cert), _fingerprint(server_cert))


def ensure_server_certs(
    certs_dir: Path,
    extra_hosts: Sequence[str] = (),
    *,
    server_days: int = DEFAULT_SERVER_DAYS,
) -> GeneratedCerts | None:
    """Make sure a server certificate exists; ``None`` if there was nothing to do.

    For ``chaton serve`` on first run. An existing CA is reused, so clients that already
    trust its ``ca.pem`` keep working; a half-present pair is reported, never overwritten.
    """
    paths = CertPaths.in_dir(Path(certs_dir))
    server = _existing((paths.server_cert, paths.server_key))
    if len(server) == 2:
        return None
    if server:
        missing = paths.server_key if server[0] == paths.server_cert else paths.server_cert
        raise CertError(
            f"{server[0]} exists but {missing} does not; restore it, delete {server[0]}, "
            "or run 'chaton certs --force' to start over"
        )
    ca = _existing((paths.ca_cert, paths.ca_key))
    if not ca:
        return generate(certs_dir, extra_hosts=extra_hosts, server_days=server_days)
    if len(ca) == 1:
        missing = paths.ca_key if ca[0] == paths.ca_cert else paths.ca_cert
        raise CertError(
            f"{ca[0]} exists but {missing} does not, so no server certificate can be issued; "
            "restore it or run 'chaton certs --force' to make a new CA"
        )
    ca_key, ca_cert = load_ca(paths)
    hosts = _all_hosts(extra_hosts)
    server_key, server_cert = issue_server_cert(ca_key, ca_cert, hosts, server_days)
    _write_server(paths, server_key, server_cert)
    return GeneratedCerts(paths, hosts, _fingerprint(ca_cert), _fingerprint(server_cert))


def renew_server_cert(
    certs_dir: Path, extra_hosts: Sequence[str] = (), *, server_days: int = DEFAULT_SERVER_DAYS
) -> GeneratedCerts:
    """A new server key and certificate from the existing CA: clients that trust its
    ``ca.pem`` trust the new one too. The running server takes it on reload (SIGHUP)."""
    paths = CertPaths.in_dir(Path(certs_dir))
    missing = [p for p in (paths.ca_cert, paths.ca_key) if not p.exists()]
    if missing:
        raise CertError(f"{missing[0]} is missing: renewal needs the CA that clients trust "
                        "(without it, 'chaton certs --force' makes a new one)")
    ca_key, ca_cert = load_ca(paths)
    hosts = _all_hosts(extra_hosts)
    server_key, server_cert = issue_server_cert(ca_key, ca_cert, hosts, server_days)
    _write_server(paths, server_key, server_cert)
    return GeneratedCerts(paths, hosts, _fingerprint(ca_cert), _fingerprint(server_cert))


def not_after(path: Path) -> float:
    """When the certificate in ``path`` expires (a Unix time); ``CertError`` if unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise CertError(f"cannot read the certificate {path}: {exc}") from None
    return cert.not_valid_after_utc.timestamp()


def describe(gen: GeneratedCerts) -> str:
    """What was made and how clients come to trust it, for the person who ran the command."""
    p = gen.paths
    return "\n".join(
        [
            f"CA certificate:     {p.ca_cert}  (give this to clients)",
            f"CA private key:     {p.ca_key}  (keep secret; it signs server certificates)",
            f"server certificate: {p.server_cert}",
            f"server key:         {p.server_key}",
            f"hosts covered:      {', '.join(gen.hosts)}",
            f"CA SHA-256 fingerprint:     {gen.ca_fingerprint}",
            f"server SHA-256 fingerprint: {gen.server_fingerprint}",
            "",
            f"Copy {p.ca_cert} to each client and run:",
            "  chaton connect HOST --cafile ca.pem",
            "or pin this server certificate (changes whenever it is re-issued):",
            f"  chaton connect HOST --fingerprint {gen.server_fingerprint}",
            "irssi: /server add -tls -tls_cafile ca.pem HOST PORT; "
            "WeeChat: /set weechat.network.gnutls_ca_user ca.pem",
        ]
    )


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``chaton certs`` (shared with ``scripts/gen_certs.py``)."""
    parser.add_argument(
        "--certs-dir",
        type=Path,
        default=Path("certs"),
        metavar="DIR",
        help="where to write ca.pem, ca-key.pem, server.pem, server-key.pem (default: certs)",
    )
    parser.add_argument(
        "--host",
        dest="hosts",
        action="append",
        default=None,
        metavar="NAME|IP",
        help="extra name or address clients will use, on top of localhost, 127.0.0.1, ::1 and "
        "this machine's host name (repeatable)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace existing files, including the CA"
    )
    parser.add_argument(
        "--renew", action="store_true",
        help="issue a new server certificate from the existing CA (clients keep trusting "
        "it), then run 'chaton reload' so the running server uses it",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_SERVER_DAYS,
        metavar="N",
        help=f"server certificate validity in days (default: {DEFAULT_SERVER_DAYS})",
    )


def run(args: argparse.Namespace) -> int:
    """Carry out parsed ``chaton certs`` options; 0 on success, 2 with a one-line error."""
    try:
        if getattr(args, "renew", False):
            gen = renew_server_cert(args.certs_dir, list(args.hosts or ()),
                                    server_days=args.days)
            print(f"renewed {gen.paths.server_cert} (SHA-256 {gen.server_fingerprint}) from "
                  f"the existing CA; run 'chaton reload' to use it without a restart")
            return 0
        gen = generate(
            args.certs_dir,
            extra_hosts=list(args.hosts or ()),
            force=args.force,
            server_days=args.days,
        )
    except (CertError, OSError) as exc:
        print(f"chaton certs: error: {exc}", file=sys.stderr)
        return 2
    print(describe(gen))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/gen_certs.py``; ``chaton certs`` mounts the same options."""
    parser = argparse.ArgumentParser(
        prog="chaton certs",
        description="Make a private CA and a server certificate signed by it, so clients "
        "can verify the chaton server. Hand ca.pem to clients; keep the keys secret.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
