"""PRIVMSG and NOTICE: to a room (everyone in it) or to a nickname (only that client).

This is the hot path of the server: one :class:`Outgoing` per target, encoded once per
capability variant, queued to each recipient without awaiting. With history on, each
message is also recorded; the group commit keeps it from reaching any socket before its
row is in the WAL (``chaton.server.history``), so nothing here waits for the disk unless
the writer has fallen ``history_max_pending`` rows behind.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING

from chaton.history_store import private_key
from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold
from chaton.server import chanserv
from chaton.server.history import party, room_target, stored
from chaton.server.lines import MESSAGE_TAGS, Outgoing, new_msgid
from chaton.server.room_modes import OP, VOICE, banned
from chaton.server.targets import split_targets

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = ["relay"]


def relay(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    """PRIVMSG, NOTICE and TAGMSG. A NOTICE never gets an error back (no loops between
    bots); a TAGMSG (only tags) reaches only clients that negotiated ``message-tags``."""
    command = msg.command
    params = msg.params
    tagmsg = command == "TAGMSG"
    quiet = command == "NOTICE"
    if not params or not params[0]:
        if not quiet:
            conn.numeric(num.ERR_NORECIPIENT, f"No recipient given ({command})")
        return None
    if not tagmsg and (len(params) < 2 or not params[1]):
        if not quiet:
            conn.numeric(num.ERR_NOTEXTTOSEND, "No text to send")
        return None
    targets = split_targets(params[0])
    if len(targets) > server.settings.max_targets:
        if not quiet:
            conn.numeric(num.ERR_TOOMANYTARGETS, params[0], "Too many recipients")
        return None
    text = "" if tagmsg else params[1]
    tags = {k: v for k, v in msg.tags.items() if k[0] == "+"} if msg.tags else None
    if tagmsg and not tags:
        return None  # nothing to deliver
    echo = "echo-message" in conn.caps
    # Typing notices are for the moment: delivered, never kept (reactions and replies are).
    keep = not tagmsg or not tags or not tags.keys() <= _TRANSIENT_TAGS
    state = server.state
    account = conn.account
    pending: Awaitable[None] | None = None
    bot = "B" in conn.user_modes
    metrics = server.metrics
    history = server.history if keep else None
    for target in targets:
        body = (target,) if tagmsg else (target, text)
        status_only = 0  # STATUSMSG: "@#room" reaches operators, "+#room" voice and up
        if target[:2] in ("@#", "+#"):
            status_only = OP if target[0] == "@" else OP | VOICE
            target = target[1:]
        if target[:1] == "#":
            room = state.find_channel(target)
            if room is None:
                if not quiet:
                    conn.numeric(num.ERR_NOSUCHCHANNEL, target, "No such channel")
                continue
            status = room.members.get(conn)
            refusal = _refusal(room, conn, status)
            if refusal is not None:
                if not quiet:
                    code, why = refusal
                    conn.numeric(code, target if code == num.ERR_NOSUCHCHANNEL else room.name,
                                 why)
                continue
            shown = room.name if not status_only else body[0][0] + room.name
            out = Outgoing(conn.source, command, (shown, *body[1:]), tags,
                           msgid=new_msgid(), account=account, bot=bot)
            if status_only:  # for some members only: not kept, so never replayed to all
                members = [m for m, bits in room.members.items() if bits & status_only
                           and (m is not conn or echo)]
                if tagmsg:
                    out.send_to_tagged(members)
                else:
                    out.send_to(members)
                continue
            if tagmsg:
                out.send_to_tagged(room.members, skip=None if echo else conn)
            else:
                out.send_to(room.members, skip=None if echo else conn)
            metrics.messages += 1
            metrics.deliveries += len(room.members) - (not echo)
            if history is not None:
                history.record(
                    stored(out, conn, command, room_target(room), room.name, body[1:], tags),
                    out, partial(_not_stored, conn, command, room.name))
        else:
            peer = state.find_nick(target)
            if peer is None:
                if casefold(target) == "chanserv":  # the room service (never to a NOTICE)
                    if command == "PRIVMSG" and pending is None:
                        pending = chanserv.handle(server, conn, text)
                    continue
                if not quiet:
                    conn.numeric(num.ERR_NOSUCHNICK, target, "No such nick/channel")
                continue
            out = Outgoing(conn.source, command, (peer.name, *body[1:]), tags,
                           msgid=new_msgid(), account=account, bot=bot)
            _to_peer(out, conn, peer, tagmsg, echo)
            metrics.messages += 1
            metrics.deliveries += 1
            if history is not None:
                mine, theirs = party(conn), party(peer)
                history.record(
                    stored(out, conn, command, private_key(mine, theirs), peer.name, body[1:],
                           tags, ((mine, peer.name), (theirs, conn.name or "*"))),
                    out, partial(_not_stored, conn, command, peer.name))
            if tagmsg:
                continue
            if peer.away is not None and command == "PRIVMSG":
                conn.numeric(num.RPL_AWAY, peer.name, peer.away)
    if history is not None and history.backlogged and pending is None:
        return history.wait()  # the disk is behind: this sender waits for it
    return pending


#: Client tags that make a TAGMSG worth nothing later (IRCv3 typing notifications).
_TRANSIENT_TAGS = frozenset({"+typing", "+draft/typing"})


def _to_peer(out: Outgoing, conn: Session, peer: Session, tagmsg: bool, echo: bool) -> None:
    """Deliver at once (a closing client has already left the nick table, so ``peer`` is
    live), and echo to the sender if it asked."""
    if not tagmsg or peer.tag_mode & MESSAGE_TAGS:
        # To oneself, the delivery is not a reply (labeled-response): only the echo is,
        # so the delivery bypasses the reply capture.
        (peer.link.send if peer is conn else peer.send)(out.line_for(peer))
    if echo and (not tagmsg or conn.tag_mode & MESSAGE_TAGS):
        conn.send(out.line_for(conn))


def _not_stored(conn: Session, command: str, target: str) -> None:
    """The commit failed: the message was withdrawn from every queue, and the sender
    hears so (standard reply)."""
    if not conn.closing:
        conn.send_msg("FAIL", command, "MESSAGE_ERROR", target,
                      "Message not delivered: the server could not store it")


def _refusal(room: Channel, conn: Session, status: int | None) -> tuple[str, str] | None:
    """Why ``conn`` may not speak in ``room`` (numeric and text), or ``None``: it may."""
    flags = room.flags
    if status is None and ("n" in flags or "m" in flags):
        if "s" in flags or "i" in flags:  # private: not even its name
            return num.ERR_NOSUCHCHANNEL, "No such channel"
        return num.ERR_CANNOTSENDTOCHAN, "Cannot send to channel (join it first)"
    if "m" in flags and not (status or 0) & (OP | VOICE):
        return num.ERR_CANNOTSENDTOCHAN, "Cannot send to channel (+m: voice needed)"
    if room.bans and not (status or 0) & (OP | VOICE) and banned(room, conn):
        return num.ERR_CANNOTSENDTOCHAN, "Cannot send to channel (+b)"
    return None


# PRIVMSG <target>{,<target>} <text to be sent>
# NOTICE <target>{,<target>} <text to be sent>
