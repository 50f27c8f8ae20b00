"""MONITOR (IRCv3): be told when nicknames come online or go offline.

Invariants:
- ``watchers[nick]`` (casefolded) holds exactly the sessions whose ``monitoring`` set has
  ``nick``; a closing session leaves every set it was in (:meth:`Monitor.forget`).
- A session monitors at most ``monitor_limit`` nicknames (ISUPPORT ``MONITOR``); past it,
  734 names the ones refused and nothing else changes.
- Online/offline notices follow the nickname table: registration, NICK changes and
  disconnections; each costs one dict lookup when nobody watches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import MAX_LINE_BYTES, Message
from chaton.protocol.names import casefold, valid_nick

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["Monitor", "monitor"]

RPL_MONONLINE = "730"
RPL_MONOFFLINE = "731"
RPL_MONLIST = "732"
RPL_ENDOFMONLIST = "733"
ERR_MONLISTFULL = "734"


class Monitor:
    """Who watches which nickname."""

    __slots__ = ("server", "watchers")

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.watchers: dict[str, set[Session]] = {}

    def watching(self, nick: str) -> set[Session]:
        return self.watchers.get(casefold(nick), set())

    def online(self, conn: Session) -> None:
        """``conn`` now holds its nickname (registered, or renamed to it)."""
        for watcher in self.watching(conn.name):
            _send_list(watcher, RPL_MONONLINE, [conn.source])

    def offline(self, nick: str) -> None:
        for watcher in self.watching(nick):
            _send_list(watcher, RPL_MONOFFLINE, [nick])

    def unwatch(self, conn: Session, key: str) -> None:
        """``conn`` stops watching the casefolded nickname ``key``."""
        conn.monitoring.discard(key)
        watchers = self.watchers.get(key)
        if watchers is not None:
            watchers.discard(conn)
            if not watchers:
                del self.watchers[key]

    def forget(self, conn: Session) -> None:
        for key in list(conn.monitoring):
            self.unwatch(conn, key)


def _send_list(conn: Session, code: str, items: list[str]) -> None:
    """``730``/``731``/``732`` with comma-separated items, split to fit in lines."""
    head = len(f":{conn.server.name} {code} {conn.name} :".encode()) + 2
    batch: list[str] = []
    size = head
    for item in items:
        if batch and size + len(item) + 1 > MAX_LINE_BYTES:
            conn.numeric(code, ",".join(batch))
            batch, size = [], head
        batch.append(item)
        size += len(item) + 1
    if batch:
        conn.numeric(code, ",".join(batch))


# MONITOR + <targets> | - <targets> | C | L | S
def monitor(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    sub = msg.params[0]
    book = server.monitor
    targets = [t for t in msg.param(1).split(",") if t]
    if sub == "+":
        _add(server, book, conn, targets)
    elif sub == "-":
        for nick in targets:
            book.unwatch(conn, casefold(nick))
    elif sub.upper() == "C":
        book.forget(conn)
    elif sub.upper() == "L":
        _send_list(conn, RPL_MONLIST, sorted(conn.monitoring))
        conn.numeric(RPL_ENDOFMONLIST, "End of MONITOR list")
    elif sub.upper() == "S":
        _status(server, conn, sorted(conn.monitoring))
    else:
        conn.numeric(num.ERR_UNKNOWNCOMMAND, "MONITOR", f"Unknown MONITOR subcommand {sub[:10]}")
    return None


def _add(server: ChatServer, book: Monitor, conn: Session, targets: Iterable[str]) -> None:
    limit = server.settings.monitor_limit
    added: list[str] = []
    for index, nick in enumerate(targets := list(targets)):
        if not valid_nick(nick, server.settings.nicklen):
            continue
        key = casefold(nick)
        if key in conn.monitoring:
            continue
        if len(conn.monitoring) >= limit:
            conn.numeric(ERR_MONLISTFULL, str(limit), ",".join(targets[index:]),
                         "Monitor list is full")
            break
        conn.monitoring.add(key)
        book.watchers.setdefault(key, set()).add(conn)
        added.append(nick)
    _status(server, conn, added)


def _status(server: ChatServer, conn: Session, nicks: list[str]) -> None:
    on: list[str] = []
    off: list[str] = []
    for nick in nicks:
        other = server.state.find_nick(nick)
        if other is not None:
            on.append(other.source)
        else:
            off.append(nick)
    if on:
        _send_list(conn, RPL_MONONLINE, on)
    if off:
        _send_list(conn, RPL_MONOFFLINE, off)
