"""WHO: a room's members, or everyone a mask matches; WHOX fields (``%tcuihsnfdlaor``).

Invariants:
- Privacy: a member of a private (``+s``/``+i``) room is listed through that room only to
  its members; a user with user mode ``+i`` is matched by a wildcard mask only for
  someone who shares a room with it (or itself, or an admin); its exact nickname finds
  it, as WHOIS does. The real address (WHOX ``i``) is shown
  only to admins and to the user itself.
- A mask is compared, casemapping-aware and with ``*``/``?``, with the nickname, user
  name, visible host, real name and server name (the non-backtracking matcher).
- Long answers are produced as the client reads them (paced), never beyond its send
  queue; one answer never scans the user list more than once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold, is_channel
from chaton.protocol.wildcards import wildcard_match
from chaton.server.room_modes import prefix
from chaton.server.rooms import visible_to

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["WHO_LINE_GUESS", "who"]

#: A generous size of one 352 line: answers that could pass a quarter of the send queue
#: are paced, the rest sent at once (no extra loop pass for the common case).
WHO_LINE_GUESS = 200
#: WHOX fields, in the order the reply gives them.
WHOX_ORDER = "tcuihsnfdlaor"
RPL_WHOSPCRPL = "354"


class Query:
    """One WHO request: what to list and in which form (352, or 354 with WHOX fields)."""

    __slots__ = ("fields", "ops_only", "token")

    def __init__(self, options: str) -> None:
        flags, _, whox = options.partition("%")
        fields, _, token = whox.partition(",")
        self.ops_only = "o" in flags
        self.fields = "".join(f for f in WHOX_ORDER if f in fields) if "%" in options else ""
        # A query type token is 1 to 3 digits (WHOX); anything else is not echoed.
        self.token = token if token.isascii() and token.isdigit() and len(token) <= 3 else "0"

    def send(self, server: ChatServer, conn: Session, room: str, other: Session,
             status: int) -> None:
        flags = ("G" if other.away is not None else "H") + ("*" if other.is_admin else "")
        flags += "B" if "B" in other.user_modes else ""
        flags += prefix(status, multi="multi-prefix" in conn.caps)
        if not self.fields:
            conn.numeric(num.RPL_WHOREPLY, room, other.user or "*", other.host, server.name,
                         other.name, flags, f"0 {other.realname or other.name}")
            return
        values = {
            "t": self.token, "c": room, "u": other.user or "*",
            "i": other.ip_param if (conn.is_admin or conn is other) else "255.255.255.255",
            "h": other.host, "s": server.name, "n": other.name, "f": flags, "d": "0",
            "l": str(int(time.monotonic() - other.last_active)),
            "a": other.account or "0", "o": "n/a", "r": other.realname or other.name,
        }
        conn.numeric(RPL_WHOSPCRPL, *(values[f] for f in self.fields))


# WHO <mask> [<o>][%<fields>[,<token>]]
def who(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    mask = msg.param(0) or "*"
    query = Query(msg.param(1))
    if is_channel(mask):
        room = server.state.find_channel(mask)
        rows: list[tuple[str, Session, int]] = []
        if room is not None and visible_to(room, conn):  # a private room's members: its own
            rows = [(room.name, m, s) for m, s in room.members.items()
                    if not query.ops_only or m.is_admin]
    else:
        rows = list(_matching(server, conn, mask, query))
    if len(rows) * WHO_LINE_GUESS >= server.settings.sendq_bytes // 4:
        return _paced(server, conn, rows, query, mask)  # too big for one go
    for room_name, other, status in rows:
        query.send(server, conn, room_name, other, status)
    conn.numeric(num.RPL_ENDOFWHO, mask, "End of WHO list")
    return None


def _matching(server: ChatServer, conn: Session, mask: str, query: Query
              ) -> Iterable[tuple[str, Session, int]]:
    """Users the mask matches that ``conn`` may see, each with a room they share (or ``*``)."""
    exact = server.state.find_nick(mask) if "*" not in mask and "?" not in mask else None
    candidates: Iterable[Session] = (exact,) if exact is not None else (
        server.state.nicks.values() if "*" in mask or "?" in mask else ())
    folded = casefold(mask)
    server_name = casefold(server.name)
    admin = conn.is_admin
    for other in candidates:
        if query.ops_only and not other.is_admin:
            continue
        shared = _shared_room(conn, other)
        if exact is None and "i" in other.user_modes and shared is None and (
            other is not conn and not admin
        ):
            continue  # invisible: a mask finds it only for those who share a room with it
        if exact is None and not any(
            wildcard_match(folded, casefold(value)) for value in (
                other.name, other.user or "", other.host, other.realname, server_name)
        ):
            continue
        if shared is None:
            yield "*", other, 0
        else:
            yield shared.name, other, shared.members.get(other, 0)


def _shared_room(conn: Session, other: Session) -> Channel | None:
    """A room both are in that ``conn`` may name (the first one ``other`` joined)."""
    for key, room in other.channels.items():
        if key in conn.channels:
            return room
    return None


async def _paced(server: ChatServer, conn: Session, rows: list[tuple[str, Session, int]],
                 query: Query, mask: str) -> None:
    """A long WHO, produced as the client reads it."""
    for room_name, other, status in rows:
        if conn.closing:
            return
        if not other.closing:
            query.send(server, conn, room_name, other, status)
            await conn.paced()
    conn.numeric(num.RPL_ENDOFWHO, mask, "End of WHO list")
