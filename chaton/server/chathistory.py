"""Reading history back: ``CHATHISTORY`` (IRCv3 ``draft/chathistory``, with
``draft/event-playback``) and the replay on JOIN for clients that cannot ask.

Invariants:
- Who may read a conversation is decided here, from the current state, at every request:
  a room's history belongs to its current members (from their first join on when
  ``history_visibility`` says "joined"); a private conversation to its two parties (an
  account, or one guest connection). A name that resolves to nothing readable is refused
  with the same ``INVALID_TARGET`` whether or not the room exists.
- A read first waits until everything already accepted is committed, so a client that
  asks right after it spoke finds what it said, and a replay on JOIN is exactly what was
  said before the JOIN (the stored JOIN itself is the boundary: no gap, no duplicate).
- Stored lines go out as the reader would have seen them live: ``msgid``, ``time``,
  ``account`` and client tags only as its capabilities allow; events and TAGMSG only with
  ``draft/event-playback``. Reads run on the history reader thread, never on the loop.
- A reply is charged to the flood budget by its size (the session charges what a command
  produced), and no request returns more than ``chathistory_max`` messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from chaton.history_store import HistoryStore, StoredMessage, private_key
from chaton.protocol import numerics as num
from chaton.protocol.message import Message, encode_line, escape_tag_value
from chaton.protocol.names import casefold
from chaton.server.history import party, room_target
from chaton.server.lines import ACCOUNT_TAG, MESSAGE_TAGS, SERVER_TIME, server_time

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session
    from chaton.server.state import Channel

__all__ = [
    "CHATHISTORY_CAP",
    "EVENT_PLAYBACK_CAP",
    "Readable",
    "chathistory",
    "joined_only",
    "parse_limit",
    "parse_ref",
    "readable",
    "replay_missed_private",
    "replay_on_join",
    "resolve",
    "send_batch",
]

log = logging.getLogger("chaton")

CHATHISTORY_CAP = "draft/chathistory"
EVENT_PLAYBACK_CAP = "draft/event-playback"

#: What a client without event playback gets back: the messages, not the events.
MESSAGES = ("PRIVMSG", "NOTICE")
#: Events whose line has no target parameter (they are kept once per room).
_NO_TARGET = frozenset({"NICK", "QUIT"})
#: How far a replay counts what it leaves out ("over 1000 earlier messages not shown").
COUNT_AT_MOST = 1000
_SUBCOMMANDS = frozenset({"LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS"})
_batch_ids = iter(range(1, 1 << 62))


@dataclass(frozen=True, slots=True)
class Ref:
    """A ``msgid=`` or ``timestamp=`` reference (a timestamp in whole milliseconds)."""

    msgid: str | None = None
    at: float | None = None


@dataclass(frozen=True, slots=True)
class Readable:
    """A conversation the asker may read: its key, and whether only from the asker's
    first join on (``history_visibility``)."""

    key: str
    joined_only: bool = False


def parse_ref(text: str) -> Ref | None:
    """``msgid=<id>`` or ``timestamp=<ISO 8601>``; ``None`` if it is neither."""
    kind, sep, value = text.partition("=")
    if not sep or not value:
        return None
    if kind == "msgid":
        return Ref(msgid=value)
    if kind == "timestamp":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None  # a time without a zone means nothing to compare with
        return Ref(at=round(moment.timestamp() * 1000) / 1000)
    return None


def parse_limit(text: str, most: int) -> int | None:
    """A request's message count: a positive ASCII number, cut to ``most``; ``None`` if it
    is not one (``isdigit`` alone would take other scripts' digits)."""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        return None
    return min(int(text), most)


def _fail(conn: Session, code: str, *context: str) -> None:
    texts = {
        "INVALID_PARAMS": "Invalid parameters",
        "INVALID_TARGET": "Messages could not be retrieved: no such target, or not yours to read",
        "NEED_MORE_PARAMS": "Missing parameters",
        "UNKNOWN_COMMAND": "Unknown subcommand",
        "MESSAGE_ERROR": "Messages could not be retrieved",
    }
    conn.send_msg("FAIL", "CHATHISTORY", code, *context, texts[code])


# --- who may read what ------------------------------------------------------------------

def readable(server: ChatServer, conn: Session, name: str) -> Readable | str | None:
    """What ``name`` lets ``conn`` read: a room it is in, itself, or a nickname it has a
    private conversation with. A ``str`` is an account whose key must be looked up in the
    store (an offline peer); ``None``: nothing."""
    if name[:1] == "#":
        room = server.state.find_channel(name)
        if room is None or conn not in room.members:
            return None
        return Readable(room_target(room), joined_only(server, room))
    mine = party(conn)
    if casefold(name) == casefold(conn.name):
        return Readable(private_key(mine, mine))
    peer = server.state.find_nick(name)
    if peer is not None:
        return Readable(private_key(mine, party(peer)))
    return name  # resolved against the conversations table on the reader thread


def joined_only(server: ChatServer, room: Channel) -> bool:
    """Whether members see only what was said since they first joined ``room``."""
    setting = server.settings.history_visibility
    return setting == "joined" or (setting == "auto" and "i" in room.flags)


def resolve(store: HistoryStore, conn_party: str,
             what: Readable | str) -> tuple[str, float | None] | None:
    """(key, earliest time readable) on the reader thread, or ``None``."""
    if isinstance(what, str):
        key = store.conversation_with(conn_party, what)
        return None if key is None else (key, None)
    if what.joined_only:
        return what.key, _first_join(store, what.key, conn_party)
    return what.key, None


def _first_join(store: HistoryStore, key: str, conn_party: str) -> float:
    first = store.first_join(key, conn_party)
    return first if first is not None else time.time()  # not recorded yet: from now


# --- rendering --------------------------------------------------------------------------

def history_line(conn: Session, row: StoredMessage, batch: str | None) -> bytes:
    """``row`` as ``conn`` would have received it live, inside ``batch``."""
    mode = conn.tag_mode
    tags: list[str] = []
    if batch is not None:
        tags.append("batch=" + batch)
    if mode & SERVER_TIME:
        tags.append("time=" + server_time(row.at))
    if mode & MESSAGE_TAGS and row.msgid:
        tags.append("msgid=" + row.msgid)
    if mode & ACCOUNT_TAG and row.account:
        tags.append("account=" + escape_tag_value(row.account))
    if mode & MESSAGE_TAGS and row.tags:
        tags.extend(f"{k}={escape_tag_value(v)}" if v else k for k, v in row.tags.items())
    params = row.params if row.command in _NO_TARGET else (row.recipient, *row.params)
    line = encode_line(row.source, row.command, params)
    return ("@" + ";".join(tags) + " ").encode() + line if tags else line


def send_batch(conn: Session, kind: str, target: str | None,
               rows: Sequence[StoredMessage]) -> None:
    """``rows`` in a ``kind`` batch (plain lines for a client without ``batch``)."""
    ref = f"H{next(_batch_ids):x}" if "batch" in conn.caps else None
    if ref is not None:
        conn.send_msg("BATCH", "+" + ref, kind, *([target] if target else []))
    for row in rows:
        conn.send(history_line(conn, row, ref))
    if ref is not None:
        conn.send_msg("BATCH", "-" + ref)


def _commands(conn: Session) -> tuple[str, ...] | None:
    """Which stored commands ``conn`` may get back (``None``: all of them)."""
    if EVENT_PLAYBACK_CAP in conn.caps:
        return None if conn.tag_mode & MESSAGE_TAGS else (
            "PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "KICK", "NICK", "TOPIC", "MODE")
    return MESSAGES


# --- CHATHISTORY ------------------------------------------------------------------------

# CHATHISTORY LATEST|BEFORE|AFTER|AROUND <target> <ref> <limit>
# CHATHISTORY BETWEEN <target> <ref> <ref> <limit> | TARGETS <ref> <ref> <limit>
def chathistory(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    history = server.history
    if history is None:
        conn.numeric(num.ERR_UNKNOWNCOMMAND, "CHATHISTORY", "Unknown command")
        return None
    params = msg.params
    sub = params[0].upper()
    if sub not in _SUBCOMMANDS:
        _fail(conn, "UNKNOWN_COMMAND", params[0][:32])
        return None
    needed = 4 if sub == "BETWEEN" else 3
    if len(params) < needed + 1:
        _fail(conn, "NEED_MORE_PARAMS", sub)
        return None
    limit = parse_limit(params[needed], server.settings.chathistory_max)
    if limit is None:
        _fail(conn, "INVALID_PARAMS", sub, params[needed][:32])
        return None
    if sub == "TARGETS":
        start, end = parse_ref(params[1]), parse_ref(params[2])
        if start is None or end is None or start.at is None or end.at is None:
            _fail(conn, "INVALID_PARAMS", sub, params[1][:64])
            return None
        return _targets(server, conn, start.at, end.at, limit)
    target = params[1]
    refs: list[Ref | None] = []
    for text in params[2:needed]:
        if text == "*" and sub == "LATEST":
            refs.append(None)
            continue
        ref = parse_ref(text)
        if ref is None:
            _fail(conn, "INVALID_PARAMS", sub, text[:64])
            return None
        refs.append(ref)
    what = readable(server, conn, target)
    if what is None:
        _fail(conn, "INVALID_TARGET", sub, target[:64])
        return None
    return _query(server, conn, sub, target, what, refs, limit)


async def _query(server: ChatServer, conn: Session, sub: str, target: str,
                 what: Readable | str, refs: list[Ref | None], limit: int) -> None:
    history = server.history
    assert history is not None
    await history.wait()
    me = party(conn)
    commands = _commands(conn)

    def run(store: HistoryStore) -> list[StoredMessage] | None:
        resolved = resolve(store, me, what)
        if resolved is None:
            return []  # a nickname with no conversation: nothing to show
        key, since = resolved
        if sub == "LATEST":
            ref = refs[0]
            after = None if ref is None else _point(store, key, ref, after=True)
            if ref is not None and after is None:
                return None
            return store.latest(key, limit, after=after, commands=commands, since=since)
        first = refs[0]
        assert first is not None
        if sub == "BETWEEN":
            second = refs[1]
            assert second is not None
            return _between(store, key, first, second, limit, commands, since)
        if sub == "AROUND":
            centre = _point(store, key, first, after=False)
            if centre is None:
                return None
            return store.around(key, centre, limit, commands=commands, since=since)
        point = _point(store, key, first, after=sub == "AFTER")
        if point is None:
            return None
        if sub == "BEFORE":
            return store.before(key, point, limit, commands=commands, since=since)
        return store.after(key, point, limit, commands=commands, since=since)

    rows = await history.read(run)
    if conn.closing:
        return
    if readable(server, conn, target) is None:  # kicked (or the room ended) meanwhile
        _fail(conn, "INVALID_TARGET", sub, target[:64])
        return
    if rows is None:  # a msgid that is not in this conversation
        _fail(conn, "INVALID_PARAMS", sub, "msgid")
        return
    assert isinstance(rows, list)
    send_batch(conn, "chathistory", target, rows)


def _point(store: HistoryStore, key: str, ref: Ref, *, after: bool) -> int | None:
    """The position of ``ref``: a message's id, or for a timestamp the boundary that makes
    ``id >`` mean "later than" (``after``) or ``id <`` mean "earlier than"."""
    if ref.msgid is not None:
        return store.position(key, msgid=ref.msgid)
    return store.position(key, at=ref.at, after=after)


def _between(store: HistoryStore, key: str, first: Ref, second: Ref, limit: int,
             commands: Sequence[str] | None, since: float | None
             ) -> list[StoredMessage] | None:
    forward = _order(store, key, first) <= _order(store, key, second)
    low, high = (first, second) if forward else (second, first)
    start = _point(store, key, low, after=True)
    end = _point(store, key, high, after=False)
    if start is None or end is None:
        return None
    return store.between(key, start if forward else end, end if forward else start, limit,
                         commands=commands, since=since)


def _order(store: HistoryStore, key: str, ref: Ref) -> float:
    """Where ``ref`` lies in time, to tell a forward BETWEEN from a backward one."""
    if ref.at is not None:
        return ref.at
    at = store.message_at(key, ref.msgid or "")
    return at if at is not None else 0.0


async def _targets(server: ChatServer, conn: Session, start: float, end: float,
                   limit: int) -> None:
    """TARGETS: the rooms it is in and the nicknames it talked with, whose latest message
    lies strictly between ``start`` and ``end``, earliest first."""
    history = server.history
    assert history is not None
    await history.wait()
    low, high = sorted((start, end))
    me = party(conn)
    rooms = [(room.name, room_target(room), joined_only(server, room))
             for room in conn.channels.values()]

    def run(store: HistoryStore) -> list[tuple[float, str]]:
        found: list[tuple[float, str]] = []
        for name, key, since_join in rooms:
            last = store.last_at(key, MESSAGES)
            if last is None or not low < last < high:
                continue
            if since_join and _first_join(store, key, me) > last:
                continue
            found.append((last, name))
        found += [(at, peer) for _key, peer, at in store.conversations(me, low, high, limit)]
        found.sort()
        return found[:limit]

    found = await history.read(run)
    if conn.closing:
        return
    assert isinstance(found, list)
    ref = f"H{next(_batch_ids):x}" if "batch" in conn.caps else None
    if ref is not None:
        conn.send_msg("BATCH", "+" + ref, "draft/chathistory-targets")
    for at, name in found:
        line = server.encode("CHATHISTORY", ["TARGETS", name, server_time(at)], server.name)
        conn.send(b"@batch=" + ref.encode() + b" " + line if ref is not None else line)
    if ref is not None:
        conn.send_msg("BATCH", "-" + ref)


# --- replay on JOIN, and of private messages on connecting -------------------------------

def replay_missed_private(server: ChatServer, conn: Session) -> None:
    """After the welcome, an account's private conversations that went on since it was last
    seen (on another of its devices), for a client that cannot ask: the last
    ``history_replay_lines`` of each, in a batch, with a notice of what was left out."""
    history = server.history
    lines = server.settings.history_replay_lines
    if (history is None or lines <= 0 or CHATHISTORY_CAP in conn.caps
            or not conn.account):
        return
    _spawn(_replay_private(server, conn, lines))


async def _replay_private(server: ChatServer, conn: Session, lines: int) -> None:
    history = server.history
    assert history is not None
    me = party(conn)

    def run(store: HistoryStore) -> list[tuple[str, list[StoredMessage], int]]:
        seen = store.last_seen(me)
        if seen is None:
            return []
        found = []
        for key, peer, _last in store.conversations(me, seen, float("inf"), 50):
            start = store.position(key, at=seen, after=True) or 0
            rows = store.latest(key, lines, after=start, commands=MESSAGES)
            more = store.count_after(key, start, commands=MESSAGES) - len(rows)
            if rows:
                found.append((peer, rows, more))
        return found

    found = await history.read(run)
    assert isinstance(found, list)
    for peer, rows, more in found:
        if conn.closing:
            return
        if more:
            conn.send_msg("NOTICE", conn.name, f"*** {more} earlier private message"
                          f"{'s' if more != 1 else ''} with {peer} not shown")
        send_batch(conn, "chathistory", peer, rows)


def replay_on_join(server: ChatServer, conn: Session, room: Channel, join_msgid: str) -> None:
    """Send what was said in ``room`` before ``conn`` joined, for a client that cannot ask
    (no ``draft/chathistory``): since it was last seen if its account was, else the last
    ``history_replay_lines``; a notice says how much more there is. It runs beside the
    client's further commands (the wait is the server's, not the client's: it must not
    hold the client's input), bounded by the setting and by JOIN's own flood cost."""
    history = server.history
    lines = server.settings.history_replay_lines
    if history is None or lines <= 0 or CHATHISTORY_CAP in conn.caps:
        return
    _spawn(_replay(server, conn, room, join_msgid, lines))


_replays: set[asyncio.Future[None]] = set()  # running replays (a task needs a reference)


def _spawn(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _replays.add(task)
    task.add_done_callback(_replay_done)


def _replay_done(task: asyncio.Future[None]) -> None:
    _replays.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("replay-failed", exc_info=task.exception())


async def _replay(server: ChatServer, conn: Session, room: Channel, join_msgid: str,
                  lines: int) -> None:
    history = server.history
    assert history is not None
    await history.wait()  # the stored JOIN is the boundary
    key = room_target(room)
    me = party(conn)
    account = casefold(conn.account) if conn.account else None
    only_since_join = joined_only(server, room)

    def run(store: HistoryStore) -> tuple[list[StoredMessage], int]:
        joined = store.position(key, msgid=join_msgid)
        if joined is None:
            return [], 0
        since = store.last_seen(account) if account is not None else None
        if only_since_join:
            since = max(since or 0.0, _first_join(store, key, me))
        rows = store.before(key, joined, lines + 1, commands=MESSAGES, since=since)
        more = 0
        if len(rows) > lines:
            more = store.count_before(key, joined, at_most=COUNT_AT_MOST + lines,
                                      commands=MESSAGES, since=since) - lines
            rows = rows[1:]
        return rows, more

    found = await history.read(run)
    assert isinstance(found, tuple)
    rows, more = found
    if conn.closing or conn not in room.members or not rows:
        return
    if more:
        many = f"over {COUNT_AT_MOST}" if more >= COUNT_AT_MOST else str(more)
        conn.send_msg("NOTICE", room.name,
                      f"*** {many} earlier message{'s' if more != 1 else ''} not shown "
                      f"(the last {len(rows)} follow)")
    send_batch(conn, "chathistory", room.name, rows)
