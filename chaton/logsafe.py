"""Log lines that cannot lie: client-supplied text can never forge a line or a terminal.

Invariants:
- Every log record's message goes through :func:`shown` in :class:`SafeFormatter`, so the
  rule holds for every call site, present and future: anything not printable (C0 and C1
  controls, CR, LF, ESC, DEL, bidi and other format characters) is written as a visible
  escape (``\\x1b``, ``\\u202e``), and a backslash as ``\\\\``, so an escape in the log
  always means the client sent that character.
- A traceback's lines are each prefixed with ``  | ``: an exception message carrying a
  client's newline cannot pass for a log line of its own.
- Nothing derived from a password is logged; call sites log an account name only when an
  account of that name exists (see ``accounts.check_password``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "SafeFormatter", "shown"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: str) -> str:
    """``text`` with every unprintable character (and the backslash) made visible."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, at the cost of one scan
    return "".join(
        "\\\\" if ch == "\\" else ch if ch.isprintable() else _escape(ch) for ch in text
    )


class SafeFormatter(logging.Formatter):
    """A formatter that applies :func:`shown` to the message and fences tracebacks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = shown(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join("  | " + shown(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("  | " + shown(line) for line in stack_info.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``serve --log-format json``, for the journal or a log
    collector): ``time``, ``level``, ``message`` and ``traceback`` if any. JSON escapes
    every control character itself, so a client's text can no more forge a line here."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)
