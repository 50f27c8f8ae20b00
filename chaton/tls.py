"""The single place where chaton's TLS policy lives.

Invariants kept here, for both ends of a connection:
- TLS 1.2 is the floor; TLS 1.2 is limited to ECDHE key exchange with AEAD ciphers
  (every TLS 1.3 suite is already ECDHE + AEAD).
- No compression, no renegotiation.
- The client always verifies: against a CA file (or the system store) *and* the host name,
  or against a pinned SHA-256 fingerprint of the server certificate. There is no mode that
  verifies nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path

__all__ = [
    "AEAD_CIPHERS",
    "FingerprintMismatch",
    "check_fingerprint",
    "client_context",
    "fingerprint_of_der",
    "fingerprint_of_pem_file",
    "normalize_fingerprint",
    "server_context",
]

#: OpenSSL cipher string for TLS 1.2: forward-secret key exchange and AEAD only.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class FingerprintMismatch(ssl.SSLError):
    """The server presented a certificate other than the pinned one."""


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(AEAD_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return ctx


def server_context(certfile: str | Path, keyfile: str | Path) -> ssl.SSLContext:
    """Build the server's context; raises ``OSError``/``ssl.SSLError`` on unreadable files.

    Building a fresh context and swapping it in whole is also how a reload works: if the
    new files fail to load, the caller keeps serving with the old context.
    """
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    # No TLS 1.3 session tickets: IRC clients hold one long connection and rarely resume,
    # while two tickets per handshake cost both ends CPU on every connect.
    ctx.num_tickets = 0
    # Browsers offer ALPN (h2, http/1.1); IRC clients offer none. Agreeing on http/1.1
    # tells the transport at once that this connection is a browser's (chaton.web).
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return ctx


def client_context(
    cafile: str | Path | None = None, *, fingerprint: str | None = None
) -> ssl.SSLContext:
    """Build a verifying client context.

    With ``fingerprint`` the chain and host name are not checked by OpenSSL; the caller must
    call :func:`check_fingerprint` on the connected socket before sending anything. Without
    it, the server must chain to ``cafile`` (or the system store) and match the host name.
    """
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if fingerprint is not None:
        normalize_fingerprint(fingerprint)  # reject a malformed pin before connecting
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cafile is not None:
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def normalize_fingerprint(text: str) -> bytes:
    """Parse a SHA-256 fingerprint written as hex, with or without colons or a prefix."""
    cleaned = text.strip().lower()
    if cleaned.startswith("sha256:"):
        cleaned = cleaned[len("sha256:") :]
    cleaned = cleaned.replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != hashlib.sha256().digest_size:
        raise ValueError(
            "a fingerprint is 64 hex digits (SHA-256), optionally separated by colons"
        )
    return raw


def fingerprint_of_der(der: bytes) -> str:
    """Colon-separated upper-case SHA-256 of a DER certificate, as ``openssl x509`` prints."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def fingerprint_of_pem_file(path: str | Path) -> str:
    """Fingerprint of the first certificate in a PEM file."""
    pem = Path(path).read_text(encoding="ascii")
    return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(pem))


def check_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket, expected: str) -> None:
    """Raise :class:`FingerprintMismatch` unless the peer certificate matches ``expected``."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise FingerprintMismatch("the server presented no certificate")
    if not hmac.compare_digest(hashlib.sha256(der).digest(), normalize_fingerprint(expected)):
        raise FingerprintMismatch(
            f"the server certificate's SHA-256 fingerprint is {fingerprint_of_der(der)}, "
            "not the pinned one"
        )
