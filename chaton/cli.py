"""``chaton`` command line: serve, connect, certs, account, ban, audit, backup, check.

Secrets never come from argv: passwords are prompted (hidden) or read from stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chaton import __version__, certs
from chaton.config import ConfigError, Settings, load_settings
from chaton.datadir import DataDirInUse, serving_pid
from chaton.logsafe import JsonFormatter, SafeFormatter
from chaton.store import StoreError
from chaton.web.origins import web_address

__all__ = ["main", "serve"]

log = logging.getLogger("chaton")

SETTINGS_EPILOG = "Every setting can also be put in the TOML file given with --config:\n"
SETTINGS_EPILOG += "\n".join(
    f"  {name:<28} {doc} (default: {default})" for name, default, doc in Settings.field_docs()
)


def _setup_logging(verbose: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the chat server",
        description="Run the TLS chat server. On first run it makes a private CA and a server "
        "certificate in the certs directory and tells you where the CA is.",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address(es) to listen on, comma separated "
                   "(default 127.0.0.1; '::' for IPv6, '127.0.0.1,::1' for both)")
    p.add_argument("--port", type=int, help="TCP port (default 5555)")
    p.add_argument("--certs-dir", type=Path, help="certificate directory (default certs/)")
    p.add_argument("--data-dir", type=Path, help="database directory (default data/)")
    p.add_argument("--server-name", help="the server's IRC name (default chaton.local)")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file with settings")
    p.add_argument("--cert-host", action="append", metavar="NAME|IP",
                   help="extra host name for a first-run certificate (repeatable)")
    p.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (pip install 'chaton[fast]'), "
                   "else asyncio's (default: auto)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines on stderr as text (default) or one JSON object each "
                   "(for the journal or a log collector)")
    p.set_defaults(func=_run_serve)


def _settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        host=args.host,
        port=args.port,
        certs_dir=args.certs_dir,
        data_dir=args.data_dir,
        server_name=getattr(args, "server_name", None),
    )


async def serve(settings: Settings, *, ready: asyncio.Event | None = None,
                reload_settings: Callable[[], Settings] | None = None) -> int:
    """Run a server until SIGINT/SIGTERM, then say ERROR to everyone and return 0. SIGHUP
    reloads the settings (``reload_settings``: the config file read again) and the
    certificate (``chaton.server.reload``)."""
    from chaton.server.app import ChatServer
    from chaton.server.reload import reload
    from chaton.server.setup import attach_services

    server = ChatServer(settings)
    attach_services(server)
    bound = await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first, then "listening": whoever waits for that line (a service manager,
    # a test) may signal at once, and a stop must then be a clean one.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    again = reload_settings or (lambda: settings)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, lambda: reload(server, again))
    for host, port in bound:
        log.info("listening on %s port %d (TLS)", host, port)
    if settings.web:
        log.info("web client: %s", web_address(settings, bound))
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: telling %d clients", len(server.sessions))
    await server.close("Server shutting down")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose, args.log_format)
    settings = _settings_from(args)
    made = certs.ensure_server_certs(settings.certs_dir, list(args.cert_host or ()))
    if made is not None:
        log.info("first run: made a certificate authority and a server certificate")
        for line in certs.describe(made).splitlines():
            if line.strip():
                log.info("  %s", line)
    factory = _loop_factory(args.event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings, reload_settings=lambda: _settings_from(args)))


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop if asked for or available (``auto``); None means asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--event-loop uvloop: uvloop is not installed "
                              "(pip install 'chaton[fast]')") from None
        return None
    log.info("event loop: uvloop %s", getattr(uvloop, "__version__", "?"))
    return uvloop.new_event_loop


def _add_certs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "certs",
        help="make a private CA and server certificate",
        description="Make a private CA and a server certificate signed by it (ECDSA P-256), "
        "so clients can verify the server. Hand ca.pem to clients; keep the keys secret.",
    )
    certs.add_arguments(p)
    p.set_defaults(func=certs.run)


def _add_reload(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reload",
        help="make the running server re-read its config and certificate",
        description="Send SIGHUP to the server serving this data dir: it re-reads its "
        "config file and its certificate and key, without disconnecting anyone. What "
        "failed to load is kept as it was; the server's log says what changed.",
    )
    p.add_argument("--data-dir", type=Path, help="database directory (default data/)")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file with settings")
    p.set_defaults(func=_run_reload)


def _run_reload(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    pid = serving_pid(settings.data_dir)
    if pid is None:
        print(f"chaton reload: no server is running on {settings.data_dir}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGHUP)
    print(f"asked chaton (pid {pid}) to reload; its log says what changed")
    return 0


def _add_connect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        from chaton import client
    except ImportError:  # pragma: no cover - a server-only install without the client
        return
    if not hasattr(client, "add_arguments"):  # pragma: no cover
        return
    p = sub.add_parser(
        "connect",
        help="chat from the terminal",
        description="Connect to a chaton (or any IRC-over-TLS) server, verifying its "
        "certificate, and chat. Type /help once connected.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    client.add_arguments(p)
    p.set_defaults(func=client.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaton",
        description="chaton: a self-hosted, TLS-only team chat that speaks IRC.",
        epilog="Run 'chaton COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"chaton {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_connect(sub)
    _add_certs(sub)
    _add_reload(sub)
    try:
        from chaton import cli_admin
    except ImportError:  # pragma: no cover - only while the admin CLI is being written
        pass
    else:
        cli_admin.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"chaton: configuration error: {exc}", file=sys.stderr)
        return 2
    except certs.CertError as exc:
        print(f"chaton: certificate error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, DataDirInUse) as exc:
        print(f"chaton: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"chaton: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
