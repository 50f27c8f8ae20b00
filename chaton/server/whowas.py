"""WHOWAS: who held a nickname lately, from a bounded history.

Invariants:
- At most ``whowas_limit`` entries in all (the oldest go first): nothing here grows with
  traffic, and a lookup scans at most that many.
- An entry shows what others could see then (visible host, real name), never an address.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["WhoWas", "whowas"]

RPL_WHOWASUSER = "314"
RPL_ENDOFWHOWAS = "369"


@dataclass(frozen=True, slots=True)
class Gone:
    nick: str
    user: str
    host: str
    realname: str
    account: str | None
    at: float


class WhoWas:
    """The last ``limit`` nicknames given up (by QUIT or NICK), newest last."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: deque[Gone] = deque()

    def record(self, conn: Session, nick: str) -> None:
        if self.limit <= 0:
            return
        self.entries.append(Gone(nick, conn.user or nick, conn.host, conn.realname,
                                 conn.account, time.time()))
        while len(self.entries) > self.limit:
            self.entries.popleft()

    def find(self, nick: str, count: int) -> list[Gone]:
        """The newest ``count`` entries for ``nick`` (0: all of them)."""
        key = casefold(nick)
        found = [e for e in reversed(self.entries) if casefold(e.nick) == key]
        return found[:count] if count > 0 else found


# WHOWAS <nick> [<count>]
def whowas(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    nick = msg.params[0].split(",")[0]
    arg = msg.param(1)
    count = int(arg) if arg.isascii() and arg.isdigit() and len(arg) < 5 else 0
    found = server.whowas.find(nick, count)
    if not found:
        conn.numeric(num.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
    for entry in found:
        conn.numeric(RPL_WHOWASUSER, entry.nick, entry.user, entry.host, "*", entry.realname)
        if entry.account:
            conn.numeric(num.RPL_WHOISACCOUNT, entry.nick, entry.account, "was logged in as")
        when = time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(entry.at))
        conn.numeric(num.RPL_WHOISSERVER, entry.nick, server.name, when)
    conn.numeric(RPL_ENDOFWHOWAS, nick, "End of WHOWAS")
    return None
