"""Notifications some clients asked for: away-notify, account-notify, chghost, setname,
invite-notify, extended-join, and extended-monitor (the same news for those who MONITOR
a nickname without sharing a room with it).

Each goes only to clients that negotiated its capability; a client that did not sees
what it saw before. Built once per message (:class:`~chaton.server.lines.Outgoing`).
Nobody gets one notification twice: a watcher who also shares a room is told as a peer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaton.history_store import FIRST_JOIN
from chaton.server.history import keep_event, party, room_target
from chaton.server.lines import Outgoing, new_msgid

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["send_join", "tell_peers"]


def tell_peers(
    server: ChatServer, conn: Session, cap: str, command: str, params: list[str],
    *, source: str | None = None, include_self: bool = False,
) -> None:
    """``command`` from ``conn`` to everyone sharing a room with it who has ``cap``, and
    to its ``extended-monitor`` watchers who have ``cap``."""
    out = Outgoing(source or conn.source, command, params, account=conn.account)
    peers = server.state.peers(conn)
    for peer in peers:
        if cap in peer.caps:
            peer.send(out.line_for(peer))
    for watcher in server.monitor.watching(conn.name):
        caps = watcher.caps
        if (cap in caps and "extended-monitor" in caps and watcher is not conn
                and watcher not in peers):
            watcher.send(out.line_for(watcher))
    if include_self and cap in conn.caps:
        conn.send(out.line_for(conn))


def send_join(room: Channel, conn: Session) -> str:
    """The JOIN to the room's members: with account and real name for extended-join, and
    the joiner's away message for away-notify members. Returns the JOIN's msgid."""
    msgid = new_msgid()  # one event, whichever form each member gets
    plain = Outgoing(conn.source, "JOIN", [room.name], msgid=msgid, account=conn.account)
    history = conn.server.history
    if history is not None:
        keep_event(conn.server, (room,), plain, conn.source, conn.account, "JOIN", ())
        history.note(FIRST_JOIN, (room_target(room), party(conn), plain.at))
    extended: Outgoing | None = None
    away = None
    for member in room.members:
        caps = member.caps
        if "extended-join" in caps:
            if extended is None:
                extended = Outgoing(conn.source, "JOIN",
                                    [room.name, conn.account or "*", conn.realname or ""],
                                    msgid=msgid, account=conn.account)
            member.send(extended.line_for(member))
        else:
            member.send(plain.line_for(member))
        if conn.away is not None and member is not conn and "away-notify" in caps:
            if away is None:
                away = Outgoing(conn.source, "AWAY", [conn.away], account=conn.account)
            member.send(away.line_for(member))
    return msgid
