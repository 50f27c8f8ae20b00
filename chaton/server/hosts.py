"""The host part others see in a client's ``nick!user@host``: never its address.

A logged-in user shows ``account_host`` (default ``user.alice.<server>``), a guest
``guest_host`` (default ``guest.<cloak>.<server>``). Both are hostname-shaped: bots and
strict clients reject a host with ``/`` or other characters a host name cannot have.
Admins see the real address in WHOIS (338).

The variable part is the *second* label: irssi's default ban mask replaces the first label
with ``*`` (``*!*user@*.<rest>``), WeeChat's keeps the host; either way a ban then
catches one account or one guest address, not everyone.

Invariant: a guest's cloak is an HMAC of its *address group* (so ``*!*@guest.<cloak>.*``
catches the guest whatever it reconnects with, and no other guest), keyed with a secret
derived from the server's private key: stable across restarts, not reversible without it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaton.config import Settings

__all__ = ["HOST_SHAPE", "cloak", "cloak_key", "visible_host"]

log = logging.getLogger("chaton")

#: What a visible host may contain: hostname characters (and ':' for IPv6-looking ones).
HOST_SHAPE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:-]{0,62}")
_NOT_HOST = re.compile(r"[^0-9a-z-]")


def visible_host(settings: Settings, account: str | None, guest_cloak: str = "0") -> str:
    """``account_host`` for a logged-in user (the account lower-cased, characters a host
    cannot have turned into ``-``), else ``guest_host`` with the guest's cloak."""
    if account is None:
        return settings.guest_host.format(server=settings.server_name, cloak=guest_cloak)
    label = _NOT_HOST.sub("-", account.lower())
    return settings.account_host.format(account=label, server=settings.server_name)


def cloak_key(key_file: Path) -> bytes:
    """The secret behind guest cloaks: from the TLS private key (stable across restarts),
    or random for this run if it cannot be read."""
    try:
        return hashlib.sha256(b"chaton guest cloak\0" + key_file.read_bytes()).digest()
    except OSError:
        log.warning("guest cloaks: cannot read %s; cloaks will change at restart", key_file)
        return os.urandom(32)


def cloak(key: bytes, group: str) -> str:
    """Eight hex digits standing for an address group."""
    return hmac.new(key, group.encode(), hashlib.sha256).hexdigest()[:8]
