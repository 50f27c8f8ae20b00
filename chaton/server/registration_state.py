"""Registration and login of one client as an explicit state machine: pure, no I/O.

The phases and the events that move between them (h11-style; anything not listed is a
caller bug and raises :class:`RegistrationError`)::

    phase        event                     next phase
    -----------  ------------------------  -----------------------------------------
    CONNECTED    cap_started()             NEGOTIATING  (CAP LS / CAP REQ)
    NEGOTIATING  cap_ended()               CONNECTED    (CAP END)
    CONNECTED    begin_checks()            CHECKING     (only when ready(): see below)
    CHECKING     nick_refused()            CONNECTED    (the nickname was not allowed)
    CHECKING     complete()                REGISTERED   (the one way in)
    any          close()                   CLOSED
    before REG.  nick_given / user_given / pass_given: facts, phase unchanged
    not CLOSED   logged_in (once; SASL may come after registration): phase unchanged

Invariants:
- REGISTERED is entered only by :meth:`complete`, only from CHECKING, so only with a
  nickname and a user name and outside CAP negotiation (IRCv3 capability negotiation).
- :meth:`ready` is the single rule for "registration may finish now"; the server starts
  its checks (PASS password, bans, nickname ownership) exactly when it says so.
- A PASS claim is never a login: it is either taken for verification
  (:meth:`take_pass_claim`, in CHECKING) or dropped by a successful SASL login, and it
  never outlives registration. Only :meth:`logged_in` sets ``account``, once.
- Time is passed in: the registration deadline is fixed at construction from the
  caller's clock, and :meth:`expired` compares against the ``now`` it is given.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

__all__ = ["BEFORE_REGISTRATION", "PassClaim", "Phase", "Registration", "RegistrationError"]


class Phase(Enum):
    CONNECTED = "connected"  # gathering NICK, USER, PASS; CAP and SASL allowed
    NEGOTIATING = "negotiating"  # CAP LS/REQ seen, no CAP END yet: registration waits
    CHECKING = "checking"  # everything given; password, bans and nickname being checked
    REGISTERED = "registered"
    CLOSED = "closed"


#: Phases before registration in which a client may still send commands.
BEFORE_REGISTRATION = frozenset({Phase.CONNECTED, Phase.NEGOTIATING})
_UNREGISTERED = BEFORE_REGISTRATION | {Phase.CHECKING}


class RegistrationError(RuntimeError):
    """An event the current phase does not allow: a bug in the server, not the client."""


class PassClaim(NamedTuple):
    """What ``PASS`` said: an account (empty: the nickname's) and a password, unverified."""

    account: str
    password: str


class Registration:
    """The registration facts and phase of one client (the session extends this)."""

    __slots__ = ("account", "deadline", "nick", "pass_claim", "phase", "realname", "user",
                 "wanted_nick")

    def __init__(self, now: float, timeout: float) -> None:
        self.phase = Phase.CONNECTED
        self.deadline = now + timeout
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.account: str | None = None  # set only by a verified login
        self.pass_claim: PassClaim | None = None
        self.wanted_nick: str | None = None  # a reserved nick refused before the login

    # --- queries ----------------------------------------------------------------------
    @property
    def registered(self) -> bool:
        return self.phase is Phase.REGISTERED

    @property
    def closing(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def negotiating(self) -> bool:
        return self.phase is Phase.NEGOTIATING

    def ready(self) -> bool:
        """May registration finish now? Nickname and user given, CAP negotiation over."""
        return self.phase is Phase.CONNECTED and self.nick is not None and self.user is not None

    def expired(self, now: float) -> bool:
        """Still not registered at the deadline (checked by the server's sweep)."""
        return self.phase in _UNREGISTERED and now > self.deadline

    # --- events -----------------------------------------------------------------------
    def _require(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise RegistrationError(f"not allowed in phase {self.phase.name}")

    def cap_started(self) -> None:
        """CAP LS or CAP REQ: before registration, it waits for CAP END."""
        if self.phase is Phase.CONNECTED:
            self.phase = Phase.NEGOTIATING

    def cap_ended(self) -> None:
        if self.phase is Phase.NEGOTIATING:
            self.phase = Phase.CONNECTED

    def nick_given(self, nick: str) -> None:
        self._require(*BEFORE_REGISTRATION)
        self.nick = nick

    def user_given(self, user: str, realname: str) -> None:
        self._require(*BEFORE_REGISTRATION)
        self.user = user
        self.realname = realname

    def pass_given(self, claim: PassClaim) -> None:
        """Remember a PASS claim; after a SASL login there is nothing left to claim."""
        self._require(*BEFORE_REGISTRATION)
        if self.account is None:
            self.pass_claim = claim

    def logged_in(self, account: str) -> None:
        """A verified login (SASL, also after registration; or the PASS claim in CHECKING)."""
        if self.account is not None:
            raise RegistrationError("already logged in")
        self._require(*BEFORE_REGISTRATION, Phase.CHECKING, Phase.REGISTERED)
        self.account = account
        self.pass_claim = None  # a login supersedes an unverified claim

    def begin_checks(self) -> None:
        if not self.ready():
            raise RegistrationError("registration is not ready")
        self.phase = Phase.CHECKING

    def take_pass_claim(self) -> PassClaim | None:
        """The PASS claim to verify now, once; ``None`` when there is none (or SASL won)."""
        self._require(Phase.CHECKING)
        claim, self.pass_claim = self.pass_claim, None
        return claim if self.account is None else None

    def nick_refused(self) -> None:
        """The nickname may not be used: wait for another NICK."""
        self._require(Phase.CHECKING, *BEFORE_REGISTRATION)
        self.nick = None
        if self.phase is Phase.CHECKING:
            self.phase = Phase.CONNECTED

    def complete(self) -> None:
        self._require(Phase.CHECKING)
        if self.nick is None or self.user is None:
            raise RegistrationError("no nickname or user")
        self.pass_claim = None
        self.wanted_nick = None
        self.phase = Phase.REGISTERED

    def close(self) -> Phase:
        """Enter CLOSED; return the phase left (REGISTERED: the client must leave the state)."""
        was, self.phase = self.phase, Phase.CLOSED
        return was
