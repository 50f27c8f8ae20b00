"""Every setting and limit of chaton in one frozen snapshot.

A running server holds one :class:`Settings`; a reload builds a new one and swaps it whole,
so no handler ever sees half of an old configuration and half of a new one. Defaults are safe
for a small team behind a firewall; each is documented in the README's limits table.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from chaton.protocol.message import CLIENT_TAG_BYTES, MAX_LINE_BYTES
from chaton.protocol.names import BadRoomName, room_name

__all__ = ["ConfigError", "Settings", "load_settings", "retention_seconds"]


class ConfigError(ValueError):
    """A configuration file or override is unusable; the message says which key and why."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class Settings:
    """One immutable configuration snapshot (file values overridden by command-line flags)."""

    # --- where ---------------------------------------------------------------------------
    host: str = field(default="127.0.0.1", metadata=_doc("address to listen on (:: for IPv6)"))
    port: int = field(default=5555, metadata=_doc("TCP port of the TLS listener"))
    certs_dir: Path = field(default=Path("certs"), metadata=_doc("CA and server certificate"))
    data_dir: Path = field(default=Path("data"), metadata=_doc("SQLite database and state"))

    # --- identity --------------------------------------------------------------------------
    server_name: str = field(default="chaton.local", metadata=_doc("the server's IRC name"))
    network_name: str = field(default="chaton", metadata=_doc("NETWORK in ISUPPORT"))
    account_host: str = field(
        default="user.{account}.{server}",
        metadata=_doc("the host others see for a logged-in user ({account}, {server})"),
    )
    guest_host: str = field(
        default="guest.{cloak}.{server}",
        metadata=_doc("the host others see for a guest ({cloak} of its address, {server})"),
    )
    default_channel: str = field(default="#general", metadata=_doc("room clients join first"))
    motd: str = field(
        default="Welcome to chaton, a TLS-only team chat. Type /help in the chaton client.",
        metadata=_doc("message of the day (lines separated by newlines)"),
    )

    # --- protocol limits -------------------------------------------------------------------
    max_line_bytes: int = field(
        default=MAX_LINE_BYTES, metadata=_doc("IRC line without tags, with CRLF")
    )
    max_tag_bytes: int = field(
        default=CLIENT_TAG_BYTES, metadata=_doc("allowance for the message tags")
    )
    nicklen: int = field(default=30, metadata=_doc("longest nickname"))
    channellen: int = field(default=50, metadata=_doc("longest room name"))
    topiclen: int = field(default=390, metadata=_doc("longest topic"))
    awaylen: int = field(default=200, metadata=_doc("longest away message"))
    kicklen: int = field(default=255, metadata=_doc("longest kick reason"))
    max_channels_per_user: int = field(default=50, metadata=_doc("rooms one client may join"))
    max_targets: int = field(default=4, metadata=_doc("targets of one PRIVMSG/NOTICE"))
    rooms_created_per_ip: int = field(
        default=20, metadata=_doc("new rooms per window and address group; 0 = no limit")
    )
    rooms_created_window: float = field(default=60.0, metadata=_doc("that window, in seconds"))
    log_lines_per_ip: int = field(
        default=50, metadata=_doc("log lines one address group may cause per window; 0 = no limit")
    )
    log_window: float = field(default=60.0, metadata=_doc("that window, in seconds"))
    max_list_replies: int = field(
        default=200, metadata=_doc("entries one UBAN LIST shows (the newest)")
    )

    # --- timeouts (seconds) ----------------------------------------------------------------
    tls_handshake_timeout: float = field(default=10.0, metadata=_doc("TLS handshake deadline"))
    registration_timeout: float = field(default=60.0, metadata=_doc("NICK/USER deadline"))
    first_line_timeout: float = field(
        default=15.0, metadata=_doc("deadline for a new connection's first IRC line")
    )
    ping_interval: float = field(default=90.0, metadata=_doc("idle time before server PINGs"))
    ping_timeout: float = field(default=60.0, metadata=_doc("wait for PONG before dropping"))
    close_grace: float = field(
        default=5.0, metadata=_doc("a closing client's time to read its last words")
    )

    # --- flow control ----------------------------------------------------------------------
    sendq_bytes: int = field(default=1 << 20, metadata=_doc("unsent bytes before SendQ drop"))
    flood_burst: int = field(default=20, metadata=_doc("lines a client may send at once"))
    flood_rate: float = field(default=4.0, metadata=_doc("lines/s refill; 0 disables"))
    flood_max_backlog: int = field(default=40, metadata=_doc("delayed lines before Excess flood"))
    flood_reply_lines: int = field(
        default=40, metadata=_doc("reply lines one flood token pays for (NAMES, WHO, LIST...)")
    )
    flood_exempt_admins: bool = field(default=True, metadata=_doc("admins skip flood control"))

    # --- connection limits -----------------------------------------------------------------
    max_clients: int = field(default=1024, metadata=_doc("connections in all"))
    max_clients_per_ip: int = field(
        default=32, metadata=_doc("connections from one address group; 0 = no limit")
    )
    max_unregistered: int = field(
        default=256, metadata=_doc("connections still registering, in all (oldest go first)")
    )
    max_unregistered_per_ip: int = field(
        default=8, metadata=_doc("connections still registering per address group; 0 = no limit")
    )
    connect_rate_per_ip: int = field(
        default=30, metadata=_doc("new connections per window and address group; 0 = no limit")
    )
    connect_rate_window: float = field(default=10.0, metadata=_doc("that window, in seconds"))
    ipv4_prefix: int = field(default=32, metadata=_doc("IPv4 bits that make an address group"))
    ipv6_prefix: int = field(default=64, metadata=_doc("IPv6 bits that make an address group"))

    # --- accounts --------------------------------------------------------------------------
    require_account: bool = field(default=False, metadata=_doc("refuse clients not logged in"))
    room_creation: str = field(
        default="anyone", metadata=_doc("who may create rooms: anyone, accounts or admins")
    )
    monitor_limit: int = field(default=100, metadata=_doc("nicknames one client may MONITOR"))
    whowas_limit: int = field(default=1000, metadata=_doc("nicknames WHOWAS remembers, in all"))
    utf8_only: bool = field(
        default=True, metadata=_doc("refuse invalid UTF-8 (FAIL INVALID_UTF8); off: replace it")
    )
    rooms_registered_per_account: int = field(
        default=10, metadata=_doc("rooms one account may register with ChanServ; 0 = no limit")
    )
    min_password_length: int = field(
        default=8, metadata=_doc("shortest password the CLI accepts")
    )
    argon2_time_cost: int = field(default=3, metadata=_doc("argon2id iterations"))
    argon2_memory_kib: int = field(default=65536, metadata=_doc("argon2id memory (KiB)"))
    argon2_parallelism: int = field(default=4, metadata=_doc("argon2id lanes"))
    hash_workers: int = field(
        default=1,
        metadata=_doc("threads for password hashing (more: faster logins, less CPU left for chat)"),
    )
    hash_queue_limit: int = field(default=64, metadata=_doc("logins waiting for a hasher"))
    hash_queue_per_ip: int = field(
        default=4, metadata=_doc("of those, from one address (/64 for IPv6); 0 = no limit")
    )
    hash_nice: int = field(
        default=10, metadata=_doc("how much lower hashing threads run than chat (0-19)")
    )
    login_failures_per_ip: int = field(
        default=5, metadata=_doc("failed logins per window and IP; 0 = no limit")
    )
    login_failures_per_account: int = field(
        default=10, metadata=_doc("failed logins per window and account; 0 = no limit")
    )
    login_failure_window: float = field(default=60.0, metadata=_doc("that window, in seconds"))
    login_known_address_ttl: float = field(
        default=30 * 86400.0,
        metadata=_doc(
            "how long an address that logged in to an account is exempt from that account's "
            "failure limit (seconds; 0 = never)"
        ),
    )

    # --- history ---------------------------------------------------------------------------
    history: bool = field(
        default=True,
        metadata=_doc("keep room and private messages (and room events) in the database, "
                      "each committed before it is delivered; false = no history at all"),
    )
    history_retention: str = field(
        default="0",
        metadata=_doc("how long messages are kept, e.g. 90d or 26w; 0 = forever (a registered "
                      "room may set its own: /msg ChanServ SET #room RETENTION 30d)"),
    )
    history_visibility: str = field(
        default="auto",
        metadata=_doc("whether a member reads what was said before it first joined: all, "
                      "joined, or auto (all in public rooms, joined in +i rooms)"),
    )
    history_replay_lines: int = field(
        default=50,
        metadata=_doc("lines replayed on JOIN to clients without CHATHISTORY (irssi, WeeChat): "
                      "what they missed since last seen, at most this many; 0 = none"),
    )
    history_purge_interval: float = field(
        default=600.0, metadata=_doc("seconds between looks for messages past their retention")
    )
    history_purge_chunk: int = field(
        default=500, metadata=_doc("messages deleted per commit when purging (bounds the pause "
                                   "a purge puts between two message commits)")
    )
    chathistory_max: int = field(
        default=100, metadata=_doc("most messages one CHATHISTORY request returns")
    )
    history_max_pending: int = field(
        default=20_000,
        metadata=_doc("messages accepted but not yet committed before senders wait for the "
                      "disk (bounds the memory a slow disk can take)"),
    )

    # --- web (browsers on the TLS listener) --------------------------------------------------
    web: bool = field(
        default=True,
        metadata=_doc("serve the web client, IRC over WebSocket (/ws) and /metrics over HTTPS"
                      " on the TLS listener"),
    )
    web_port: int = field(
        default=0, metadata=_doc("an extra TLS port for browsers (same certificate); 0 = none")
    )
    web_origins: str = field(
        default="",
        metadata=_doc("origins allowed to open the WebSocket, comma-separated; empty: the "
                      "server's own names (server_name and the certificate's names)"),
    )
    http_max_header_bytes: int = field(
        default=16384, metadata=_doc("longest HTTP request head (request line and headers)")
    )
    http_requests_per_connection: int = field(
        default=100, metadata=_doc("HTTP requests one keep-alive connection may make")
    )
    metrics_token: str = field(
        default="",
        metadata=_doc("bearer token /metrics requires; empty: /metrics answers loopback only"),
    )

    # --- database --------------------------------------------------------------------------
    db_poll_interval: float = field(
        default=1.0, metadata=_doc("seconds between looks for changes the admin CLI committed")
    )

    # --- derived paths ---------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.certs_dir / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.certs_dir / "ca-key.pem"

    @property
    def cert_file(self) -> Path:
        return self.certs_dir / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.certs_dir / "server-key.pem"

    @property
    def db_file(self) -> Path:
        return self.data_dir / "chaton.db"

    @property
    def max_line_total(self) -> int:
        """Longest raw line the framer buffers: tags, their separator and the IRC part."""
        return self.max_tag_bytes + 2 + self.max_line_bytes

    def replace(self, **changes: Any) -> Settings:
        """A new snapshot with ``changes`` applied and validated."""
        return _build({**_as_dict(self), **changes}, source="override")

    @classmethod
    def field_docs(cls) -> list[tuple[str, Any, str]]:
        """(name, default, description) of every setting, for ``--help`` and the README."""
        return [(f.name, f.default, f.metadata.get("doc", "")) for f in fields(cls)]


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def _coerce(name: str, kind: type, value: Any, source: str) -> Any:
    if kind is Path:
        if isinstance(value, str | Path):
            return Path(value)
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: setting {name!r} must be {kind.__name__}, got {value!r}")


_KINDS: dict[str, type] = {
    "Path": Path,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}


def _build(values: dict[str, Any], *, source: str) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s): {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for name, value in values.items():
        kind = _KINDS[str(known[name].type)]
        clean[name] = _coerce(name, kind, value, source)
    settings = Settings(**clean)
    _validate(settings, source)
    return settings


#: Limits where 0 switches the limit off (for benchmarks and trusted networks).
_ZERO_MEANS_UNLIMITED = (
    "max_clients_per_ip", "max_unregistered_per_ip", "connect_rate_per_ip",
    "rooms_created_per_ip", "log_lines_per_ip", "rooms_registered_per_account",
    "login_failures_per_ip",
    "login_failures_per_account", "hash_queue_per_ip", "login_known_address_ttl",
)


def _validate(s: Settings, source: str) -> None:
    if s.room_creation not in ("anyone", "accounts", "admins"):
        raise ConfigError(f"{source}: room_creation must be anyone, accounts or admins")
    positive = [
        "max_line_bytes", "nicklen", "channellen", "topiclen", "awaylen", "kicklen",
        "max_channels_per_user", "max_targets", "max_list_replies", "tls_handshake_timeout",
        "registration_timeout", "first_line_timeout", "ping_interval", "ping_timeout",
        "close_grace", "sendq_bytes", "flood_burst", "flood_max_backlog", "flood_reply_lines",
        "max_clients",
        "max_unregistered", "connect_rate_window", "rooms_created_window", "log_window",
        "argon2_time_cost", "argon2_memory_kib", "argon2_parallelism", "hash_workers",
        "hash_queue_limit", "login_failure_window", "db_poll_interval", "chathistory_max",
        "history_max_pending", "history_purge_interval", "history_purge_chunk",
        "http_max_header_bytes", "http_requests_per_connection",
    ]
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"{source}: setting {name!r} must be greater than 0")
    if s.history_visibility not in ("auto", "all", "joined"):
        raise ConfigError(f"{source}: history_visibility must be auto, all or joined")
    if s.history_replay_lines < 0:
        raise ConfigError(f"{source}: history_replay_lines cannot be negative (0 = none)")
    try:
        retention_seconds(s.history_retention)
    except ValueError as why:
        raise ConfigError(f"{source}: history_retention: {why}") from None
    if not 0 <= s.hash_nice <= 19:
        raise ConfigError(f"{source}: hash_nice must be 0..19")
    for name in _ZERO_MEANS_UNLIMITED:
        if getattr(s, name) < 0:
            raise ConfigError(f"{source}: setting {name!r} cannot be negative (0 = unlimited)")
    if not 0 <= s.web_port <= 65535:
        raise ConfigError(f"{source}: web_port must be 0..65535 (0 = no extra port)")
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"{source}: port must be 0..65535 (0 picks a free port)")
    if s.max_line_bytes < 64:
        raise ConfigError(f"{source}: max_line_bytes below 64 cannot carry IRC")
    if not 8 <= s.ipv4_prefix <= 32 or not 16 <= s.ipv6_prefix <= 128:
        raise ConfigError(f"{source}: ipv4_prefix must be 8..32 and ipv6_prefix 16..128")
    if s.min_password_length < 1:
        raise ConfigError(f"{source}: min_password_length must be at least 1")
    if s.flood_rate < 0 or s.max_tag_bytes < 0:
        raise ConfigError(f"{source}: flood_rate and max_tag_bytes cannot be negative")
    try:
        room_name(s.default_channel, s.channellen)
    except BadRoomName as why:
        raise ConfigError(f"{source}: default_channel: {why}") from None
    if not s.server_name or " " in s.server_name or "." not in s.server_name:
        raise ConfigError(f"{source}: server_name must be a host-like name such as chat.local")
    from chaton.server.hosts import HOST_SHAPE, visible_host

    for name in ("account_host", "guest_host"):
        try:
            shown = visible_host(s, "alice" if name == "account_host" else None)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"{source}: {name} may use only {{account}} (account_host),"
                              " {cloak} (guest_host) and {server}") from None
        if not HOST_SHAPE.fullmatch(shown):
            raise ConfigError(f"{source}: {name} must give a host name (letters, digits, "
                              f"'.', '-' and ':'), not {shown!r}")


def retention_seconds(text: str) -> float:
    """A retention setting in seconds; 0 = keep forever."""
    from chaton.protocol.durations import parse_duration

    return 0.0 if text.strip() == "0" else float(parse_duration(text))


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read a TOML file (if given), then apply non-``None`` overrides from the command line."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        values = values.get("chaton", values) if isinstance(values.get("chaton"), dict) else values
    base = _build(values, source=str(path) if path else "defaults")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**changes) if changes else base


# Make sure every annotation maps to a kind we know how to read (fails at import otherwise).
assert all(str(f.type) in _KINDS for f in dataclasses.fields(Settings)), "unknown setting type"
