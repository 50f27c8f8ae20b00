"""Limits on password guessing that hold when many attempts run at once.

Invariants:
- An attempt is counted *before* its hash runs (:meth:`LoginLimits.begin`), so parallel
  attempts see each other: at most ``login_failures_per_ip`` per address group and
  ``login_failures_per_account`` per account name (existing or not) are ever in the window,
  finished or still hashing.
- A success refunds its own count on the address group and clears the account's failures;
  a failure keeps its count. Nothing else changes a count.
- A limit reached only because attempts are still *in flight* is not a refusal: the new
  attempt waits (:class:`Wait`) until one of them settles, then is counted or refused on
  the failures that are in by then. Ten people behind one NAT logging in at once all get
  in; parallel guesses are still never more than the limit at a time.
- Addresses are counted by group (``addresses.address_group``: by default an IPv4
  address, an IPv6 /64), as one host usually owns them.
- The account limit does not apply to an address group that logged in to that account within
  ``login_known_address_ttl``: strangers' failures cannot lock the owner out from where it
  usually logs in. (Remembered in memory: a restart forgets, which only re-applies the
  account limit.)
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaton.protocol.names import casefold
from chaton.server.throttle import DEFAULT_MAX_KEYS, SlidingWindowCounter

if TYPE_CHECKING:
    from chaton.config import Settings

__all__ = ["Attempt", "LoginLimits", "Wait"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted attempt: :meth:`LoginLimits.settle` it when its hash is done (and
    :meth:`LoginLimits.succeeded` if the password was right)."""

    group: str
    account: str
    at: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Not counted yet: try again when an in-flight attempt with ``key`` settles."""

    key: str


class LoginLimits:
    """Failure windows per address group and per account, plus known (account, group) pairs."""

    def __init__(self, settings: Settings) -> None:
        window = settings.login_failure_window
        self.by_group = SlidingWindowCounter(settings.login_failures_per_ip, window)
        self.by_account = SlidingWindowCounter(settings.login_failures_per_account, window)
        self.known_ttl = settings.login_known_address_ttl
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._in_flight: Counter[str] = Counter()  # "g:" + group / "a:" + account

    def begin(self, group: str, account: str, now: float) -> Attempt | Wait | None:
        """Count an attempt from address ``group`` now; :class:`Wait` when a limit is full
        only with attempts still in flight; None (nothing counted) when it is full with
        failures."""
        key = casefold(account)
        if self.by_group.exceeded(group, now):
            return Wait("g:" + group) if self._in_flight["g:" + group] else None
        if self.by_account.exceeded(key, now) and not self.known(key, group, now):
            return Wait("a:" + key) if self._in_flight["a:" + key] else None
        self.by_group.hit(group, now)
        self.by_account.hit(key, now)
        self._in_flight["g:" + group] += 1
        self._in_flight["a:" + key] += 1
        return Attempt(group, key, now)

    def settle(self, attempt: Attempt) -> tuple[str, str]:
        """The attempt's hash is done (whatever its outcome); returns the keys to wake."""
        keys = ("g:" + attempt.group, "a:" + attempt.account)
        for k in keys:
            self._in_flight[k] -= 1
            if self._in_flight[k] <= 0:
                del self._in_flight[k]
        return keys

    def succeeded(self, attempt: Attempt, now: float) -> None:
        """The password was right: refund the attempt and remember where it came from."""
        self.by_group.refund(attempt.group, attempt.at)
        self.by_account.reset(attempt.account)
        if self.known_ttl > 0:
            pair = (attempt.account, attempt.group)
            self._known.pop(pair, None)
            self._known[pair] = now + self.known_ttl
            while len(self._known) > DEFAULT_MAX_KEYS:
                self._known.popitem(last=False)

    def penalize(self, group: str, now: float) -> None:
        """Count one more failure for the group (a right password that still may not OPER)."""
        self.by_group.hit(group, now)

    def known(self, account: str, group: str, now: float) -> bool:
        expires = self._known.get((account, group))
        if expires is None:
            return False
        if expires <= now:
            del self._known[(account, group)]
            return False
        return True
