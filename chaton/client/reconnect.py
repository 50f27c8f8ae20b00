"""Coming back after the server went away: when to try again, and how long to wait.

Rules (the session and ``chaton.client`` follow them; this module decides nothing by I/O):

- A connection that ends without our ``QUIT`` is *lost* -- the server restarted (its
  ``ERROR`` says so, or it just closed), the network reset it, or it stopped answering our
  PING -- and the client connects again, logs in with the password it was given (kept in
  memory only) and rejoins its rooms.
- It does not come back when it was sent away on purpose: a KILL, a ban (``465``, or an
  ``ERROR`` saying killed/banned/K-lined), a failed login (the next try would fail the same
  way, so a wrong password never loops), a failed certificate check, or ``--no-reconnect``.
  Nor when the very first connection never got in: that is a wrong address, not a restart.
- Waits grow exponentially from :data:`FIRST_DELAY` to :data:`MAX_DELAY` seconds, each
  spread by +/- :data:`JITTER` so that a restarted server is not hit by every client in the
  same instant. A session that stayed up :data:`STABLE_AFTER` seconds starts the growth anew.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "FIRST_DELAY",
    "JITTER",
    "MAX_DELAY",
    "STABLE_AFTER",
    "Backoff",
    "is_final",
    "status_line",
]

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
JITTER = 0.25
STABLE_AFTER = 30.0

# Words servers use when they mean "do not come back" (chaton: "Killed by ...", "You are
# banned ..."; others: K-Lined, G-Lined, Z-Lined, "Banned").
_FINAL = re.compile(r"\b(?:killed|kill|banned|ban|[kgzd]-?lined?)\b", re.IGNORECASE)


def is_final(reason: str) -> bool:
    """True if a server's ``ERROR`` text says the client was removed on purpose."""
    return bool(_FINAL.search(reason))


class Backoff:
    """Delays for successive attempts: 1, 2, 4 ... 60 s, each times a factor in 1 +/- jitter."""

    def __init__(
        self,
        first: float = FIRST_DELAY,
        cap: float = MAX_DELAY,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """The wait before the next attempt (and count it)."""
        base = min(self.cap, self.first * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self.attempt = 0


def status_line(why: str, delay: float, attempt: int) -> str:
    """``connection lost: <why>; reconnecting in 4 s (attempt 3)``."""
    return f"{why}; reconnecting in {max(1, round(delay))} s (attempt {attempt})"
