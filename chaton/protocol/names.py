"""Nickname and room-name rules and IRC case-folding.

Nicknames are ASCII only and fold with the ``rfc1459`` casemapping advertised in ISUPPORT
(ASCII letters to lower case, ``[]\\~`` to ``{}|^``), so no two nicknames can look alike
through Unicode tricks.

Room names may hold letters of any script in everyday use (``#café``, ``#команда``,
``#日本語``), so they need rules of their own. Every room name the server holds (the result
of :func:`room_name`) keeps these invariants:

- It starts with ``#``, is in NFKC form and has at most ``channellen`` bytes of UTF-8.
- Every other character is printable ASCII but space, ``,`` and ``:`` (as before, so
  every ASCII name keeps its meaning and its room), a letter (category L*) of a
  recommended script (UTS #31: Latin, Greek, Cyrillic, Arabic, Han, ...), or a combining
  mark (Mn, Mc) right after a letter or mark. So nothing is a control (C0, C1, DEL), a
  format character (zero-width, bidi overrides and isolates, soft hyphen), a space or
  separator, unassigned, private use, a default-ignorable letter or mark (Hangul fillers,
  variation selectors), and outside ASCII there are no digits, punctuation, symbols or
  modifier letters: many of those imitate ASCII ones (hyphen, minus sign, low quote,
  division slash, modifier letter colon or apostrophe), and only letters have a script
  to check.
- Each word (what lies between ASCII punctuation) is written in one script, or in a mix a language
  needs (Han with Hiragana and Katakana, with Hangul or with Bopomofo, and Latin with any of
  those; UTS #39 "highly restrictive"). ``#general`` spelt with a Cyrillic ``e`` is
  refused, whether or not the look-alike table below knows that letter.
- A name with right-to-left letters has no left-to-right letters, and its body starts with
  a right-to-left letter and ends with one, an ASCII digit or a mark (the bidi rule of
  IDNA, RFC 5893), so display reordering cannot make two names look alike.

:func:`room_name` also folds compatibility forms (NFKC): ``#general`` typed with a
fullwidth ``g`` *is* ``#general``, and a room created through it is called ``#general``.

Rooms are looked up by :func:`room_key`, a skeleton: NFKC, full Unicode case folding, the
look-alike table, then the rfc1459 folds, to a fixed point. Names with one key are one room,
so a JOIN of ``#TOP`` spelt in Greek capitals lands in ``#top``. The table holds the
Cyrillic, Greek, Armenian and Latin letters commonly drawn like an ASCII one; Unicode's
full confusables.txt is not in the standard library, and the one-script-per-word rule
stops the look-alikes the table misses from being mixed into a Latin word.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

__all__ = [
    "CASEMAPPING",
    "CHANTYPES",
    "BadRoomName",
    "casefold",
    "is_channel",
    "room_key",
    "room_name",
    "valid_channel",
    "valid_nick",
]

CASEMAPPING = "rfc1459"
CHANTYPES = "#"

_FOLD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~",
    "abcdefghijklmnopqrstuvwxyz{}|^",
)
_FOLD_PUNCT = str.maketrans("[]\\~", "{}|^")

# First character: a letter or one of the RFC 2812 "special" characters; then also digits and '-'.
_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*\Z")


class BadRoomName(ValueError):
    """Why a room name is refused. A bad character appears only as its code point and name,
    never itself, so the text is safe to show."""


def casefold(name: str) -> str:
    """Fold ``name`` so that names equal under rfc1459 casemapping compare equal."""
    return name.translate(_FOLD)


def valid_nick(nick: str, maxlen: int) -> bool:
    """True if ``nick`` is an acceptable ASCII nickname of at most ``maxlen`` characters."""
    return 0 < len(nick) <= maxlen and bool(_NICK.match(nick))


def is_channel(name: str) -> bool:
    """True if ``name`` is addressed as a room (by its prefix), valid or not."""
    return name[:1] in CHANTYPES


# --- room names ----------------------------------------------------------------------------

_ASCII_ALLOWED = frozenset(map(chr, range(0x21, 0x7F))) - {",", ":"}
_PUNCT = re.compile(r"[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]")  # ASCII punctuation: ends words

# First word of a letter's Unicode name -> its script, for the recommended scripts of UTS #31
# (table 5). Letters of other scripts (Cherokee, Lisu, Canadian syllabics, ... several of
# which are drawn like Latin capitals) and "MODIFIER LETTER ..." are refused.
_SCRIPTS = {
    word: word.title()
    for word in (
        "ARABIC", "ARMENIAN", "BENGALI", "BOPOMOFO", "CYRILLIC", "DEVANAGARI", "ETHIOPIC",
        "GEORGIAN", "GREEK", "GUJARATI", "GURMUKHI", "HANGUL", "HEBREW", "HIRAGANA", "KANNADA",
        "KATAKANA", "KHMER", "LAO", "LATIN", "MALAYALAM", "MYANMAR", "ORIYA", "SINHALA", "TAMIL",
        "TELUGU", "THAANA", "THAI", "TIBETAN",
    )
}
_SCRIPTS.update({"CJK": "Han", "IDEOGRAPHIC": "Han", "KATAKANA-HIRAGANA": "Katakana"})
# Script mixes one word may need (UTS #39 "highly restrictive"); any single script is fine.
_MIXES = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Hangul"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
)
# Default-ignorable code points that are letters or marks (the rest are Cf or Cn): they draw
# nothing, so "#general" followed by one would be another room that looks the same.
_INVISIBLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xE0100, 0xE01EF),  # variation selectors supplement
)

# Letters drawn like an ASCII character, by Unicode name (so this file shows no look-alike
# itself). The key folds case *first*, so each entry is a small letter standing for both of
# its cases: it maps to the Latin letter that either case looks like (Cyrillic small "en"
# because its capital looks like H). Where the cases disagree the capital wins (Greek nu:
# the capital looks like N, the small letter like v), as far more words can be spelt in
# capitals. The price is that some unlike names share a key (a Cyrillic word that reads
# "bot" letter for letter is the room #bot); that only ever merges two rooms.
_LOOK_ALIKES: dict[str, tuple[str, ...]] = {
    "a": ("CYRILLIC SMALL LETTER A", "GREEK SMALL LETTER ALPHA", "LATIN SMALL LETTER ALPHA"),
    "b": ("CYRILLIC SMALL LETTER VE", "GREEK SMALL LETTER BETA"),
    "c": ("CYRILLIC SMALL LETTER ES",),
    "d": ("CYRILLIC SMALL LETTER KOMI DE",),
    "e": ("CYRILLIC SMALL LETTER IE", "GREEK SMALL LETTER EPSILON"),
    "g": ("LATIN SMALL LETTER SCRIPT G",),
    "h": (
        "CYRILLIC SMALL LETTER EN", "CYRILLIC SMALL LETTER SHHA", "GREEK SMALL LETTER ETA",
        "ARMENIAN SMALL LETTER HO",
    ),
    "i": (
        "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I", "GREEK SMALL LETTER IOTA",
        "LATIN SMALL LETTER DOTLESS I", "LATIN SMALL LETTER IOTA",
    ),
    "j": ("CYRILLIC SMALL LETTER JE", "GREEK LETTER YOT", "LATIN SMALL LETTER DOTLESS J"),
    "k": ("CYRILLIC SMALL LETTER KA", "GREEK SMALL LETTER KAPPA"),
    "l": ("CYRILLIC SMALL LETTER PALOCHKA", "LATIN LETTER DENTAL CLICK"),
    "m": ("CYRILLIC SMALL LETTER EM", "GREEK SMALL LETTER MU"),
    "n": ("GREEK SMALL LETTER NU", "ARMENIAN SMALL LETTER VO"),
    "o": ("CYRILLIC SMALL LETTER O", "GREEK SMALL LETTER OMICRON", "ARMENIAN SMALL LETTER OH"),
    "p": ("CYRILLIC SMALL LETTER ER", "GREEK SMALL LETTER RHO"),
    "q": ("CYRILLIC SMALL LETTER QA", "ARMENIAN SMALL LETTER ZA"),
    "s": ("CYRILLIC SMALL LETTER DZE",),
    "t": ("CYRILLIC SMALL LETTER TE", "GREEK SMALL LETTER TAU"),
    "u": ("ARMENIAN SMALL LETTER SEH",),
    "v": ("CYRILLIC SMALL LETTER IZHITSA",),
    "w": ("CYRILLIC SMALL LETTER WE",),
    "x": ("CYRILLIC SMALL LETTER HA", "GREEK SMALL LETTER CHI"),
    "y": (
        "CYRILLIC SMALL LETTER U", "CYRILLIC SMALL LETTER STRAIGHT U", "GREEK SMALL LETTER UPSILON",
        "GREEK SMALL LETTER GAMMA",
    ),
    "z": ("GREEK SMALL LETTER ZETA",),
    "!": ("LATIN LETTER RETROFLEX CLICK",),
}
_LOOK_ALIKE_MAP = {
    unicodedata.lookup(name): ascii_char
    for ascii_char, names in _LOOK_ALIKES.items()
    for name in names
}
# Latin small capitals (LATIN LETTER SMALL CAPITAL C ...) read as their letter.
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    with contextlib.suppress(KeyError):  # there is no small capital X
        _LOOK_ALIKE_MAP[unicodedata.lookup("LATIN LETTER SMALL CAPITAL " + _letter)] = (
            _letter.lower()
        )
_LOOK_ALIKE_TABLE = str.maketrans(_LOOK_ALIKE_MAP)


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"


def _script(ch: str) -> str | None:
    """The recommended script of letter ``ch``, or None if it has none."""
    return _SCRIPTS.get(unicodedata.name(ch, "").split(" ", 1)[0])


def _char_problem(ch: str, after_letter: bool) -> str | None:
    """Why ``ch`` may not be in a room name's body (``after_letter``: it follows a letter
    or a mark), or None if it may."""
    if ch in _ASCII_ALLOWED:
        return None
    cat = unicodedata.category(ch)
    if ch == " " or cat[0] == "Z":
        return f"{_describe(ch)} is a space or separator"
    if ch in ",:":
        return f"'{ch}' is not allowed in a room name"
    if cat == "Cc":
        return f"{_describe(ch)} is a control character"
    if cat == "Cf":
        return f"{_describe(ch)} is an invisible formatting character"
    if cat[0] == "C":
        return f"{_describe(ch)} is unassigned, private use or a surrogate"
    if any(low <= ord(ch) <= high for low, high in _INVISIBLE):
        return f"{_describe(ch)} is invisible"
    if cat[0] == "L":
        if _script(ch) is None:
            return f"{_describe(ch)} is not a letter of a script room names may use"
        return None
    if cat in ("Mn", "Mc"):
        return None if after_letter else f"{_describe(ch)} is a mark that follows no letter"
    return f"{_describe(ch)} is not a letter (outside ASCII only letters and marks may be used)"


def _check_words(body: str) -> None:
    """One script per word; a word runs through letters, marks and digits, so neither a
    digit nor a combining mark can cut a mixed word into single-script pieces."""
    for word in _PUNCT.split(body):
        scripts = {s for s in map(_script, word) if s is not None}
        if len(scripts) > 1 and not any(scripts <= mix for mix in _MIXES):
            raise BadRoomName(f"'{word}' mixes {' and '.join(sorted(scripts))} letters")


def _check_bidi(body: str) -> None:
    kinds = [unicodedata.bidirectional(ch) for ch in body]
    if not any(kind in ("R", "AL") for kind in kinds):
        return
    ends = [kind for kind in kinds if kind != "NSM"]
    if "L" in kinds or ends[0] not in ("R", "AL") or ends[-1] not in ("R", "AL", "EN"):
        raise BadRoomName(
            "a right-to-left name holds no left-to-right letters, starts with a right-to-left"
            " letter and ends with one or a digit"
        )


def room_name(name: str, maxlen: int) -> str:
    """The room a JOIN of ``name`` means: its NFKC form, if that keeps the invariants above.

    Raises :class:`BadRoomName` saying why not (``maxlen`` counts bytes of UTF-8).
    """
    if not is_channel(name):
        raise BadRoomName("a room name starts with #")
    name = unicodedata.normalize("NFKC", name)
    if len(name.encode("utf-8", "surrogatepass")) > maxlen:
        raise BadRoomName(f"a room name has at most {maxlen} bytes")
    body = name[1:]
    if not body:
        raise BadRoomName("the room name is empty")
    after_letter = False
    for ch in body:
        problem = _char_problem(ch, after_letter)
        if problem is not None:
            raise BadRoomName(problem)
        after_letter = unicodedata.category(ch)[0] in "LM"
    if not body.isascii():
        _check_words(body)
        _check_bidi(body)
    return name


def valid_channel(name: str, maxlen: int) -> bool:
    """True if ``name`` is a room name as the server holds it (see :func:`room_name`)."""
    try:
        return room_name(name, maxlen) == name
    except BadRoomName:
        return False


def _fold_room(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name).casefold()
    return folded.translate(_LOOK_ALIKE_TABLE).translate(_FOLD_PUNCT)


def room_key(name: str) -> str:
    """The skeleton rooms are looked up by: names with one key are one room.

    Defined for any string (lookups take raw input) and idempotent.
    """
    if name.isascii():  # the common case, and the hot path of PRIVMSG: plain rfc1459
        return name.translate(_FOLD)
    key = name
    for _ in range(8):  # NFKC and case folding can each undo the other; stop when stable
        folded = _fold_room(key)
        if folded == key:
            break
        key = folded
    return key
