"""Reloading a running server (SIGHUP, ``chaton reload``): new settings and a new
certificate without a restart.

Invariants:
- Each part loads whole or not at all: settings that fail to load (bad TOML, a bad value)
  leave the running settings; a certificate or key that fails to load leaves the running
  one. Each failure is one log line saying why and a notice to the admins online.
- New connections use the new certificate at once (each builds its TLS state from
  ``server.ssl_context`` when it arrives); existing connections keep theirs.
- A setting in ``RESTART_ONLY`` keeps its running value; the log names each one that was
  changed in the file and waits for a restart. Everything else takes effect for whatever
  reads it next (existing clients keep their flood bucket; new ones get the new limits).
- The limits that components copied at start (connection rate, log budget, WHOWAS size)
  are updated in place, with the state they count kept.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from chaton import tls
from chaton.config import ConfigError, Settings

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["RESTART_ONLY", "reload"]

log = logging.getLogger("chaton")

#: Settings a running server cannot take over: sockets, files and threads made at start,
#: and names clients have already been told.
RESTART_ONLY = frozenset({
    "host", "port", "data_dir", "server_name", "network_name", "history",
    "history_max_pending", "history_purge_interval", "hash_workers", "hash_nice",
    "hash_queue_limit", "hash_queue_per_ip", "argon2_time_cost", "argon2_memory_kib",
    "argon2_parallelism", "db_poll_interval", "ipv4_prefix", "ipv6_prefix",
    "login_failures_per_ip", "login_failures_per_account", "login_failure_window",
    "login_known_address_ttl", "rooms_created_per_ip", "rooms_created_window", "web_port",
})


def reload(server: ChatServer, load: Callable[[], Settings]) -> bool:
    """Re-read the settings (``load``) and the certificate; True if both loaded."""
    old = server.settings
    ok = cert_ok = True
    try:
        new = load()
    except (ConfigError, OSError) as exc:
        _refused(server, f"the configuration was not reloaded: {exc}; the running one stays")
        new, ok = old, False
    waiting = sorted(name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name))
    if waiting:
        new = dataclasses.replace(new, **{name: getattr(old, name) for name in waiting})
        log.warning("reload: not applied until a restart: %s", ", ".join(
            f"{name} ({getattr(old, name)!r} stays)" for name in waiting))
    try:
        context = tls.server_context(new.cert_file, new.key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        _refused(server, f"the certificate was not reloaded ({new.cert_file}: {exc}); "
                         "new connections keep the running one")
        ok = cert_ok = False
    else:
        server.ssl_context = context
    apply_settings(server, new)
    server.refresh_web_origins()  # the certificate's names or web_origins may have changed
    if cert_ok:
        server.cert_watch.loaded()  # watch the expiry of the certificate now in use
    changed = sorted(f.name for f in dataclasses.fields(Settings)
                     if getattr(new, f.name) != getattr(old, f.name))
    log.info("reloaded: settings changed: %s; certificate %s", ", ".join(changed) or "none",
             "loaded for new connections" if cert_ok else "kept")
    return ok


def apply_settings(server: ChatServer, new: Settings) -> None:
    """Make ``new`` the running settings, and update the limits components copied."""
    server.settings = new
    server.admission.settings = new
    server.admission.connect_rate.limit = new.connect_rate_per_ip
    server.admission.connect_rate.window = new.connect_rate_window
    server.client_log.limit = new.log_lines_per_ip
    server.client_log.window = new.log_window
    server.whowas.limit = new.whowas_limit
    server.isupport = server._isupport()
    server.welcome_templates = None  # the MOTD and 005 lines are built anew on next use


def _refused(server: ChatServer, why: str) -> None:
    log.error("reload-failed: %s", why)
    server.notice_admins(f"Reload: {why}")
