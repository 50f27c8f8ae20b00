"""Nickname and room-name rules and IRC case-folding.

chaton uses the ``rfc1459`` casemapping (advertised in ISUPPORT): ASCII letters fold to
lower case and ``[]\\~`` fold to ``{}|^``. Nicknames are ASCII only, so no two nicknames can
look alike through Unicode tricks.
"""

from __future__ import annotations

import re

__all__ = [
    "CASEMAPPING",
    "CHANTYPES",
    "casefold",
    "is_channel",
    "valid_channel",
    "valid_nick",
]

CASEMAPPING = "rfc1459"
CHANTYPES = "#"

_FOLD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~",
    "abcdefghijklmnopqrstuvwxyz{}|^",
)

# First character: a letter or one of the RFC 2812 "special" characters; then also digits and '-'.
_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*\Z")
# Room names: '#', then anything but space, comma, BELL, ':' and control characters.
_CHANNEL = re.compile(r"#[^\x00-\x20\x7f,:]+\Z")


def casefold(name: str) -> str:
    """Fold ``name`` so that names equal under rfc1459 casemapping compare equal."""
    return name.translate(_FOLD)


def valid_nick(nick: str, maxlen: int) -> bool:
    """True if ``nick`` is an acceptable ASCII nickname of at most ``maxlen`` characters."""
    return 0 < len(nick) <= maxlen and bool(_NICK.match(nick))


def is_channel(name: str) -> bool:
    """True if ``name`` is addressed as a room (by its prefix), valid or not."""
    return name[:1] in CHANTYPES


def valid_channel(name: str, maxlen: int) -> bool:
    """True if ``name`` is an acceptable room name of at most ``maxlen`` characters."""
    return 1 < len(name) <= maxlen and bool(_CHANNEL.match(name))
