"""Room modes: parse a MODE change, apply what is allowed, and say exactly what changed.

The room's modes live on :class:`~chaton.server.state.Channel`; this module is the only
code that changes them. Supported (and advertised in ISUPPORT, nothing more):

- member status (PREFIX=(ov)@+): ``o`` operator, ``v`` voice; a parameter both ways;
- ``k`` key: a parameter when set (and, by convention, when unset);
- ``l`` limit: a parameter when set;
- flags ``i`` invite-only, ``m`` moderated, ``n`` no outside messages, ``s`` secret,
  ``t`` topic lock;
- lists ``b`` bans, ``e`` exceptions, ``I`` invite exceptions: masks ``nick!user@host``
  with ``*``/``?`` (rfc1459-casefolded) or ``$a:account``; at most :data:`MAX_LIST` each.

Invariants:
- :func:`parse_changes` never raises, whatever the mode string and arguments: unknown
  letters and missing or bad parameters come back as errors, the rest as changes.
- At most :data:`MAX_MODES` parameter-taking changes are applied per command (``MODES``).
- :func:`apply` returns only the changes that changed something, so the announced
  ``MODE`` line and a later ``MODE #room`` query always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaton.protocol.names import casefold
from chaton.protocol.wildcards import wildcard_match

if TYPE_CHECKING:
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = [
    "FLAGS",
    "LISTS",
    "MAX_LIST",
    "MAX_MODES",
    "OP",
    "VOICE",
    "Change",
    "ListEntry",
    "ModeError",
    "apply",
    "banned",
    "format_changes",
    "listed",
    "mask_matches",
    "mode_string",
    "normalize_mask",
    "parse_changes",
    "prefix",
]

#: Member status bits, kept as the value of ``Channel.members[session]``.
OP = 1
VOICE = 2
MEMBER_MODES = {"o": OP, "v": VOICE}
FLAGS = "imnst"
#: Parameter-taking changes applied per MODE command (ISUPPORT ``MODES``).
MAX_MODES = 4
MAX_KEY = 23


@dataclass(frozen=True, slots=True)
class Change:
    adding: bool
    letter: str
    arg: str | None = None


@dataclass(frozen=True, slots=True)
class ModeError:
    """Why one letter was not applied: ``unknown``, ``param`` (missing), ``bad`` (invalid)."""

    kind: str
    letter: str
    arg: str = ""


def parse_changes(modestring: str, args: list[str]) -> tuple[list[Change], list[ModeError]]:
    """Split ``+o-v nick nick`` into changes, taking parameters in order (never raises)."""
    changes: list[Change] = []
    errors: list[ModeError] = []
    adding = True
    pending = list(args)
    with_param = 0
    for letter in modestring:
        if letter in "+-":
            adding = letter == "+"
            continue
        if letter in LISTS:
            if not pending:
                errors.append(ModeError("list", letter))  # "MODE #r +b": show the list
                continue
            with_param += 1
            mask = normalize_mask(pending.pop(0))
            if with_param <= MAX_MODES:
                if " " in mask or not mask.isprintable() or len(mask) > 200:
                    errors.append(ModeError("bad", letter, mask))
                else:
                    changes.append(Change(adding, letter, mask))
            continue
        takes = letter in MEMBER_MODES or letter == "k" or (letter == "l" and adding)
        if letter not in MEMBER_MODES and letter not in FLAGS and letter not in "kl":
            errors.append(ModeError("unknown", letter))
            continue
        arg: str | None = None
        if takes:
            if not pending:
                if letter != "k" or adding:  # "-k" without the key is accepted
                    errors.append(ModeError("param", letter))
                    continue
            else:
                arg = pending.pop(0)
            with_param += 1
            if with_param > MAX_MODES:
                continue  # past MODES: dropped, as other servers do
        if letter == "l" and adding:
            assert arg is not None
            if not arg.isascii() or not arg.isdigit() or not 0 < int(arg[:9]) < 1_000_000:
                errors.append(ModeError("bad", letter, arg))
                continue
            arg = str(int(arg[:9]))
        if letter == "k" and adding:
            assert arg is not None
            key = arg[:MAX_KEY]
            if not key or any(ch in key for ch in " ,:") or not key.isprintable():
                errors.append(ModeError("bad", letter, arg))
                continue
            arg = key
        changes.append(Change(adding, letter, arg))
    return changes, errors


def apply(
    room: Channel, changes: list[Change], find_member: dict[str, Session], *, by: str,
    at: float,
) -> tuple[list[Change], list[ModeError]]:
    """Apply ``changes`` to ``room`` (``by`` and ``at`` are recorded on list entries);
    return those that changed something, and the errors: member changes whose nickname is
    not in the room (``find_member``: casefolded nick -> member), full lists."""
    applied: list[Change] = []
    errors: list[ModeError] = []
    for change in changes:
        letter, arg = change.letter, change.arg
        if letter in LISTS:
            assert arg is not None
            entries = room.list_for(letter)
            key = casefold(arg)
            if change.adding and key not in entries:
                if len(entries) >= MAX_LIST:
                    errors.append(ModeError("full", letter, arg))
                    continue
                entries[key] = ListEntry(arg, by, at)
                applied.append(change)
            elif not change.adding and key in entries:
                applied.append(Change(False, letter, entries.pop(key).mask))
        elif letter in MEMBER_MODES:
            assert arg is not None
            member = find_member.get(arg)
            if member is None:
                errors.append(ModeError("not-member", letter, arg))
                continue
            bit = MEMBER_MODES[letter]
            old = room.members[member]
            new = old | bit if change.adding else old & ~bit
            if new != old:
                room.members[member] = new
                applied.append(Change(change.adding, letter, member.name))
        elif letter == "k":
            if change.adding and room.key != arg:
                room.key = arg
                applied.append(change)
            elif not change.adding and room.key is not None:
                room.key = None
                applied.append(Change(False, "k", "*"))
        elif letter == "l":
            if change.adding:
                assert arg is not None
                if room.limit != int(arg):
                    room.limit = int(arg)
                    applied.append(change)
            elif room.limit is not None:
                room.limit = None
                applied.append(change)
        elif change.adding and letter not in room.flags:
            room.flags = room.flags | {letter}
            applied.append(change)
        elif not change.adding and letter in room.flags:
            room.flags = room.flags - {letter}
            applied.append(change)
    return applied, errors


def format_changes(changes: list[Change]) -> list[str]:
    """``["+ov-k", "alice", "bob", "*"]``: one MODE line's mode string and parameters."""
    out = ""
    params: list[str] = []
    sign = ""
    for change in changes:
        want = "+" if change.adding else "-"
        if want != sign:
            out += want
            sign = want
        out += change.letter
        if change.arg is not None:
            params.append(change.arg)
    return [out, *params]


def mode_string(room: Channel, *, show_key: bool) -> list[str]:
    """What ``MODE #room`` answers (324): flags, then ``k`` and ``l`` with their values."""
    letters = "".join(sorted(room.flags))
    params: list[str] = []
    if room.key is not None:
        letters += "k"
        params.append(room.key if show_key else "*")
    if room.limit is not None:
        letters += "l"
        params.append(str(room.limit))
    return ["+" + letters, *params]


#: Prefixes by status bits (``OP | VOICE`` = 3), without and with multi-prefix: a table
#: lookup, because NAMES asks once per member (bench: a call per entry cost 32% more).
PREFIXES = ("", "@", "+", "@")
MULTI_PREFIXES = ("", "@", "+", "@+")


def prefix(status: int, *, multi: bool) -> str:
    """The NAMES/WHO prefix of a member's status: ``@``, ``+``, both with multi-prefix."""
    return (MULTI_PREFIXES if multi else PREFIXES)[status & 3]


# --- ban, exception and invite-exception lists ----------------------------------------------

#: List modes and their (list reply, end reply, end text): ``MODE #room b`` lists bans.
LISTS = {
    "b": ("367", "368", "End of channel ban list"),
    "e": ("348", "349", "End of channel exception list"),
    "I": ("346", "347", "End of channel invite list"),
}
#: Entries per list (ISUPPORT ``MAXLIST``).
MAX_LIST = 100
#: The account extban (ISUPPORT ``EXTBAN=$,a``): ``$a:alice`` matches whoever is logged in
#: as alice, whatever nickname they use.
ACCOUNT_EXTBAN = "$a:"


@dataclass(frozen=True, slots=True)
class ListEntry:
    mask: str
    set_by: str
    set_at: float


def normalize_mask(mask: str) -> str:
    """``bob`` -> ``bob!*@*``, ``*@host`` -> ``*!*@host``; an extban stays as it is."""
    if mask.startswith(ACCOUNT_EXTBAN):
        return ACCOUNT_EXTBAN + mask[len(ACCOUNT_EXTBAN):]
    if "!" not in mask and "@" not in mask:
        return mask + "!*@*"
    if "!" not in mask:
        return "*!" + mask
    if "@" not in mask:
        return mask + "@*"
    return mask


def mask_matches(mask: str, conn: Session) -> bool:
    """Does ``mask`` (``nick!user@host`` with wildcards, or ``$a:account``) match ``conn``?
    Compared rfc1459-casefolded, like nicknames."""
    if mask.startswith(ACCOUNT_EXTBAN):
        account = conn.account
        return account is not None and casefold(account) == casefold(mask[3:])
    return wildcard_match(casefold(mask), casefold(conn.source))


def listed(entries: dict[str, ListEntry], conn: Session) -> bool:
    return any(mask_matches(entry.mask, conn) for entry in entries.values())


def banned(room: Channel, conn: Session) -> bool:
    """Caught by a ``+b`` and not excused by a ``+e``."""
    return bool(room.bans) and listed(room.bans, conn) and not listed(room.excepts, conn)
