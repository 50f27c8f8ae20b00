"""The headers every HTTPS response carries: what the browser may load, run and remember.

The web client is plain files from the installed package, so the policy can be strict:
scripts and styles only from this origin, never inline, nothing from a third party, and
no framing (clickjacking). HSTS tells the browser to come back over HTTPS only.
"""

from __future__ import annotations

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

#: (name, value) pairs as bytes, built once.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Strict-Transport-Security", b"max-age=31536000"),
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode()),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cross-Origin-Opener-Policy", b"same-origin"),
    (b"Cross-Origin-Resource-Policy", b"same-origin"),
    (b"Permissions-Policy", b"camera=(), microphone=(), geolocation=()"),
)
