"""Team memory in the client, with no I/O: what was seen, what to ask for, what came back.

The session asks the server for history (``CHATHISTORY``, IRCv3 ``draft/chathistory``) and
searches it (``SEARCH``, ``draft/search``); the answers come as batches. :class:`Recall`
keeps the requests in flight, collects each batch and, when it ends, says which lines to
show and which requests follow; :class:`Memory` outlives a connection, so that after a
reconnect the client knows where the gap starts and which messages it already showed.

Invariants:
- A line inside a ``chathistory``, ``draft/search`` or ``draft/chathistory-targets`` batch is
  never a live event: it changes no session state and is shown only when its batch ends,
  marked as history (or as a search result).
- A message id is shown at most once per run of the client, live or from history, across
  reconnects (the last :data:`MAX_SEEN` ids are remembered). Search results are exempt: they
  are an answer to a question, not the conversation.
- Requests are answered in the order they were sent (one batch, a ``FAIL`` or a ``421``
  each), so the first pending request of the same kind and target owns a batch. A
  ``chathistory`` batch that no request owns is a server's automatic replay on JOIN and is
  shown like join history.
- Bounded: at most :data:`MAX_OPEN_BATCHES` open batches of :data:`MAX_BATCH_LINES` lines and
  :data:`MAX_PENDING` requests in flight; beyond that lines are dropped, not kept.
- Timestamps sent back are the server's own strings (checked to be plain ISO 8601), never
  the local clock -- except the upper end of ``TARGETS``, which is "now".
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo

from chaton.client.safe_text import sanitize
from chaton.client.ui import format_history, local_line
from chaton.protocol.message import Message, escape_tag_value, split_source
from chaton.protocol.names import casefold, is_channel, room_key

__all__ = [
    "DEFAULT_LIMIT",
    "Memory",
    "Outcome",
    "Purpose",
    "Recall",
    "Request",
    "SearchQuery",
    "conversation",
    "key_of",
    "parse_time",
    "search_attributes",
    "utc_stamp",
]

#: Messages asked for on join, by ``/history`` and ``/search`` unless told otherwise.
DEFAULT_LIMIT = 50
#: Messages asked for per page, and pages at most, when filling the gap after a reconnect.
GAP_LIMIT = 100
MAX_GAP_PAGES = 5
MAX_SEEN = 10_000
MAX_OPEN_BATCHES = 16
MAX_BATCH_LINES = 2_000
MAX_PENDING = 64
#: Private conversations filled after a reconnect (the most recent ones).
MAX_PRIVATE_GAPS = 20

HISTORY_BATCH = "chathistory"
SEARCH_BATCH = "draft/search"
TARGETS_BATCH = "draft/chathistory-targets"
_OURS = frozenset({HISTORY_BATCH, SEARCH_BATCH, TARGETS_BATCH})
_STATUS_PREFIXES = "@+~&%"
# A timestamp we echo back must be one word of ISO 8601, nothing a server could smuggle in.
_STAMP = re.compile(r"[0-9][0-9T:.+\-]*Z?\Z")


class Purpose(enum.Enum):
    """Why a request was sent: it decides how its answer is shown."""

    JOIN = "join"  #: LATEST after our JOIN (or a server's replay)
    MORE = "more"  #: ``/history``: older messages of one conversation
    GAP = "gap"  #: AFTER the newest seen, after a reconnect
    TARGETS = "targets"  #: which conversations moved while we were away
    SEARCH = "search"  #: ``/search``


@dataclass(frozen=True, slots=True)
class Request:
    """One CHATHISTORY or SEARCH request in flight."""

    purpose: Purpose
    target: str = ""  # the conversation; empty for TARGETS and SEARCH
    limit: int = DEFAULT_LIMIT
    since: str = ""  # TARGETS: the lower bound, reused for the AFTERs that follow
    query: str = ""  # SEARCH: what the user asked, for the heading
    page: int = 1  # GAP: which page of the gap this asks for
    carried: tuple[Message, ...] = ()  # GAP: the pages before, shown with the last one

    @property
    def command(self) -> str:
        return "SEARCH" if self.purpose is Purpose.SEARCH else "CHATHISTORY"

    @property
    def batch_type(self) -> str:
        if self.purpose is Purpose.SEARCH:
            return SEARCH_BATCH
        return TARGETS_BATCH if self.purpose is Purpose.TARGETS else HISTORY_BATCH


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """``/search TEXT [in #room] [from NICK]``, parsed."""

    text: str
    room: str | None = None
    nick: str | None = None
    limit: int = DEFAULT_LIMIT

    def describe(self) -> str:
        where = f" in {self.room}" if self.room else ""
        who = f" from {self.nick}" if self.nick else ""
        return f'"{self.text}"{where}{who}'


@dataclass(slots=True)
class _Batch:
    kind: str
    target: str
    request: Request | None
    lines: list[Message] = field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    """What the session does about a message: lines to show, requests to send."""

    show: list[str] = field(default_factory=list)
    send: list[Message] = field(default_factory=list)


# --- pure helpers -----------------------------------------------------------------------------
def key_of(target: str) -> str:
    """The one spelling of a conversation: rooms by :func:`room_key`, nicks casefolded."""
    return room_key(target) if is_channel(target) else casefold(target)


def parse_time(stamp: str) -> datetime | None:
    """A server-time stamp as an aware UTC datetime; ``None`` if it is not one."""
    if not stamp or not _STAMP.match(stamp):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def utc_stamp(when: datetime) -> str:
    """``when`` as IRCv3 server-time: ``YYYY-MM-DDThh:mm:ss.sssZ``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def conversation(msg: Message, me: str) -> str | None:
    """The room or private peer a PRIVMSG/NOTICE belongs to, as seen by ``me``."""
    if msg.command not in ("PRIVMSG", "NOTICE") or not msg.params or not msg.source:
        return None
    target = msg.param(0).lstrip(_STATUS_PREFIXES)
    if is_channel(target):
        return target
    nick, user, _ = split_source(msg.source)
    if user is None and "." in nick:
        return None  # a server notice
    if casefold(nick) == casefold(me):
        return msg.param(0)  # ours: the peer is the target
    return nick


def search_attributes(query: SearchQuery) -> str:
    """The one ``SEARCH`` parameter: ``key=value`` pairs joined by ``;``, each value escaped
    like an IRCv3 tag value (so a ``;`` or space in the text cannot start another key)."""
    pairs = [("text", query.text)]
    if query.room:
        pairs.append(("in", query.room))
    if query.nick:
        pairs.append(("from", query.nick))
    pairs.append(("limit", str(query.limit)))
    return ";".join(f"{key}={escape_tag_value(value)}" for key, value in pairs)


def _token(text: str) -> bool:
    """Fit to be a middle parameter we send (a target from the server)."""
    return bool(text) and text[0] != ":" and not any(c in text for c in " \r\n\x00")


def _is_text(msg: Message) -> bool:
    return msg.command in ("PRIVMSG", "NOTICE") and len(msg.params) >= 2


# --- memory across connections ----------------------------------------------------------------
class Memory:
    """What this run of the client has seen: message ids, and per conversation the newest
    time seen (where a gap starts) and the oldest time shown (where ``/history`` goes on);
    also the room keys typed, so a reconnect can rejoin ``+k`` rooms. In memory only."""

    def __init__(self, max_seen: int = MAX_SEEN) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max_seen = max_seen
        self._newest: dict[str, tuple[str, str, datetime]] = {}  # key -> (target, stamp, t)
        self._oldest: dict[str, tuple[str, datetime, str]] = {}  # key -> (stamp, t, msgid)
        self._keys: dict[str, str] = {}  # room keys (+k) the user gave, to rejoin with

    def remember_key(self, room: str, key: str) -> None:
        if is_channel(room) and _token(key) and "," not in key:
            self._keys[room_key(room)] = key

    def key(self, room: str) -> str | None:
        return self._keys.get(room_key(room)) if is_channel(room) else None

    def first_sight(self, msgid: str) -> bool:
        """Note ``msgid``; False if it was seen before (then it is not to be shown again)."""
        if not msgid:
            return True
        if msgid in self._seen:
            self._seen.move_to_end(msgid)
            return False
        self._seen[msgid] = None
        if len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)
        return True

    def touch(self, target: str, stamp: str) -> None:
        """``target`` had an event at server time ``stamp``: move its newest mark forward."""
        when = parse_time(stamp)
        if when is None or not _token(target):
            return
        key = key_of(target)
        known = self._newest.get(key)
        if known is None or when > known[2]:
            self._newest[key] = (target, stamp, when)

    def shown(self, target: str, stamp: str, msgid: str = "") -> None:
        """A message of ``target`` from ``stamp`` was shown: move its oldest mark back (the
        first shown of several in one millisecond stays the mark: they come oldest first)."""
        when = parse_time(stamp)
        if when is None:
            return
        key = key_of(target)
        known = self._oldest.get(key)
        if known is None or when < known[1]:
            self._oldest[key] = (stamp, when, msgid if _token(msgid) else "")

    def newest(self, target: str) -> str | None:
        known = self._newest.get(key_of(target))
        return known[1] if known else None

    def oldest(self, target: str) -> str | None:
        known = self._oldest.get(key_of(target))
        return known[0] if known else None

    def oldest_ref(self, target: str) -> str | None:
        """Where ``/history`` goes on: ``msgid=`` of the oldest message shown when it had one
        (exact even when several share its millisecond), else its ``timestamp=``."""
        known = self._oldest.get(key_of(target))
        if known is None:
            return None
        return f"msgid={known[2]}" if known[2] else f"timestamp={known[0]}"

    def latest_stamp(self) -> str | None:
        """The newest time seen anywhere (where TARGETS starts looking)."""
        best = max(self._newest.values(), key=lambda item: item[2], default=None)
        return best[1] if best else None

    def private_targets(self, limit: int = MAX_PRIVATE_GAPS) -> list[str]:
        """The private conversations seen so far, most recent first, at most ``limit`` (rooms
        are filled as they are rejoined)."""
        private = [item for item in self._newest.values() if not is_channel(item[0])]
        private.sort(key=lambda item: item[2], reverse=True)
        return [target for target, _, _ in private[:limit]]


# --- requests and batches in one session -------------------------------------------------------
class Recall:
    """One session's history and search traffic (see the module invariants)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.chathistory = False  # draft/chathistory negotiated
        self.search = False  # draft/search negotiated
        self.max_limit: int | None = None  # ISUPPORT CHATHISTORY=<max>
        self._pending: list[Request] = []
        self._batches: dict[str, _Batch] = {}

    # --- asking ---------------------------------------------------------------------------
    def limit(self, wanted: int) -> int:
        if self.max_limit is not None and self.max_limit > 0:
            return max(1, min(wanted, self.max_limit))
        return max(1, wanted)

    def _ask(self, request: Request, params: tuple[str, ...]) -> Message | None:
        if len(self._pending) >= MAX_PENDING:
            return None
        self._pending.append(request)
        return Message(request.command, params)

    def join_history(self, room: str, *, gap: bool) -> Message | None:
        """After our JOIN: the gap since the newest seen (after a reconnect), else LATEST."""
        if not self.chathistory or not _token(room):
            return None
        since = self.memory.newest(room) if gap else None
        if since is not None:
            return self.gap(room, since)
        limit = self.limit(DEFAULT_LIMIT)
        return self._ask(Request(Purpose.JOIN, room, limit), ("LATEST", room, "*", str(limit)))

    def gap(self, target: str, since: str) -> Message | None:
        """What ``target`` said after ``since``. Asked from one millisecond earlier: a
        message stamped in the same millisecond as the last one seen is not lost, and the
        ones already seen are dropped by msgid."""
        when = parse_time(since)
        if not self.chathistory or not _token(target) or when is None:
            return None
        limit = self.limit(GAP_LIMIT)
        start = utc_stamp(when - timedelta(milliseconds=1))
        return self._ask(
            Request(Purpose.GAP, target, limit),
            ("AFTER", target, f"timestamp={start}", str(limit)),
        )

    def more(self, target: str, wanted: int) -> Message | None:
        """``/history``: before the oldest message shown, or the latest if none was."""
        if not self.chathistory or not _token(target):
            return None
        limit = self.limit(wanted)
        request = Request(Purpose.MORE, target, limit)
        oldest = self.memory.oldest_ref(target)
        if oldest is None:
            return self._ask(request, ("LATEST", target, "*", str(limit)))
        return self._ask(request, ("BEFORE", target, oldest, str(limit)))

    def targets(self, now: datetime) -> Message | None:
        """Which conversations moved since the newest time seen (to find new private ones)."""
        since = self.memory.latest_stamp()
        if not self.chathistory or since is None:
            return None
        limit = self.limit(DEFAULT_LIMIT)
        return self._ask(
            Request(Purpose.TARGETS, limit=limit, since=since),
            ("TARGETS", f"timestamp={since}", f"timestamp={utc_stamp(now)}", str(limit)),
        )

    def find(self, query: SearchQuery) -> Message | None:
        if not self.search:
            return None
        request = Request(Purpose.SEARCH, limit=query.limit, query=query.describe())
        return self._ask(request, (search_attributes(query),))

    # --- answers --------------------------------------------------------------------------
    def _claim(self, kind: str, target: str) -> Request | None:
        key = key_of(target) if target else ""
        for i, request in enumerate(self._pending):
            if request.batch_type != kind:
                continue
            if request.target and key_of(request.target) != key:
                continue
            return self._pending.pop(i)
        return None

    def on_batch(self, msg: Message, me: str, tz: tzinfo | None = None,
                 now: datetime | None = None) -> Outcome | None:
        """``BATCH +ref type ...`` / ``BATCH -ref``; ``None`` when the batch is not ours."""
        ref = msg.param(0)
        if ref.startswith("+"):
            kind = msg.param(1).lower()
            if kind not in _OURS or len(self._batches) >= MAX_OPEN_BATCHES:
                return None
            target = msg.param(2) if kind == HISTORY_BATCH else ""
            request = self._claim(kind, target)
            if request is None and kind != HISTORY_BATCH:
                return None  # an answer to nothing we asked: let it be shown as it is
            self._batches[ref[1:]] = _Batch(kind, target, request)
            return Outcome()
        if ref.startswith("-"):
            batch = self._batches.pop(ref[1:], None)
            if batch is None:
                return None
            return self._finish(batch, me, tz, now)
        return None

    def take(self, msg: Message) -> bool:
        """Keep ``msg`` if it belongs to one of our open batches (True: not a live event)."""
        ref = msg.tags.get("batch")
        batch = self._batches.get(ref) if ref else None
        if batch is None:
            return False
        if len(batch.lines) < MAX_BATCH_LINES:
            batch.lines.append(msg)
        return True

    def on_refusal(self, command: str) -> Request | None:
        """A ``FAIL CHATHISTORY|SEARCH`` or ``421``: it answers the oldest such request."""
        for i, request in enumerate(self._pending):
            if request.command == command.upper():
                return self._pending.pop(i)
        return None

    def live(self, msg: Message, me: str) -> bool:
        """A live event: remember it; False if it was already shown (same msgid)."""
        if _is_text(msg):
            if not self.memory.first_sight(msg.tags.get("msgid", "")):
                return False
            target = conversation(msg, me)
            if target is not None:
                stamp = msg.tags.get("time", "")
                self.memory.touch(target, stamp)
                self.memory.shown(target, stamp, msg.tags.get("msgid", ""))
        elif msg.params and is_channel(msg.param(0)) and msg.command != "JOIN":
            self.memory.touch(msg.param(0), msg.tags.get("time", ""))
        return True

    # --- showing a finished batch ----------------------------------------------------------
    def _finish(self, batch: _Batch, me: str, tz: tzinfo | None,
                now: datetime | None) -> Outcome:
        request = batch.request
        purpose = request.purpose if request is not None else Purpose.JOIN
        if purpose is Purpose.TARGETS:
            assert request is not None
            return self._targets_done(batch.lines, request)
        if purpose is Purpose.SEARCH:
            assert request is not None
            return _search_done(batch.lines, request, me, tz, now)
        lines = batch.lines
        if purpose is Purpose.GAP:
            assert request is not None
            lines = [*request.carried, *batch.lines]
            if len(batch.lines) >= request.limit and request.page < MAX_GAP_PAGES:
                follow = self._next_page(request, batch.lines, lines)
                if follow is not None:  # shown all at once, with one count, at the end
                    return Outcome(send=[follow])
        fresh = list(self._fresh(lines, me))
        shown = [line for msg in fresh if (line := format_history(msg, me, tz=tz, now=now))]
        where = sanitize(batch.target or (request.target if request else ""))
        out = Outcome()
        count = sum(1 for msg in fresh if _is_text(msg))
        if purpose is Purpose.GAP:
            assert request is not None
            more = " (and more, not shown)" if len(batch.lines) >= request.limit else ""
            if count:
                noun = "message" if count == 1 else "messages"
                out.show.append(local_line(
                    f"{where}: \u2014 {count} {noun} while you were away{more} \u2014"))
            else:
                out.show.append(local_line(
                    f"{where}: \u2014 no new messages while you were away \u2014"))
        elif purpose is Purpose.MORE and not fresh:
            out.show.append(local_line(f"{where}: no earlier messages"))
        out.show += shown
        return out

    def _next_page(self, request: Request, page: list[Message],
                   carried: list[Message]) -> Message | None:
        """A full page of gap: ask for the one after it (AFTER its newest line)."""
        stamps = [t for m in page if (t := parse_time(m.tags.get("time", ""))) is not None]
        if not stamps:
            return None
        follow = self.gap(request.target, utc_stamp(max(stamps)))
        if follow is not None:
            self._pending[-1] = replace(
                self._pending[-1], carried=tuple(carried), page=request.page + 1)
        return follow

    def _fresh(self, lines: Iterable[Message], me: str) -> Iterable[Message]:
        """The batch's lines not shown before, each remembered as seen."""
        for msg in lines:
            if not self.memory.first_sight(msg.tags.get("msgid", "")):
                continue
            target = conversation(msg, me) if _is_text(msg) else None
            if target is not None:
                stamp = msg.tags.get("time", "")
                self.memory.touch(target, stamp)
                self.memory.shown(target, stamp, msg.tags.get("msgid", ""))
            yield msg

    def _targets_done(self, lines: list[Message], request: Request) -> Outcome:
        """``CHATHISTORY TARGETS <target> <time>`` lines: fill the new private conversations
        (known ones are filled already; rooms are filled when rejoined)."""
        out = Outcome()
        for msg in lines:
            if msg.command != "CHATHISTORY" or msg.param(0).upper() != "TARGETS":
                continue
            target = msg.param(1)
            if is_channel(target) or self.memory.newest(target) is not None:
                continue
            ask = self.gap(target, request.since)
            if ask is not None:
                out.send.append(ask)
        return out


def _search_done(lines: list[Message], request: Request, me: str, tz: tzinfo | None,
                 now: datetime | None) -> Outcome:
    found = [m for m in lines if _is_text(m)]
    out = Outcome()
    query = sanitize(request.query)
    if not found:
        out.show.append(local_line(f"search {query}: nothing found"))
        return out
    noun = "result" if len(found) == 1 else "results"
    out.show.append(local_line(f"search {query}: {len(found)} {noun}"))
    for msg in found:
        line = format_history(msg, me, tz=tz, now=now, label="found")
        if line:
            out.show.append(line)
    return out
