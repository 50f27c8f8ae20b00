"""Address groups: the unit every per-address limit counts.

One host usually owns a whole IPv6 /64 (and sometimes an IPv4 block), so limiting the exact
address would let it open unlimited connections. Connection counts, the connect rate, the
unregistered-connection cap and the login throttles all count the group an address falls
in: the IPv4 address masked to ``ipv4_prefix`` bits (default /32) or the IPv6 address to
``ipv6_prefix`` (default /64). An IPv4-mapped IPv6 address counts as the IPv4 address.
"""

from __future__ import annotations

import ipaddress

__all__ = ["address_group"]


def address_group(ip: str, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The group ``ip`` counts in, as text (a network, or the address at full length)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif ipv6_prefix >= 128:
            return str(addr)
        else:
            return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    if ipv4_prefix >= 32:
        return str(addr)
    return str(ipaddress.IPv4Network((addr, ipv4_prefix), strict=False))
