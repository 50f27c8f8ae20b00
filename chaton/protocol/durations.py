"""The one duration grammar of chaton: server (UBAN), admin CLI and client (/ban) alike.

Invariants:
- A duration is one or more ``<digits><unit>`` pieces, unit ``w d h m s`` in any case,
  optionally separated by spaces: ``90s``, ``30m``, ``1h30m`` and ``1h 30m`` are all valid
  and :func:`format_duration` writes what :func:`parse_duration` reads back.
- When a duration is followed by free text (a ban reason), :func:`take_duration` consumes
  the longest run of leading words that are duration pieces, so ``1h 30m spam`` is 90
  minutes and the reason ``spam`` everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["UNITS", "DurationError", "format_duration", "parse_duration", "take_duration"]

UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\s*\d{1,10}\s*[wdhms])+\s*", re.IGNORECASE | re.ASCII)
_PIECE = re.compile(r"(?:\d{1,10}[wdhms])+", re.IGNORECASE | re.ASCII)
_PART = re.compile(r"(\d+)\s*([wdhms])", re.IGNORECASE | re.ASCII)
MAX_TEXT = 64


class DurationError(ValueError):
    """Text that is not a positive duration; the message says what is expected."""


def parse_duration(text: str) -> int:
    """Seconds in ``text`` (see the grammar above); :class:`DurationError` if none or zero."""
    if len(text) > MAX_TEXT or not _DURATION.fullmatch(text):
        shown = repr(text if len(text) <= 60 else text[:60] + "...")
        raise DurationError(f"{shown} is not a duration; use e.g. 90s, 30m, 2h, 7d, 1w or 1h30m")
    seconds = sum(int(n) * UNITS[u.lower()] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise DurationError("a duration must be longer than zero")
    return seconds


def take_duration(words: Sequence[str]) -> tuple[str, list[str]]:
    """Split leading duration words from the rest: ``["1h", "30m", "spam"]`` gives
    ``("1h 30m", ["spam"])``; ``("", words)`` when the first word is no duration."""
    count = 0
    while count < len(words) and _PIECE.fullmatch(words[count]):
        count += 1
    return " ".join(words[:count]), list(words[count:])


def format_duration(seconds: float, *, parts: int | None = None) -> str:
    """``5400`` -> ``"1h 30m"``: whole seconds (fractions dropped) in w/d/h/m/s units.

    ``parts`` keeps only the largest units (``parts=2``: ``"1h 59m"``, not ``"1h 59m 59s"``).
    """
    remaining = max(0, int(seconds))
    out: list[str] = []
    for unit, size in UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    if parts is not None:
        out = out[:parts]
    return " ".join(out) or "0s"
