"""Make untrusted text safe to write to a terminal: the one neutralizer the client uses.

Anything a server or the network controls -- chat text, nicknames, room names, topics,
``ERROR``/``KILL`` reasons, numerics, certificate names, exception messages that quote them --
can hold terminal control sequences. Printed raw, ``ESC ] 0 ; ... BEL`` retitles the user's
terminal, ``ESC [ 2 J`` clears it, the 8-bit CSI U+009B does the same on some terminals, and
bidirectional overrides make a line read differently from what it says. So every line the
client writes to stdout, stderr or a prompt passes through :func:`printable` (or
:func:`printable_lines` where a message has several lines) at the point it is written, and
server text is also passed through :func:`sanitize` where it is put into a message.

Rendering (visible, never dropped, never raising, idempotent):

- C0 controls as caret notation: ESC is ``^[``, BEL ``^G``, NUL ``^@``, CR ``^M``; tab
  becomes one space. DEL is ``^?``.
- Everything else unsafe as ``<U+XXXX>``: C1 controls U+0080-U+009F (U+009B is the 8-bit
  CSI), the bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E, U+200F,
  U+202A-U+202E, U+2066-U+2069), the line and paragraph separators U+2028/U+2029 and lone
  surrogates (which no terminal encoding can write).

The rendered forms are plain printable ASCII, so neutralizing twice changes nothing.
Only :func:`sanitize` removes anything: IRC colour/format codes, which are markup, not text.
"""

from __future__ import annotations

import re

__all__ = ["printable", "printable_lines", "sanitize", "strip_formatting"]

_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"  # mIRC colour with optional fg,bg
    r"|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"  # hex colour
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"  # bold, reset, monospace, reverse, italic, strike, underline
)
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1 (incl. the 8-bit CSI U+009B)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates
)


def _render(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch == "\t":
        return " "
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def printable(text: str) -> str:
    """``text`` with every control, bidi and separator character shown visibly (one line)."""
    return _UNSAFE.sub(_render, text)


def printable_lines(text: str) -> str:
    """Like :func:`printable` but keeps ``\\n`` line breaks (multi-line error messages)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def strip_formatting(text: str) -> str:
    """``text`` without IRC colour and format codes (bold, colours, reverse ...)."""
    return _FORMATTING.sub("", text)


def sanitize(text: str) -> str:
    """IRC text made fit to show: formatting codes removed, then :func:`printable`."""
    return printable(strip_formatting(text))
