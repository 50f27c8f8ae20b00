"""IRC wildcard masks (``*`` any run, ``?`` one character), matched without backtracking.

A regular expression built from a client's mask (``*a*a*a*a*…b``) can take exponential time
on a non-matching name, and a ban mask is matched on every JOIN and message: a room
operator could stall the server. :func:`wildcard_match` is the classic greedy matcher
with one remembered ``*``: O(len(mask) * len(text)) at worst, whatever the input.
"""

from __future__ import annotations

__all__ = ["wildcard_match"]


def wildcard_match(mask: str, text: str) -> bool:
    """Does ``text`` match ``mask`` as a whole? (Both already casefolded by the caller.)"""
    m = t = 0
    star = -1
    resume = 0
    while t < len(text):
        if m < len(mask) and (mask[m] == "?" or mask[m] == text[t]) and mask[m] != "*":
            m += 1
            t += 1
        elif m < len(mask) and mask[m] == "*":
            star, resume = m, t
            m += 1
        elif star >= 0:
            m = star + 1
            resume += 1
            t = resume
        else:
            return False
    while m < len(mask) and mask[m] == "*":
        m += 1
    return m == len(mask)
