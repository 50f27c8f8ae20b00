"""IRCv3 ``labeled-response``: a command's own replies, told apart from everything else.

A client that negotiated ``labeled-response`` and ``batch`` may put ``label=<id>`` on a
command. The server then answers with exactly one of: ``ACK`` (nothing else to say), the
single reply carrying the label, or a ``labeled-response`` batch around every reply.

Invariants:
- Only lines the command itself produces are labeled. While a labeled command runs, the
  session's ``send`` is this object's :meth:`LabeledReply.send`, and a line counts as a
  reply only when it is sent from the command's own context (a :mod:`contextvars` value
  set around the handler; an awaited handler's task inherits it). Messages from other
  clients that reach this session while the command awaits a commit or argon2 pass
  straight through, unlabeled and outside the batch.
- Memory stays bounded: at most one reply is held back (to learn whether there will be a
  second); from the second on, replies stream to the link inside the batch, so long
  replies are still paced by the SendQ.
- A reply that already carries a ``batch`` tag (a nested batch's contents) is passed on
  as it is; the nested ``BATCH`` lines themselves join the outer batch.
- Every labeled command ends in exactly one :meth:`LabeledReply.finish`, which gives the
  session back its plain ``send``; finishing twice is harmless.
"""

from __future__ import annotations

import itertools
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from chaton.protocol.message import encode_line, escape_tag_value

if TYPE_CHECKING:
    from chaton.server.session import Session

__all__ = ["LABEL_MAX_BYTES", "LabeledReply", "wanted_label", "with_tag"]

#: The longest label honoured (IRCv3: labels are at most 64 bytes); longer ones are ignored.
LABEL_MAX_BYTES = 64

_current: ContextVar[LabeledReply | None] = ContextVar("chaton_label", default=None)
_batch_ids = itertools.count(1)


def wanted_label(conn: Session, tags: dict[str, str]) -> str | None:
    """The label to answer with, if the client asked for one and may get it."""
    label = tags.get("label")
    if not label or len(label.encode()) > LABEL_MAX_BYTES:
        return None
    caps = conn.caps
    if "labeled-response" not in caps or "batch" not in caps:
        return None
    return label


def with_tag(line: bytes, tag: bytes) -> bytes:
    """``line`` with one more tag in front (the line is already encoded)."""
    if line[:1] == b"@":
        return b"@" + tag + b";" + line[1:]
    return b"@" + tag + b" " + line


def _in_a_batch(line: bytes) -> bool:
    if line[:1] != b"@":
        return False
    tags = line[1:line.find(b" ")]
    return tags.startswith(b"batch=") or b";batch=" in tags


class LabeledReply:
    """The replies to one labeled command, on their way to one session."""

    __slots__ = ("_batch", "_conn", "_done", "_held", "_label", "_send", "_token")

    def __init__(self, conn: Session, label: str) -> None:
        self._conn = conn
        self._send = conn.link.send
        self._label = ("label=" + escape_tag_value(label)).encode()
        self._held: bytes | None = None
        self._batch: bytes | None = None  # b"batch=<id>" once the batch is open
        self._token: Token[LabeledReply | None] | None = None
        self._done = False

    # --- the command's context -----------------------------------------------------------
    def enter(self) -> None:
        """Start capturing: called right before the handler runs."""
        self._conn.send = self.send
        self._token = _current.set(self)

    def leave(self) -> None:
        """The handler returned (its task, if any, keeps the context it was made in)."""
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    # --- output --------------------------------------------------------------------------
    def send(self, line: bytes) -> None:
        """The session's ``send`` while the command runs."""
        if _current.get() is not self:
            self._send(line)  # somebody else's message: not part of the reply
            return
        if self._batch is None:
            if self._held is None and not _in_a_batch(line):
                self._held = line
                return
            self._open_batch()
        if _in_a_batch(line):
            self._send(line)
        else:
            self._send(with_tag(line, self._batch))  # type: ignore[arg-type]

    def _open_batch(self) -> None:
        ref = f"L{next(_batch_ids):x}"
        conn = self._conn
        start = encode_line(conn.server.name, "BATCH", ["+" + ref, "labeled-response"])
        self._send(with_tag(start, self._label))
        self._batch = b"batch=" + ref.encode()
        held, self._held = self._held, None
        if held is not None:
            self._send(with_tag(held, self._batch))

    def finish(self) -> None:
        """The command is done: close the batch, label the lone reply, or ``ACK``."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        conn.send = self._send
        self.leave()
        if self._batch is not None:
            ref = self._batch[len(b"batch="):].decode()
            self._send(encode_line(conn.server.name, "BATCH", ["-" + ref]))
        elif self._held is not None:
            self._send(with_tag(self._held, self._label))
        else:
            self._send(with_tag(encode_line(conn.server.name, "ACK", []), self._label))
        self._held = None
