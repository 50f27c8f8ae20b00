"""Keyed sliding-window counters with the clock passed in (failed logins, connection rate).

Invariants:
- A hit at time ``t`` counts while ``now < t + window``; counts are exact, not bucketed.
- Per key at most ``limit + 1`` timestamps are kept (older ones cannot change whether the
  limit is reached or passed), so a key costs O(limit) memory however hard it is hammered;
  ``hit`` and ``count`` saturate at ``limit + 1``, so ``hit(key, now) > limit`` still says
  "this event is one too many".
- ``_hits`` is ordered by each key's latest hit (a hit moves its key to the end). With a
  clock that does not go back, the front holds the stalest keys: pruning stops at the first
  live key, and when ``max_keys`` is reached the least recently hit keys are dropped first.
- ``limit == 0`` means unlimited: nothing is recorded and nothing is ever exceeded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

__all__ = ["DEFAULT_MAX_KEYS", "SlidingWindowCounter"]

DEFAULT_MAX_KEYS = 65536
"""Keys one counter tracks at most (a few MiB); beyond it the least recently hit go first."""


class SlidingWindowCounter:
    """At most ``limit`` events per key within any ``window`` seconds."""

    __slots__ = ("_hits", "limit", "max_keys", "window")

    def __init__(self, limit: int, window: float, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if limit < 0 or window <= 0 or max_keys <= 0:
            raise ValueError("limit must be >= 0, window and max_keys > 0")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[Hashable, deque[float]] = {}

    def _fresh(self, key: Hashable, now: float) -> deque[float] | None:
        """The key's timestamps still inside the window, or None (key forgotten)."""
        stamps = self._hits.get(key)
        if stamps is None:
            return None
        horizon = now - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._hits[key]
            return None
        return stamps

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._hits:
            key, stamps = next(iter(self._hits.items()))
            if stamps and stamps[-1] > horizon:
                break
            del self._hits[key]

    def hit(self, key: Hashable, now: float) -> int:
        """Record one event for ``key`` at ``now``; returns the count including it.

        The count saturates at ``limit + 1``: ``hit(...) > limit`` means over the limit.
        Always 0 when unlimited.
        """
        if self.limit == 0:
            return 0
        stamps = self._fresh(key, now)
        if stamps is None:
            stamps = deque(maxlen=self.limit + 1)
        else:
            del self._hits[key]  # re-inserted below, at the end of the order
        stamps.append(now)
        self._prune(now)
        while len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]
        self._hits[key] = stamps
        return len(stamps)

    def count(self, key: Hashable, now: float) -> int:
        """Events for ``key`` within the window ending at ``now`` (at most ``limit + 1``)."""
        stamps = self._fresh(key, now)
        return 0 if stamps is None else len(stamps)

    def exceeded(self, key: Hashable, now: float) -> bool:
        """True when ``key`` has used its ``limit``: one more event would be too many."""
        return self.limit > 0 and self.count(key, now) >= self.limit

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` is no longer :meth:`exceeded` (0 if it is not)."""
        if not self.exceeded(key, now):
            return 0.0
        stamps = self._hits[key]
        return stamps[len(stamps) - self.limit] + self.window - now

    def refund(self, key: Hashable, at: float) -> None:
        """Take back the event recorded for ``key`` at ``at`` (an attempt that succeeded)."""
        stamps = self._hits.get(key)
        if stamps is None:
            return
        try:
            stamps.remove(at)
        except ValueError:
            return
        if not stamps:
            del self._hits[key]

    def reset(self, key: Hashable) -> None:
        """Forget ``key`` (e.g. its failed logins after a successful one)."""
        self._hits.pop(key, None)

    def clear(self) -> None:
        self._hits.clear()

    def __len__(self) -> int:
        """Keys currently tracked (stale ones may linger until the next hit)."""
        return len(self._hits)

    def __repr__(self) -> str:
        return f"<SlidingWindowCounter {self.limit}/{self.window}s, {len(self._hits)} keys>"
