"""The synthetic message stores of ``python -m bench.history``: rooms, people and words.

The latency rows compare a big store with a small one measured in the same run, so both
must have the same shape (one room holding a large share of everything, the rest spread
over rooms and private pairs, a few room events in between) and the SEARCH words must
have known frequencies. Everything comes from one seeded RNG, so two runs build the same
stores. The server reads the file exactly as if it had written it: rows go in through
:meth:`HistoryStore.append` (same schema, triggers, FTS index), the rooms are registered
(an unregistered room's history key changes with each life of the room).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from chaton.history_store import HistoryStore, NewMessage, private_key, room_key
from chaton.protocol.names import room_key as registry_key
from chaton.server.room_registry import ADMINS_OWNER
from chaton.store import RoomRecord, Store

__all__ = [
    "BIG_ROOM",
    "EMPTY_ROOM",
    "QUERY_RANKS",
    "Shape",
    "StoreInfo",
    "Texts",
    "file_sizes",
    "generate",
    "prefill",
]

BIG_ROOM = "#town"  # the room holding ``Shape.big_share`` of the messages
EMPTY_ROOM = "#quiet"  # registered and never spoken in: the reference JOIN
#: SEARCH words by frequency rank (0 = the most frequent word of the vocabulary).
QUERY_RANKS = {"common": 2, "medium": 150, "rare": 4000}
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "go", "hu",
              "ji", "po", "ze", "qua", "ster", "ment", "ion", "al", "or", "en", "is")  # fmt: skip
_BATCH = 20_000  # rows per HistoryStore.append while pre-filling


@dataclass(frozen=True)
class Shape:
    """How a store's messages are spread (the same for the big and the reference store)."""

    rooms: int = 50  # the big room included
    big_share: float = 0.4
    private_share: float = 0.1  # the rest, minus events, is spread over the other rooms
    event_share: float = 0.03  # JOIN/PART rows between the messages (event playback)
    pairs: int = 100
    people: int = 300
    days: float = 30.0  # the messages' times span this many days, ending an hour ago


class Texts:
    """Message texts: 3-16 words drawn from a Zipf-like vocabulary of 20,000 words."""

    def __init__(self, rng: random.Random, size: int = 20_000) -> None:
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < size:
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = words
        self._cum = list(accumulate(1.0 / (rank + 1) ** 1.05 for rank in range(size)))
        self._rng = rng

    def query_words(self) -> dict[str, str]:
        """The SEARCH words, by frequency class."""
        return {kind: self.words[rank] for kind, rank in QUERY_RANKS.items()}

    def text(self) -> str:
        picked = self._rng.choices(self.words, cum_weights=self._cum, k=self._rng.randint(3, 16))
        return " ".join(picked)


@dataclass
class StoreInfo:
    """What a pre-filled store holds: rows per kind, and how often each SEARCH word occurs
    in the big room's messages (so a SEARCH answer can be sanity-checked)."""

    rows: int = 0
    big_room_messages: int = 0
    private_messages: int = 0
    events: int = 0
    seconds: float = 0.0
    word_hits: dict[str, int] = field(default_factory=dict)  # word -> big-room messages with it
    words: dict[str, str] = field(default_factory=dict)  # frequency class -> SEARCH word

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _nick(person: int) -> str:
    return f"p{person}"


def _source(nick: str) -> str:
    return f"{nick}!~u@user.{nick}.chaton.local"


def room_names(shape: Shape) -> list[str]:
    """The big room first, then the others (the empty room is not among them)."""
    return [BIG_ROOM, *(f"#room{i}" for i in range(1, shape.rooms))]


def generate(rows: int, shape: Shape, texts: Texts, rng: random.Random,
             info: StoreInfo, end: float) -> Iterator[NewMessage]:
    """``rows`` messages in commit order, their times spread evenly up to ``end``."""
    rooms = room_names(shape)
    pairs = [(rng.randrange(shape.people), rng.randrange(shape.people))
             for _ in range(shape.pairs)]
    pairs = [(a, b if b != a else (a + 1) % shape.people) for a, b in pairs]
    other = 1.0 - shape.big_share - shape.private_share - shape.event_share
    kinds = ("big", "private", "event", "room")
    weights = (shape.big_share, shape.private_share, shape.event_share, other)
    words = set(texts.query_words().values())
    start = end - shape.days * 86400.0
    step = (end - start) / max(rows, 1)
    prefix = f"pf{rng.getrandbits(32):08x}"
    for i, kind in enumerate(rng.choices(kinds, weights, k=rows)):
        at = start + i * step
        msgid = f"{prefix}{i:x}"
        person = rng.randrange(shape.people)
        nick = _nick(person)
        if kind == "private":
            a, b = pairs[rng.randrange(len(pairs))]
            if rng.random() < 0.5:
                a, b = b, a
            me, peer = _nick(a), _nick(b)
            info.private_messages += 1
            yield NewMessage(msgid, at, private_key(me, peer), peer, "PRIVMSG", _source(me),
                             me, (texts.text(),), None, ((me, peer), (peer, me)))
            continue
        room = rooms[0] if kind == "big" else rooms[1 + rng.randrange(len(rooms) - 1)]
        if kind == "event":
            info.events += 1
            command = "JOIN" if rng.random() < 0.5 else "PART"
            yield NewMessage(msgid, at, room_key(room), room, command, _source(nick), nick,
                             () if command == "JOIN" else ("bye",))
            continue
        text = texts.text()
        if kind == "big":
            info.big_room_messages += 1
            for word in words & set(text.split()):
                info.word_hits[word] = info.word_hits.get(word, 0) + 1
        yield NewMessage(msgid, at, room_key(room), room, "PRIVMSG", _source(nick), nick,
                         (text,))


def prefill(path: Path, rows: int, shape: Shape, seed: int,
            progress: Callable[[str], None], label: str = "") -> StoreInfo:
    """Make the database at ``path`` (before the server starts) and store ``rows``
    messages with :meth:`HistoryStore.append`, ``_BATCH`` at a time."""
    rng = random.Random(seed)
    texts = Texts(rng)
    words = texts.query_words()
    info = StoreInfo(word_hits={w: 0 for w in words.values()}, words=words)
    now = time.time()
    store = Store(path)  # creates the schema; closed before the message store opens it
    try:
        for name in (*room_names(shape), EMPTY_ROOM):
            store.register_room(RoomRecord(key=registry_key(name), name=name,
                                           owner=ADMINS_OWNER, registered=now))
    finally:
        store.close()
    history = HistoryStore(path)
    t0 = time.perf_counter()
    next_report = t0 + 2.0
    try:
        batch: list[NewMessage] = []
        for message in generate(rows, shape, texts, rng, info, now - 3600.0):
            batch.append(message)
            if len(batch) >= _BATCH:
                history.append(batch)
                info.rows += len(batch)
                batch = []
                if time.perf_counter() >= next_report:
                    next_report = time.perf_counter() + 2.0
                    rate = info.rows / (time.perf_counter() - t0)
                    progress(f"pre-fill {label or path}: {info.rows:,}/{rows:,} rows "
                             f"({rate:,.0f}/s)")
        history.append(batch)
        info.rows += len(batch)
    finally:
        history.close()
    info.seconds = time.perf_counter() - t0
    return info


def file_sizes(path: Path) -> dict[str, int]:
    """Bytes of the database after a full checkpoint (WAL folded in and truncated), and
    from ``dbstat`` the bytes of the messages table, its indexes and the FTS index. Call
    it only while no server has the file open."""
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = path.with_name(path.name + "-wal")
        sizes = {
            "file": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
            "page_count": int(db.execute("PRAGMA page_count").fetchone()[0]),
            "page_size": int(db.execute("PRAGMA page_size").fetchone()[0]),
            "freelist": int(db.execute("PRAGMA freelist_count").fetchone()[0]),
        }
        try:
            per_object = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.Error:
            return sizes  # no dbstat in this SQLite: only the totals
        indexes = {str(n) for (n,) in db.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'")}
        table = fts = index = other = 0
        for name, size in per_object:
            if name == "messages":
                table += int(size)
            elif str(name).startswith("messages_text"):
                fts += int(size)
            elif name in indexes:
                index += int(size)
            else:
                other += int(size)
        sizes |= {"messages": table, "indexes": index, "fts": fts, "other": other}
        return sizes
    finally:
        db.close()
