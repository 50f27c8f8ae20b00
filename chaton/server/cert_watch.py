"""Warnings before the server certificate expires, 30 and 7 days ahead.

Invariants:
- What is watched is the certificate the server loaded (at start or at the last reload
  that took one), not whatever is on disk: a renewed file not yet reloaded still warns.
- Each threshold warns once per certificate (log line and a notice to the admins online);
  a reload with a new certificate starts afresh. The clock is injected for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaton.certs import CertError, not_after

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["THRESHOLDS_DAYS", "CertWatch"]

log = logging.getLogger("chaton")

#: Days before expiry at which the admins are warned.
THRESHOLDS_DAYS = (30, 7)
#: How often the time left is looked at (the certificate itself is read only on load).
CHECK_EVERY = 3600.0


class CertWatch:
    """Knows when the loaded certificate expires and says so in time."""

    def __init__(self, server: ChatServer, clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.clock = clock
        self.expires: float | None = None
        self._warned: set[int] = set()
        self._next = 0.0
        self.loaded()

    def loaded(self) -> None:
        """The server (re)loaded its certificate: read when this one expires."""
        try:
            self.expires = not_after(self.server.settings.cert_file)
        except CertError as exc:
            log.warning("certificate expiry unknown: %s", exc)
            self.expires = None
        self._warned = set()
        self._next = 0.0

    def tick(self) -> str | None:
        """Called often (the server's sweep); looks at most every ``CHECK_EVERY`` seconds.
        Returns the warning given, if one was."""
        now = self.clock()
        if now < self._next or self.expires is None:
            return None
        self._next = now + CHECK_EVERY
        days = (self.expires - now) / 86400
        due = [t for t in THRESHOLDS_DAYS if days <= t and t not in self._warned]
        if not due:
            return None
        self._warned.update(t for t in THRESHOLDS_DAYS if days <= t)
        when = datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = (f"the server certificate expires in {max(days, 0):.0f} days ({when}): run "
                "'chaton certs --renew', then 'chaton reload'" if days > 0 else
                f"the server certificate has expired ({when}): clients will refuse it; run "
                "'chaton certs --renew', then 'chaton reload'")
        log.warning("certificate: %s", text)
        self.server.notice_admins(f"Certificate: {text}")
        return text
