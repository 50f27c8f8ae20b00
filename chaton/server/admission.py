"""Admission: which new connections get in, and who makes room when the server is full.

Invariants:
- Counts are of *open* sessions: a session stops counting the moment it starts closing
  (``closing``), not when its socket finally goes after the close grace.
- Every per-address limit counts address groups (``addresses``), not exact addresses.
- Connections still registering have their own caps, in total (``max_unregistered``) and
  per group (``max_unregistered_per_ip``). Past the total, or when the server is full, the
  *oldest* unregistered connection is closed to make room; registered users are never
  refused because of unregistered ones, and never evicted.
- ``unregistered`` keeps arrival order (a dict used as an ordered set), so the oldest is
  found in O(1).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from chaton.server.throttle import SlidingWindowCounter

if TYPE_CHECKING:
    from chaton.config import Settings
    from chaton.server.client_log import ClientLog
    from chaton.server.session import Session

__all__ = ["Admission"]

EVICTED = "Server busy: too many connections still registering, and this one waited longest"


class Admission:
    """Connection counts and the admission decision of one server."""

    def __init__(self, settings: Settings, client_log: ClientLog) -> None:
        self.settings = settings
        self.client_log = client_log
        self.open = 0
        self.per_group: Counter[str] = Counter()
        self.unregistered: dict[Session, None] = {}
        self.unregistered_per_group: Counter[str] = Counter()
        self.connect_rate = SlidingWindowCounter(
            settings.connect_rate_per_ip, settings.connect_rate_window
        )

    def admit(self, conn: Session, now: float) -> str | None:
        """Count ``conn``; return why it must be refused, if it must (making room first)."""
        s = self.settings
        group = conn.group
        self.open += 1
        self.per_group[group] += 1
        self.unregistered[conn] = None
        self.unregistered_per_group[group] += 1
        if s.max_clients_per_ip and self.per_group[group] > s.max_clients_per_ip:
            return f"Too many connections from your address (limit {s.max_clients_per_ip})"
        if (
            s.max_unregistered_per_ip
            and self.unregistered_per_group[group] > s.max_unregistered_per_ip
        ):
            return (f"Too many connections still registering from your address "
                    f"(limit {s.max_unregistered_per_ip})")
        if self.connect_rate.exceeded(group, now):
            return (
                f"Connecting too fast: at most {s.connect_rate_per_ip} connections per "
                f"{s.connect_rate_window:g} seconds from one address"
            )
        self.connect_rate.hit(group, now)
        while len(self.unregistered) > s.max_unregistered and self._evict_oldest(conn):
            pass
        while self.open > s.max_clients:
            if not self._evict_oldest(conn):
                return "Too many connections on this server; try again later"
        return None

    def _evict_oldest(self, keep: Session) -> bool:
        """Close the oldest unregistered session other than ``keep``; False if none."""
        for oldest in self.unregistered:
            if oldest is not keep:
                self.client_log(oldest.group, logging.INFO, "evicted ip=%s: %s", oldest.ip,
                                EVICTED)
                oldest.quit(EVICTED)  # calls closing(), which forgets it
                return True
        return False

    def registered(self, conn: Session) -> None:
        """``conn`` completed registration: it no longer counts as registering."""
        if self.unregistered.pop(conn, False) is None:
            self._uncount_unregistered(conn.group)

    def closing(self, conn: Session) -> None:
        """``conn`` started closing: it counts no more (called once per session)."""
        self.open -= 1
        group = conn.group
        self.per_group[group] -= 1
        if self.per_group[group] <= 0:
            del self.per_group[group]
        if self.unregistered.pop(conn, False) is None:
            self._uncount_unregistered(group)

    def _uncount_unregistered(self, group: str) -> None:
        self.unregistered_per_group[group] -= 1
        if self.unregistered_per_group[group] <= 0:
            del self.unregistered_per_group[group]
