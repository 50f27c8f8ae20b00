"""The chat server: listener, connection bookkeeping, line encoding and the write scheduler.

Invariants:
- Everything here runs on one event loop; handlers mutate state without locks.
- A line for many recipients is encoded once per capability variant (:class:`Outgoing`),
  never once per recipient.
- Output is written once per loop pass: :meth:`ChatServer.schedule_flush` queues a dirty
  connection and a single callback flushes them all, so a burst of messages to one client
  becomes one TLS record. With history on, that callback holds the output instead while
  messages await their commit (``chaton.server.history``).
- A client leaves the shared state (nick, rooms) the moment it starts closing; the QUIT is
  announced exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from chaton import tls
from chaton.config import Settings
from chaton.history_store import LAST_SEEN
from chaton.protocol.message import LineBuffer, Message, encode_line
from chaton.protocol.names import casefold
from chaton.server import commands
from chaton.server.admission import Admission
from chaton.server.cert_watch import CertWatch
from chaton.server.client_log import ClientLog
from chaton.server.commands import Command, dispatch
from chaton.server.history import keep_event
from chaton.server.hosts import cloak_key
from chaton.server.lines import Outgoing, new_msgid
from chaton.server.monitor import Monitor
from chaton.server.registration import REALNAME_LEN
from chaton.server.registration_state import Phase
from chaton.server.room_modes import MAX_LIST, MAX_MODES
from chaton.server.session import Session
from chaton.server.state import ServerState
from chaton.server.throttle import SlidingWindowCounter
from chaton.server.transport.tls_connection import TlsConnection
from chaton.server.whowas import WhoWas
from chaton.web.origins import certificate_names, configured_origins, own_origins
from chaton.web.static_files import load_assets

if TYPE_CHECKING:
    from chaton.server.accounts import AccountService
    from chaton.server.authority import Authority
    from chaton.server.history import History
    from chaton.server.retention import Retention
    from chaton.server.room_registry import RoomRegistry

__all__ = ["ChatServer"]

log = logging.getLogger("chaton")

class ChatServer:
    """Owns the settings, the shared state, the connections and the durable store."""

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.name = settings.server_name
        self.ssl_context = ssl_context or tls.server_context(settings.cert_file, settings.key_file)
        self.state = ServerState()
        self.sessions: set[Session] = set()
        self.client_log = ClientLog(settings)
        self.admission = Admission(settings, self.client_log)
        self.room_creations = SlidingWindowCounter(
            settings.rooms_created_per_ip, settings.rooms_created_window
        )
        self.admins: set[Session] = set()  # kept by Session.is_admin
        self.invisible: set[Session] = set()  # registered clients with user mode +i
        self.cloak_key = cloak_key(settings.key_file)  # guests' visible hosts (hosts.py)
        self.monitor = Monitor(self)
        self.whowas = WhoWas(settings.whowas_limit)
        self.started = time.time()
        self.max_seen = 0
        self._dirty: list[TlsConnection] = []
        self._flush_handle: asyncio.Handle | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self.welcome_templates: Any = None  # built by registration on first use
        self.accounts: AccountService | None = None  # attached by server.setup
        self.history: History | None = None  # likewise, when the setting keeps history
        self.retention: Retention | None = None  # with history: its background purge
        self._purger: asyncio.Task[None] | None = None
        self.authority: Authority | None = None  # likewise: the accounts' authority
        self.registry: RoomRegistry | None = None  # likewise: registered rooms
        self.isupport = self._isupport()
        self.commands: dict[str, Command] = commands.table()
        self.cert_watch = CertWatch(self)
        self.web_assets = load_assets()  # the web client, served from memory
        self.ports: list[int] = []  # every port we listen on (known once started)
        self.web_origins: frozenset[str] = frozenset()  # refreshed by refresh_web_origins
        from chaton.server.metrics import Metrics

        self.metrics = Metrics(self)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> list[tuple[str, int]]:
        """Listen; return the bound (host, port) pairs (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        hosts = [h.strip() for h in self.settings.host.split(",") if h.strip()]
        bound: list[tuple[str, int]] = []
        ports = [self.settings.port] + ([self.settings.web_port] if self.settings.web_port
                                        else [])
        for wanted in ports:
            port = wanted
            first = len(bound)
            for host in hosts:  # one port for all addresses, even when port 0 picks it
                server = await loop.create_server(
                    lambda: TlsConnection(self), host, port, reuse_address=True, backlog=1024
                )
                self._servers.append(server)
                bound += [s.getsockname()[:2] for s in server.sockets]
                port = bound[first][1]
        self.ports = sorted({p for _, p in bound})
        self.refresh_web_origins()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        if self.retention is not None:
            self._purger = asyncio.create_task(self.retention.run_forever())
        return bound

    def refresh_web_origins(self) -> None:
        """Which pages may open a WebSocket here (at start and on every reload)."""
        s = self.settings
        if s.web_origins.strip():
            self.web_origins = configured_origins(s.web_origins)
        else:
            names = [s.server_name, *certificate_names(s.cert_file)]
            self.web_origins = own_origins(names, self.ports)

    async def close(self, reason: str = "Server shutting down") -> None:
        """Stop listening, say ``ERROR`` to every client, wait briefly for them to go."""
        if self._closed.is_set():
            return
        for server in self._servers:
            server.close()
        for task in (self._sweeper, self._purger):
            if task is not None:
                task.cancel()
        for session in list(self.sessions):
            session.quit(reason)
        deadline = time.monotonic() + 3.0
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self.sessions):
            session.link.abort()
        if self.history is not None:
            self.history.close()
        if self.accounts is not None:
            self.accounts.close()
        self._closed.set()
        log.info("closed: %d connections remained at the end", len(self.sessions))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --- admission ------------------------------------------------------------------------
    def admit(self, conn: Session) -> None:
        """Count a new connection; note why it must be refused (told once TLS is up)."""
        conn.refusal = self._refusal(conn)

    def _refusal(self, conn: Session) -> str | None:
        self.sessions.add(conn)
        refusal = self.admission.admit(conn, time.monotonic())
        if refusal is None and self.authority is not None:
            refusal = self.authority.admit(conn)
        return refusal

    def on_registered(self, conn: Session) -> None:
        self.admission.registered(conn)
        self.metrics.registrations += 1
        self.monitor.online(conn)
        self.max_seen = max(self.max_seen, len(self.state.nicks))  # users, not connections

    def on_link_ready(self, conn: Session) -> None:
        if conn.refusal:
            self.client_log(conn.group, logging.INFO, "refused ip=%s reason=%s", conn.ip,
                            conn.refusal)
            conn.quit(conn.refusal)
            return
        self.client_log(conn.group, logging.INFO, "connect ip=%s %s", conn.ip,
                        conn.link.description)

    def on_closing(self, conn: Session) -> None:
        """Take ``conn`` out of the shared state and the counts and tell its peers, once."""
        was = conn.close()
        if was is Phase.CLOSED:
            return
        self.admission.closing(conn)
        if was is Phase.REGISTERED and conn.nick is not None:
            self.whowas.record(conn, conn.nick)
            rooms = list(conn.channels.values())
            peers = self.state.remove(conn)
            self.monitor.offline(conn.nick)
            reason = conn.close_reason or "Client quit"
            out = Outgoing(conn.source, "QUIT", [reason], msgid=new_msgid(),
                           account=conn.account)
            if peers:
                out.send_to(peers)
            keep_event(self, rooms, out, conn.source, conn.account, "QUIT", [reason])
            if self.history is not None and conn.account:
                self.history.note(LAST_SEEN, (casefold(conn.account), out.at))

    def on_connection_lost(self, conn: Session) -> None:
        self.on_closing(conn)
        self.admins.discard(conn)
        self.invisible.discard(conn)
        self.monitor.forget(conn)
        self.sessions.discard(conn)
        if conn.linked:
            self.client_log(conn.group, logging.INFO, "disconnect ip=%s nick=%s reason=%s",
                            conn.ip, conn.nick, conn.close_reason)

    # --- commands -------------------------------------------------------------------------
    def dispatch(self, conn: Session, msg: Message) -> Awaitable[None] | None:
        return dispatch(self.commands, self, conn, msg)

    def new_line_buffer(self) -> LineBuffer:
        return LineBuffer(self.settings.max_line_total)

    # --- encoding -------------------------------------------------------------------------
    def encode(self, command: str, params: Sequence[str], source: str | None) -> bytes:
        return encode_line(source, command, params)

    def numeric_line(self, code: str, nick: str, params: Sequence[str]) -> bytes:
        if not params:
            return encode_line(self.name, code, [nick])
        return encode_line(self.name, code, [nick, *params])

    def notice_admins(self, text: str) -> None:
        """Tell every logged-in admin online (admin actions are announced)."""
        for conn in self.admins:
            if conn.registered:
                conn.send_msg("NOTICE", conn.name, f"*** {text}")

    # --- output scheduling ----------------------------------------------------------------
    def schedule_flush(self, conn: TlsConnection) -> None:
        self._dirty.append(conn)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._flush_handle = None
        dirty = self._dirty
        self._dirty = []
        history = self.history
        if history is not None and history.hold(dirty):
            return  # written once the messages among them are committed
        for conn in dirty:
            conn.flush()

    # --- timers ---------------------------------------------------------------------------
    def _sweep_interval(self) -> float:
        s = self.settings
        shortest = min(s.tls_handshake_timeout, s.registration_timeout, s.ping_timeout,
                       s.first_line_timeout)
        # Half the poll interval, so a CLI change is applied within 1.5 polls at worst.
        return max(0.05, min(1.0, shortest / 4, s.db_poll_interval / 2))

    async def _sweep_forever(self) -> None:
        interval = self._sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep(time.monotonic())
            except Exception:  # a bug here must not stop timeouts for good
                log.exception("sweep-error")

    def sweep(self, now: float) -> None:
        """Enforce registration, first-line and ping timeouts (one pass over clients; the
        TLS handshake timeout is the transport's own)."""
        s = self.settings
        for conn in list(self.sessions):
            if conn.closing:
                continue
            if not conn.registered:
                if conn.expired(now):
                    conn.quit("Registration timeout")
                elif conn.last_active == conn.connected_at and (
                    now - conn.connected_at > s.first_line_timeout
                ):  # a slot held in silence, TLS done: the attack of silent connections
                    conn.quit(f"No command within {s.first_line_timeout:g} seconds")
            elif conn.ping_sent_at is not None:
                if now - conn.ping_sent_at > s.ping_timeout:
                    conn.quit(f"Ping timeout: {int(now - conn.last_active)} seconds")
            elif now - conn.last_active > s.ping_interval:
                conn.ping_sent_at = now
                conn.send_msg("PING", self.name)
        if self.authority is not None:
            self.authority.tick(now)
        self.cert_watch.tick()
        self.client_log.fold_expired(now)

    # --- ISUPPORT -------------------------------------------------------------------------
    def _isupport(self) -> list[str]:
        s = self.settings
        return [
            "CASEMAPPING=rfc1459",
            "CHANTYPES=#",
            "CHANMODES=beI,k,l,imnst",
            "EXCEPTS",
            "INVEX",
            "EXTBAN=$,a",
            f"MAXLIST=beI:{MAX_LIST}",
            "PREFIX=(ov)@+",
            f"NETWORK={s.network_name}",
            f"NICKLEN={s.nicklen}",
            f"CHANNELLEN={s.channellen}",
            f"TOPICLEN={s.topiclen}",
            f"AWAYLEN={s.awaylen}",
            f"NAMELEN={REALNAME_LEN}",
            f"KICKLEN={s.kicklen}",
            f"CHANLIMIT=#:{s.max_channels_per_user}",
            f"MAXTARGETS={s.max_targets}",
            f"TARGMAX=PRIVMSG:{s.max_targets},NOTICE:{s.max_targets},NAMES:{s.max_targets},"
            f"KICK:{s.max_targets},JOIN:{s.max_channels_per_user},"
            f"PART:{s.max_channels_per_user},WHOIS:1",
            f"MODES={MAX_MODES}",
            "SAFELIST",
            "ELIST=MU",
            "WHOX",
            f"MONITOR={s.monitor_limit}",
            "STATUSMSG=@+",
            "BOT=B",
            *(["UTF8ONLY"] if s.utf8_only else []),
            *([f"CHATHISTORY={s.chathistory_max}", "MSGREFTYPES=msgid,timestamp"]
              if s.history else []),
        ]
