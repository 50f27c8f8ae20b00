"""Per-connection flood control: a token bucket with the clock passed in.

A client may send ``burst`` lines at once; after that one line per ``1/rate`` seconds is
processed and the rest wait in the connection's backlog (the "fakelag" of Ergo). The caller
disconnects a client whose backlog outgrows its limit. Time is an argument so the bucket is
tested without sleeping.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``rate == 0`` means unlimited."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Spend a token if one is there and return 0; else return the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def spend(self, tokens: float) -> None:
        """Charge ``tokens`` more for a command that made the server produce a lot; the
        balance may go below zero (later lines wait), but never below ``-burst``."""
        if self.rate > 0:
            self._tokens = max(-float(self.burst), self._tokens - tokens)
