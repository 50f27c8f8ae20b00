"""SASL PLAIN for the client, with no I/O: the ``AUTHENTICATE`` payload lines and the outcome.

The IRCv3 SASL rules kept here: the base64 payload goes in chunks of 400 bytes; if the last
chunk is exactly 400 bytes (or the payload is empty) a lone ``+`` follows, so the server
knows the payload ended.
"""

from __future__ import annotations

import base64
import enum

from chaton.protocol import numerics as N
from chaton.protocol.message import Message

__all__ = [
    "CHUNK",
    "SaslOutcome",
    "authenticate_lines",
    "outcome_of",
    "plain_payload",
]

#: Bytes of base64 per AUTHENTICATE line.
CHUNK = 400


class SaslOutcome(enum.Enum):
    """How a login attempt ended."""

    SUCCESS = "success"  #: 903 (or 907: this connection is already logged in)
    FAILED = "failed"  #: 904/902/905/906: wrong credentials or refused for this nick
    UNSUPPORTED = "unsupported"  #: the server does not take PLAIN (908 without it)
    REFUSED = "refused"  #: the server will not do SASL *now* (e.g. after registration)


def plain_payload(account: str, password: str) -> bytes:
    """``authzid NUL authcid NUL passwd`` with an empty authzid (log in as ``account``)."""
    if "\x00" in account or "\x00" in password:
        raise ValueError("account and password cannot contain NUL")
    return b"\x00" + account.encode("utf-8") + b"\x00" + password.encode("utf-8")


def authenticate_lines(payload: bytes) -> list[Message]:
    """The ``AUTHENTICATE`` messages that carry ``payload`` after the server's ``+``."""
    encoded = base64.b64encode(payload).decode("ascii")
    chunks = [encoded[i : i + CHUNK] for i in range(0, len(encoded), CHUNK)]
    if not chunks or len(chunks[-1]) == CHUNK:
        chunks.append("+")
    return [Message("AUTHENTICATE", (chunk,)) for chunk in chunks]


_FAILED = {N.ERR_SASLFAIL, N.ERR_NICKLOCKED, N.ERR_SASLTOOLONG, N.ERR_SASLABORTED}


def outcome_of(msg: Message, mechanisms: set[str] | None = None) -> SaslOutcome | None:
    """The outcome ``msg`` reports for a login in progress, or ``None`` if it says nothing.

    ``mechanisms`` is what a 908 listed earlier; a 904 after a 908 without PLAIN means the
    server cannot do PLAIN at all, not that the password was wrong.
    """
    code = msg.command
    if code in (N.RPL_SASLSUCCESS, N.ERR_SASLALREADY):
        return SaslOutcome.SUCCESS
    if code == N.ERR_SASLFAIL and mechanisms is not None and "PLAIN" not in mechanisms:
        return SaslOutcome.UNSUPPORTED
    if code in _FAILED:
        return SaslOutcome.FAILED
    if code in (N.ERR_ALREADYREGISTERED, N.ERR_NOTREGISTERED):
        return SaslOutcome.REFUSED
    if code == N.ERR_UNKNOWNCOMMAND and msg.param(1).upper() == "AUTHENTICATE":
        return SaslOutcome.REFUSED
    if code == "FAIL" and msg.param(0).upper() == "AUTHENTICATE":
        return SaslOutcome.REFUSED
    return None
