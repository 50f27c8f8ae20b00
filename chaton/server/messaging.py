"""PRIVMSG and NOTICE: to a room (everyone in it) or to a nickname (only that client).

This is the hot path of the server: one :class:`Outgoing` per target, encoded once per
capability variant, queued to each recipient without awaiting.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold
from chaton.server import chanserv
from chaton.server.lines import Outgoing
from chaton.server.room_modes import OP, VOICE, banned
from chaton.server.targets import split_targets

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["relay"]


def relay(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    command = msg.command
    params = msg.params
    if not params or not params[0]:
        conn.numeric(num.ERR_NORECIPIENT, f"No recipient given ({command})")
        return None
    if len(params) < 2 or not params[1]:
        conn.numeric(num.ERR_NOTEXTTOSEND, "No text to send")
        return None
    targets = split_targets(params[0])
    if len(targets) > server.settings.max_targets:
        conn.numeric(num.ERR_TOOMANYTARGETS, params[0], "Too many recipients")
        return None
    text = params[1]
    tags = {k: v for k, v in msg.tags.items() if k[0] == "+"} if msg.tags else None
    echo = "echo-message" in conn.caps
    state = server.state
    pending: Awaitable[None] | None = None
    for target in targets:
        if target[:1] == "#":
            room = state.find_channel(target)
            if room is None:
                conn.numeric(num.ERR_NOSUCHCHANNEL, target, "No such channel")
                continue
            status = room.members.get(conn)
            if status is None and ("n" in room.flags or "m" in room.flags):
                if "s" in room.flags or "i" in room.flags:  # private: not even its name
                    conn.numeric(num.ERR_NOSUCHCHANNEL, target, "No such channel")
                else:
                    conn.numeric(num.ERR_CANNOTSENDTOCHAN, room.name,
                                 "Cannot send to channel (join it first)")
                continue
            if "m" in room.flags and not (status or 0) & (OP | VOICE):
                conn.numeric(num.ERR_CANNOTSENDTOCHAN, room.name,
                             "Cannot send to channel (+m: voice needed)")
                continue
            if room.bans and not (status or 0) & (OP | VOICE) and banned(room, conn):
                conn.numeric(num.ERR_CANNOTSENDTOCHAN, room.name, "Cannot send to channel (+b)")
                continue
            Outgoing(conn.source, command, (room.name, text), tags).send_to(
                room.members, skip=None if echo else conn
            )
        else:
            peer = state.find_nick(target)
            if peer is None:
                if casefold(target) == "chanserv":  # the room service (never to a NOTICE)
                    if command == "PRIVMSG" and pending is None:
                        pending = chanserv.handle(server, conn, text)
                    continue
                conn.numeric(num.ERR_NOSUCHNICK, target, "No such nick/channel")
                continue
            out = Outgoing(conn.source, command, (peer.name, text), tags)
            peer.send(out.line_for(peer))
            if echo and peer is not conn:
                conn.send(out.line_for(conn))
            if peer.away is not None and command == "PRIVMSG":
                conn.numeric(num.RPL_AWAY, peer.name, peer.away)
    return pending


# PRIVMSG <target>{,<target>} <text to be sent>
# NOTICE <target>{,<target>} <text to be sent>
