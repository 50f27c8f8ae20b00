"""Which web pages may open an IRC WebSocket to this server (cross-site hijacking defence).

A browser tells the server the page's origin in ``Origin`` and lets any page open a
WebSocket anywhere; the server must refuse pages that are not its own, or a hostile page
a team member visits could chat through them from inside the firewall.

Rules:
- With ``web_origins`` set, exactly those origins are allowed (``*`` allows any page; an
  operator who hosts gamja or Kiwi IRC elsewhere lists its origin instead).
- Otherwise the server's own names: ``server_name`` and every DNS name and IP address in
  the certificate, on each port the server listens on (a browser reaches the server only
  through a name the certificate holds, or it would refuse the page).
- No ``Origin`` at all is a program, not a browser page: allowed (it carries no cookies
  or ambient authority of anyone's). ``Origin: null`` (sandboxed or file pages) is not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

if TYPE_CHECKING:
    from chaton.config import Settings

__all__ = [
    "certificate_names",
    "configured_origins",
    "normalize_origin",
    "origin_allowed",
    "own_origins",
    "web_address",
]


def normalize_origin(origin: str) -> str:
    """Lower-case scheme and host, default port dropped, no trailing slash."""
    text = origin.strip().rstrip("/").lower()
    if text.startswith("https://") and text.endswith(":443"):
        text = text[:-4]
    return text


def certificate_names(cert_file: Path) -> list[str]:
    """The DNS names and IP addresses the server certificate is valid for."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return names


def _host_part(name: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(name), ipaddress.IPv6Address):
            return f"[{name}]"
    except ValueError:
        pass
    return name


def own_origins(names: Iterable[str], ports: Iterable[int]) -> frozenset[str]:
    """Every origin a page served by this server can have."""
    out = set()
    port_list = sorted(set(ports))
    for name in names:
        if not name or "*" in name:
            continue
        host = _host_part(name.lower())
        for port in port_list:
            out.add(normalize_origin(f"https://{host}:{port}"))
    return frozenset(out)


def configured_origins(text: str) -> frozenset[str]:
    return frozenset(normalize_origin(o) for o in text.split(",") if o.strip())


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    if origin is None:
        return True
    if "*" in allowed:
        return True
    return normalize_origin(origin) in allowed


def web_address(settings: Settings, bound: Sequence[tuple[str, int]]) -> str:
    """The address to open the web client at (for the start-up log): a name the
    certificate holds, so the browser can check it."""
    names = certificate_names(settings.cert_file)
    ports = [p for _, p in bound]
    port = settings.web_port if settings.web_port in ports else ports[0]
    host = bound[0][0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is not None and addr.is_unspecified:  # every interface: the machine's name
        others = [n for n in names if n != "localhost" and not _is_ip(n)]
        host = others[0] if others else "localhost"
    elif addr is not None and addr.is_loopback and "localhost" in names:
        host = "localhost"
    return f"https://{_host_part(host)}:{port}/"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
