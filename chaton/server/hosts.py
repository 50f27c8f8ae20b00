"""The host part others see in a client's ``nick!user@host``: never its address.

A logged-in user shows ``account_host`` (default ``alice.users.<server>``), a guest
``guest_host`` (default ``guest.<server>``). Both are hostname-shaped: bots and strict
clients reject a host with ``/`` or other characters a host name cannot have. Admins see
the real address in WHOIS (338).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaton.config import Settings

__all__ = ["HOST_SHAPE", "visible_host"]

#: What a visible host may contain: hostname characters (and ':' for IPv6-looking ones).
HOST_SHAPE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:-]{0,62}")
_NOT_HOST = re.compile(r"[^0-9a-z-]")


def visible_host(settings: Settings, account: str | None) -> str:
    """``account_host`` for a logged-in user (the account lower-cased, characters a host
    cannot have turned into ``-``), else ``guest_host``."""
    if account is None:
        return settings.guest_host.format(server=settings.server_name)
    label = _NOT_HOST.sub("-", account.lower())
    return settings.account_host.format(account=label, server=settings.server_name)
