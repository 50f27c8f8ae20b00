"""Who is online and which rooms exist: the in-memory state the event loop owns.

Invariants (kept by the methods here; handlers never edit the dicts directly):
- ``nicks`` maps the casefolded nickname of every *registered* client to its connection;
  two clients never share a folded nickname.
- ``channels`` (and each ``client.channels``) maps :func:`room_key` of a room's name to the
  room, so names that differ only by case, width or a look-alike letter find one room.
- A client is in ``room.members`` exactly when the room is in ``client.channels``.
- An unregistered room exists while it has members; the last one leaving deletes it. A
  registered room (``owner`` set) stays, empty, until it is dropped (``room_registry``).
- ``room.members[client]`` is the client's status in the room (``room_modes.OP`` and
  ``VOICE`` bits): the first to join a new room is its operator; in a registered room the
  standing grants decide instead.
- ``nicks`` never holds a service's nickname (``SERVICE_NICKS``): they are always taken.
- Room modes (``flags``, ``key``, ``limit``) change only through ``room_modes.apply``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chaton.protocol.names import casefold, room_key
from chaton.server.room_modes import OP, ListEntry

if TYPE_CHECKING:
    from chaton.server.session import Session

__all__ = ["SERVICE_NICKS", "Channel", "ServerState"]

#: Casefolded nicknames of the server's pseudo-users: no client may hold them.
SERVICE_NICKS = frozenset({"chanserv"})


#: Modes of a new room: no outside messages, topic set by operators only.
DEFAULT_FLAGS = frozenset("nt")


@dataclass(eq=False, slots=True)
class Channel:
    """One room. ``members`` keeps join order and maps each member to its status bits."""

    name: str
    created: float = field(default_factory=time.time)
    members: dict[Session, int] = field(default_factory=dict)
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    flags: frozenset[str] = DEFAULT_FLAGS
    key: str | None = None
    limit: int | None = None
    invited: dict[str, float] = field(default_factory=dict)  # casefolded nick -> expiry
    bans: dict[str, ListEntry] = field(default_factory=dict)  # casefolded mask -> entry
    excepts: dict[str, ListEntry] = field(default_factory=dict)
    invexes: dict[str, ListEntry] = field(default_factory=dict)
    # Registered rooms only (``room_registry``): the owning account (casefolded, or
    # ``ADMINS_OWNER``), standing grants by casefolded account, and write-through bookkeeping.
    owner: str | None = None
    grants: dict[str, int] = field(default_factory=dict)
    writes: int = 0  # write-through transactions in flight
    stale: bool = False  # changed elsewhere while a write was in flight: re-read after it

    def list_for(self, letter: str) -> dict[str, ListEntry]:
        """The ``b``, ``e`` or ``I`` list."""
        return self.bans if letter == "b" else self.excepts if letter == "e" else self.invexes


class ServerState:
    """Registered clients by nickname and rooms by name."""

    __slots__ = ("channels", "nicks")

    def __init__(self) -> None:
        self.nicks: dict[str, Session] = {}
        self.channels: dict[str, Channel] = {}

    def find_nick(self, nick: str) -> Session | None:
        return self.nicks.get(casefold(nick))

    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(room_key(name))

    def nick_taken(self, nick: str, by: Session | None = None) -> bool:
        """True if another client than ``by`` holds ``nick`` (in any case)."""
        folded = casefold(nick)
        if folded in SERVICE_NICKS:
            return True
        holder = self.nicks.get(folded)
        return holder is not None and holder is not by

    def add_nick(self, conn: Session, nick: str) -> None:
        self.nicks[casefold(nick)] = conn

    def rename(self, conn: Session, old: str, new: str) -> None:
        self.nicks.pop(casefold(old), None)
        self.nicks[casefold(new)] = conn

    def join(self, conn: Session, name: str) -> tuple[Channel, bool]:
        """Add ``conn`` to room ``name`` (created if new); return it and whether it is new."""
        key = room_key(name)
        room = self.channels.get(key)
        created = room is None
        if room is None:
            room = self.channels[key] = Channel(name)
        room.members[conn] = OP if created and room.owner is None else 0
        conn.channels[key] = room
        return room, created

    def part(self, conn: Session, room: Channel) -> None:
        key = room_key(room.name)
        room.members.pop(conn, None)
        conn.channels.pop(key, None)
        if not room.members and room.owner is None:
            self.channels.pop(key, None)

    def remove(self, conn: Session) -> set[Session]:
        """Forget ``conn`` everywhere; return the clients who shared a room with it."""
        peers: set[Session] = set()
        for room in list(conn.channels.values()):
            peers.update(room.members)
            self.part(conn, room)
        peers.discard(conn)
        if conn.nick is not None and self.nicks.get(casefold(conn.nick)) is conn:
            del self.nicks[casefold(conn.nick)]
        return peers

    def peers(self, conn: Session) -> set[Session]:
        """Everyone sharing at least one room with ``conn``, ``conn`` excluded."""
        out: set[Session] = set()
        for room in conn.channels.values():
            out.update(room.members)
        out.discard(conn)
        return out
