"""A log budget per address group: a client cannot make the server's log grow without end.

Invariants:
- Log lines a client can cause (connects, refusals, failed logins, handler errors) go
  through :class:`ClientLog`; each address group may cause at most ``log_lines_per_ip``
  of them per ``log_window`` seconds. The rest are counted, not written, and folded into
  one line when the window ends: ``... 840 more like this from 2001:db8::/64``.
- The budget's memory is bounded: at most ``MAX_GROUPS`` groups are tracked; past that
  the oldest window is folded early.
- Escaping is not done here but by the formatter (``chaton.logsafe``), for every line.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaton.config import Settings

__all__ = ["MAX_GROUPS", "ClientLog"]

log = logging.getLogger("chaton")

MAX_GROUPS = 10_000


class ClientLog:
    """Writes client-caused log lines within each address group's budget."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.log_lines_per_ip
        self.window = settings.log_window
        self._windows: dict[str, list[float]] = {}  # group -> [start, written, suppressed]

    def __call__(self, group: str, level: int, msg: str, *args: Any) -> None:
        if self.limit <= 0:
            log.log(level, msg, *args)
            return
        now = time.monotonic()
        window = self._windows.get(group)
        if window is not None and now - window[0] >= self.window:
            self._fold(group, window)
            window = None
        if window is None:
            if len(self._windows) >= MAX_GROUPS:
                oldest = next(iter(self._windows))
                self._fold(oldest, self._windows[oldest])
            window = self._windows[group] = [now, 0.0, 0.0]
        if window[1] < self.limit:
            window[1] += 1
            log.log(level, msg, *args)
        else:
            window[2] += 1

    def fold_expired(self, now: float | None = None) -> None:
        """Write the summaries of windows that ended (the server's sweep calls this)."""
        now = time.monotonic() if now is None else now
        for group, window in list(self._windows.items()):
            if now - window[0] >= self.window:
                self._fold(group, window)

    def _fold(self, group: str, window: list[float]) -> None:
        del self._windows[group]
        if window[2]:
            log.warning("... %d more like this from %s in %g seconds (log budget)",
                        int(window[2]), group, self.window)
