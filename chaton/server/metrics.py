"""What the server is doing, for Prometheus: counted as plain integers, exported on scrape.

Why this shape: ``prometheus_client``'s own Counter takes a lock per increment, a cost on
every message of the fan-out path. Here the hot paths add to plain attributes (one
``+=`` on the event loop, which owns them), and a custom collector turns them into metric
families only when ``/metrics`` is read. ``prometheus_client`` still writes the text
format, so the exposition follows the spec exactly. (``bench/metrics_cost.py`` measures
both ways.)

Invariants:
- Everything here is touched on the event loop only; a scrape reads without locks.
- A scrape never blocks the loop on the database: the history row count is read on the
  history reader thread at most every ``_ROWS_EVERY`` seconds; in between, the rows
  committed since are added (what retention purged shows at the next count).
- Each server has its own registry, so several servers in one process (tests) do not
  mix their numbers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["COMMIT_BUCKETS", "LOGIN_RESULTS", "Histogram", "Metrics"]

LOGIN_RESULTS = ("ok", "failed", "throttled", "busy")
#: Seconds; a group commit is normally a few milliseconds, a slow disk shows up high.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROWS_EVERY = 10.0


class Histogram:
    """Cumulative buckets, a sum and a count: what Prometheus needs, nothing more."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metrics:
    """The counters, and the collector that exports them with the server's live state."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.registrations = 0
        self.logins = dict.fromkeys(LOGIN_RESULTS, 0)
        self.messages = 0  # PRIVMSG/NOTICE/TAGMSG accepted, per target
        self.deliveries = 0  # copies of them queued to recipients
        self.disconnects = {"sendq": 0, "flood": 0}
        self.http_requests = 0
        self.websocket_upgrades = 0
        self._history_rows: tuple[int, int] | None = None  # (rows counted, committed then)
        self._rows_read_at = -_ROWS_EVERY
        self._rows_task: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        with contextlib.suppress(Exception):  # /proc may be missing (not Linux)
            self.registry.register(ProcessCollector(namespace="chaton", registry=None))

    def render(self) -> tuple[bytes, str]:
        """The text exposition (and its content type) for one scrape."""
        self._refresh_rows()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- the slow numbers, read off the loop ----------------------------------------------
    def _refresh_rows(self) -> None:
        history = self.server.history
        now = time.monotonic()
        if history is None or now - self._rows_read_at < _ROWS_EVERY:
            return
        if self._rows_task is not None and not self._rows_task.done():
            return
        self._rows_read_at = now
        self._rows_task = asyncio.get_running_loop().create_task(self._read_rows())

    async def _read_rows(self) -> None:
        history = self.server.history
        if history is None:
            return
        with contextlib.suppress(Exception):  # a failed count leaves the last one shown
            committed = history.committed
            rows = await history.read(lambda store: store.count())
            if isinstance(rows, int):
                self._history_rows = (rows, committed)

    def history_rows(self) -> int | None:
        history, counted = self.server.history, self._history_rows
        if history is None or counted is None:
            return None
        return counted[0] + history.committed - counted[1]

    def history_bytes(self) -> int:
        db = self.server.settings.db_file
        total = 0
        for path in (db, db.with_name(db.name + "-wal")):
            with contextlib.suppress(OSError):
                total += os.stat(path).st_size
        return total


def _connection_states(server: ChatServer) -> dict[str, int]:
    states = dict.fromkeys(("handshake", "http", "registering", "registered"), 0)
    for session in server.sessions:
        link = session.link
        if session.registered:
            states["registered"] += 1
        elif not getattr(link, "tls_ready", True):
            states["handshake"] += 1
        elif getattr(link, "web", None) is not None:
            states["http"] += 1
        else:
            states["registering"] += 1
    return states


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m, server = self.m, self.m.server
        conns = GaugeMetricFamily("chaton_connections", "Open connections by state.",
                                  labels=["state"])
        for state, n in _connection_states(server).items():
            conns.add_metric([state], n)
        yield conns
        yield GaugeMetricFamily(
            "chaton_websocket_connections", "Connections carrying IRC over WebSocket.",
            value=sum(1 for s in server.sessions if getattr(s.link, "ws", None) is not None))
        yield GaugeMetricFamily("chaton_users", "Registered nicknames online.",
                                value=len(server.state.nicks))
        yield GaugeMetricFamily("chaton_rooms", "Rooms that exist now.",
                                value=len(server.state.channels))
        yield CounterMetricFamily("chaton_registrations", "Clients that completed registration.",
                                  value=m.registrations)
        logins = CounterMetricFamily("chaton_logins", "Password checks by result.",
                                     labels=["result"])
        for result, n in m.logins.items():
            logins.add_metric([result], n)
        yield logins
        yield CounterMetricFamily("chaton_messages", "Messages accepted (per target).",
                                  value=m.messages)
        yield CounterMetricFamily("chaton_deliveries", "Copies of messages queued to clients.",
                                  value=m.deliveries)
        drops = CounterMetricFamily("chaton_disconnects", "Clients cut off by the server.",
                                    labels=["reason"])
        for reason, n in m.disconnects.items():
            drops.add_metric([reason], n)
        yield drops
        yield CounterMetricFamily("chaton_http_requests", "HTTP requests answered.",
                                  value=m.http_requests)
        yield CounterMetricFamily("chaton_websocket_upgrades", "WebSocket handshakes accepted.",
                                  value=m.websocket_upgrades)
        accounts = server.accounts
        yield GaugeMetricFamily("chaton_hash_queue_depth",
                                "Password checks queued or running (argon2id).",
                                value=accounts.pool.in_flight if accounts is not None else 0)
        history = server.history
        if history is not None:
            latency = history.commit_latency
            yield HistogramMetricFamily(
                "chaton_db_commit_seconds", "Message store group commit latency.",
                buckets=latency.buckets(), sum_value=latency.total)
            yield GaugeMetricFamily("chaton_history_pending",
                                    "Messages accepted and not yet committed.",
                                    value=history.pending)
            yield CounterMetricFamily("chaton_history_committed",
                                      "Messages committed since start.",
                                      value=history.committed)
            rows = m.history_rows()
            if rows is not None:
                yield GaugeMetricFamily("chaton_history_rows", "Rows in the message store.",
                                        value=rows)
        yield GaugeMetricFamily("chaton_database_bytes", "The SQLite file and its WAL.",
                                value=m.history_bytes())
        yield GaugeMetricFamily("chaton_start_time_seconds", "When the server started.",
                                value=server.started)
