"""Open the verified TLS connection, and explain in plain words why it could not be opened.

Invariants:
- Verification is never weakened: the context comes from :func:`chaton.tls.client_context`
  (CA + host name, or a pinned fingerprint checked before the first byte is sent). A failed
  check ends the client with :data:`EXIT_TLS`; there is no retry without it, and no plaintext
  (nor another try when reconnecting: only failures that may pass by themselves are
  ``transient``).
- When the check failed, :func:`describe_certificate` may open a *second*, unverified
  handshake only to read the certificate (names, dates, fingerprint) for the error message.
  It sends no application data and is closed at once; nothing the user types ever goes there.
- Expected failures (refused, unknown host, bad certificate) become :class:`ClientExit`
  with a human message, never a traceback. Names read from the certificate and OpenSSL's
  words are the server's text: they pass through :func:`~chaton.client.safe_text.printable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chaton import tls
from chaton.client.safe_text import printable

__all__ = [
    "CONNECT_TIMEOUT",
    "EXIT_ERROR",
    "EXIT_LOGIN",
    "EXIT_OK",
    "EXIT_TLS",
    "EXIT_USAGE",
    "CertificateInfo",
    "ClientExit",
    "Endpoint",
    "describe_certificate",
    "explain_verify_error",
    "open_tls",
    "parse_endpoint",
]

EXIT_OK = 0
#: Could not connect, connection lost, ``ERROR`` from the server, banned.
EXIT_ERROR = 1
#: Bad command line (argparse uses 2 as well).
EXIT_USAGE = 2
#: The TLS handshake or the certificate check failed.
EXIT_TLS = 3
#: Login failed, or the nickname could not be had in non-interactive mode.
EXIT_LOGIN = 4

#: Seconds for TCP connect plus TLS handshake.
CONNECT_TIMEOUT = 15.0
DEFAULT_PORT = 5555
DEFAULT_HOST = "127.0.0.1"


class ClientExit(Exception):
    """End the client with ``code`` after printing ``message`` (if any) to stderr, escaped.

    ``transient`` marks a failure that may pass by itself (refused, reset, timed out, no
    DNS answer): worth another try when reconnecting, unlike a failed certificate check.
    """

    def __init__(self, code: int, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, and the name the certificate must carry."""

    host: str
    port: int = DEFAULT_PORT
    #: Name for SNI and the host name check; defaults to ``host``.
    server_name: str = ""

    @property
    def tls_name(self) -> str:
        return self.server_name or self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str, server_name: str | None = None) -> Endpoint:
    """Parse ``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address.

    Raises ``ValueError`` with a message fit for the user.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty server address")
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: write IPv6 as [::1] or [::1]:5555")
        port_text = rest[1:]
        if rest and not port_text:
            raise ValueError(f"bad address {text!r}: missing port after ':'")
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address: no port possible
    else:
        host, sep, port_text = text.partition(":")
        if sep and not port_text:
            raise ValueError(f"bad address {text!r}: missing port after ':'")
    if not host:
        raise ValueError(f"bad address {text!r}: missing host")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text!r}: use a number from 1 to 65535")
        port = int(port_text)
    return Endpoint(host, port, server_name or "")


# --- certificate details for error messages ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a user needs to judge a certificate: names, validity and fingerprint."""

    fingerprint: str
    names: tuple[str, ...] = ()
    issuer: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    self_signed: bool = False

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        fingerprint = tls.fingerprint_of_der(der)
        try:
            from cryptography import x509
            from cryptography.x509.oid import NameOID
        except ImportError:  # pragma: no cover - cryptography is a dependency
            return cls(fingerprint)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return cls(fingerprint)
        names: list[str] = []
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names += san.get_values_for_type(x509.DNSName)
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        if not names:
            names += [
                str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            ]
        return cls(
            fingerprint=fingerprint,
            names=tuple(names),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            self_signed=cert.issuer == cert.subject,
        )


async def describe_certificate(endpoint: Endpoint, timeout: float = 5.0) -> CertificateInfo | None:
    """Read the server's certificate without trusting it, to explain a failed check.

    Only a handshake: no byte of IRC is sent, and the connection is closed at once.
    Returns ``None`` if even that fails.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # diagnostics only; see the module invariants
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=ctx, server_hostname=endpoint.tls_name
            ),
            timeout,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    try:
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj is not None else None
    finally:
        writer.transport.abort()
    return CertificateInfo.from_der(der) if der else None


# --- explanations -----------------------------------------------------------------------------
def _short(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"


_UNKNOWN_CA_CODES = {18, 19, 20, 21, 2, 27, 24}  # self-signed, untrusted chain, no issuer ...
_EXPIRED = 10
_NOT_YET_VALID = 9
_NAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def explain_verify_error(
    exc: ssl.SSLCertVerificationError,
    endpoint: Endpoint,
    cafile: Path | None,
    info: CertificateInfo | None,
    now: datetime | None = None,
) -> str:
    """A few lines saying what failed and which flag fixes it."""
    code = getattr(exc, "verify_code", None)
    detail = printable(getattr(exc, "verify_message", None) or str(exc))
    trust = f"the CA in {cafile}" if cafile else "the system's trusted CAs"
    lines: list[str] = []
    if code in _NAME_MISMATCH:
        names = (
            ", ".join(printable(n) for n in info.names)
            if info and info.names
            else "(could not read them)"
        )
        lines += [
            f"the server's certificate is not valid for the name {endpoint.tls_name!r}.",
            f"  It is valid for: {names}",
            "  Fix: connect with a name the certificate holds, e.g. "
            f"'chaton connect {_example_host(info)}:{endpoint.port}',",
            "  or keep the address and check that name instead: "
            f"--server-name {_example_name(info)}",
        ]
    elif code == _EXPIRED:
        lines += [
            f"the server's certificate expired on {_short(info.not_after if info else None)}.",
            "  Fix: the server's admin must renew it (chaton certs); also check this",
            f"  computer's clock (it says {_short(now or datetime.now(UTC))}).",
        ]
    elif code == _NOT_YET_VALID:
        lines += [
            "the server's certificate is not valid yet "
            f"(from {_short(info.not_before if info else None)}).",
            f"  Check this computer's clock (it says {_short(now or datetime.now(UTC))}).",
        ]
    elif code in _UNKNOWN_CA_CODES:
        kind = "self-signed" if info and info.self_signed else "signed by a CA you do not trust"
        lines += [
            f"the server's certificate is {kind} ({detail}); it was checked against {trust}.",
            "  Fix: pass the chaton server's CA certificate: --cafile certs/ca.pem",
            "  (copy ca.pem from the server's certs/ folder), or pin the server's certificate",
            "  with --fingerprint SHA256 (ask the server's admin for it).",
        ]
        if info is not None:
            lines.append(
                f"  This server presents SHA-256 fingerprint {info.fingerprint} -- "
                "compare it with the admin's before pinning it."
            )
    else:
        lines += [
            f"the server's certificate could not be verified: {detail}.",
            "  Fix: --cafile with the CA that signed it, or --fingerprint SHA256 to pin it.",
        ]
    return "TLS check failed: " + "\n".join(lines) + "\n  Nothing was sent to the server."


def _example_name(info: CertificateInfo | None) -> str:
    if info and info.names:
        return printable(info.names[0])
    return "NAME"


def _example_host(info: CertificateInfo | None) -> str:
    name = _example_name(info)
    return f"[{name}]" if ":" in name else name


def explain_fingerprint_mismatch(expected: str, actual: str | None) -> str:
    """Expected versus actual fingerprint, and what to do about it."""
    want = ":".join(f"{b:02X}" for b in tls.normalize_fingerprint(expected))
    return (
        "TLS check failed: the server's certificate is not the one you pinned.\n"
        f"  expected (--fingerprint): {want}\n"
        f"  actual (server):          {actual or '(no certificate)'}\n"
        "  If the server's certificate was renewed, get the new fingerprint from its admin\n"
        "  and pass it with --fingerprint; otherwise someone may be in the middle. "
        "Nothing was sent."
    )


# --- connecting -------------------------------------------------------------------------------
async def open_tls(
    endpoint: Endpoint,
    *,
    cafile: Path | None,
    fingerprint: str | None,
    timeout: float = CONNECT_TIMEOUT,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and verify, or raise :class:`ClientExit` with a message for the user."""
    try:
        ctx = tls.client_context(cafile, fingerprint=fingerprint)
    except ValueError as exc:  # malformed fingerprint
        raise ClientExit(EXIT_USAGE, f"--fingerprint: {exc}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ClientExit(
            EXIT_USAGE, f"cannot use the CA file {cafile}: {exc.strerror or exc}"
        ) from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=ctx,
                server_hostname=endpoint.tls_name,
                ssl_handshake_timeout=timeout,
            ),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        info = await describe_certificate(endpoint)
        raise ClientExit(EXIT_TLS, explain_verify_error(exc, endpoint, cafile, info)) from None
    except ssl.SSLError as exc:  # not the certificate: a handshake cut short, or no TLS
        raise ClientExit(EXIT_TLS, _explain_ssl_error(exc, endpoint), transient=True) from None
    except socket.gaierror as exc:
        raise ClientExit(
            EXIT_ERROR,
            f"cannot find the server {endpoint.host!r}: {exc.strerror or exc}",
            transient=True,
        ) from None
    except ConnectionRefusedError:
        raise ClientExit(
            EXIT_ERROR,
            f"connection refused by {endpoint}: is the chaton server running there?",
            transient=True,
        ) from None
    except TimeoutError:
        raise ClientExit(
            EXIT_ERROR,
            f"no answer from {endpoint} within {timeout:g} s (firewall? wrong host?)",
            transient=True,
        ) from None
    except (ConnectionResetError, ConnectionAbortedError, EOFError) as exc:
        raise ClientExit(
            EXIT_TLS,
            f"the connection to {endpoint} closed during the TLS handshake ({exc or 'EOF'}); "
            "is it a chaton (TLS) port?",
            transient=True,
        ) from None
    except OSError as exc:
        raise ClientExit(
            EXIT_ERROR, f"cannot connect to {endpoint}: {exc.strerror or exc}", transient=True
        ) from None
    if fingerprint is not None:
        obj = writer.get_extra_info("ssl_object")
        try:
            tls.check_fingerprint(obj, fingerprint)
        except tls.FingerprintMismatch:
            der = obj.getpeercert(binary_form=True) if obj is not None else None
            writer.transport.abort()
            actual = tls.fingerprint_of_der(der) if der else None
            raise ClientExit(EXIT_TLS, explain_fingerprint_mismatch(fingerprint, actual)) from None
    return reader, writer


def _explain_ssl_error(exc: ssl.SSLError, endpoint: Endpoint) -> str:
    reason = (getattr(exc, "reason", None) or "").upper()
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}:
        return (
            f"TLS handshake failed: {endpoint} does not speak TLS ({printable(exc.reason)}). "
            "Is that the chaton port? chaton never falls back to plain text."
        )
    return f"TLS handshake with {endpoint} failed: {printable(str(exc.reason or exc))}."
