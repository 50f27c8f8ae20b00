"""Comma-separated targets (``JOIN #a,#b``, ``NAMES``, ``PRIVMSG``...), each answered once.

A client could otherwise name one room 56 times in one line and have the server answer,
or deliver to every member, 56 times. Duplicates are dropped by their casefolded form
(``#General`` and ``#general`` are one target), empty items are ignored, and order is
kept. The limits per command are announced in ``TARGMAX`` (``ChatServer._isupport``).
"""

from __future__ import annotations

from chaton.protocol.names import casefold

__all__ = ["split_targets"]


def split_targets(text: str) -> list[str]:
    """The distinct targets in ``text``, first spelling kept, in order."""
    seen: dict[str, str] = {}
    for item in text.split(","):
        if item:
            seen.setdefault(casefold(item), item)
    return list(seen.values())
