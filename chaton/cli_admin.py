"""Offline administration: accounts, bans and the audit log, on the server's own database.

``chaton account|ban|audit|backup|check ...`` open the same SQLite file as a running server
(WAL lets both work at once; see ``chaton.store`` for why that is safe). Every change is
written together with its audit line in one transaction, with the actor ``cli:<os user>``;
a running server applies it from the store's change feed within ``db_poll_interval``.
Commands that only read never create a database: a mistyped ``--data-dir`` is an error.

Errors are one line on stderr and a non-zero exit status, never a traceback. Passwords are
read from the terminal or standard input, never from the command line.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from chaton.config import ConfigError, Settings, load_settings
from chaton.datadir import DataDirInUse, DataDirLock, private_dir
from chaton.passwords import PasswordInputError, Passwords, read_new_password
from chaton.protocol.names import valid_nick
from chaton.server.bans import (
    LOOPBACK_REASON,
    BanError,
    BanKind,
    ban_audit,
    ban_span,
    format_duration,
    format_target,
    new_ban,
    parse_duration,
    parse_target,
    touches_loopback,
)
from chaton.store import (
    ROLES,
    SCHEMA_VERSION,
    AccountExists,
    AuditEntry,
    BanRecord,
    Store,
    StoreError,
)

__all__ = ["CliError", "add_subcommands", "main"]

Handler = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A request the CLI refuses; the message is printed as is."""


# --- plumbing ------------------------------------------------------------------------------


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None)
    data_dir = getattr(args, "data_dir", None)
    return load_settings(Path(config) if config else None, data_dir=data_dir)


def _open(settings: Settings, *, create: bool = False, readonly: bool = False) -> Store:
    return Store(settings.db_file, create=create, readonly=readonly)


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so stored data cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cells = [list(headers), *([_printable(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _audit(action: str, target: str, reason: str = "") -> AuditEntry:
    return AuditEntry(
        at=time.time(),
        actor=_actor(),
        action=action,
        target=target,
        reason=reason,
    )


def _command(fn: Handler) -> Handler:
    """Turn expected failures into one line on stderr and an exit status."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (
            CliError,
            ConfigError,
            StoreError,
            BanError,
            PasswordInputError,
        ) as exc:
            print(f"chaton: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print("chaton: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run


def _account_name(settings: Settings, name: str) -> str:
    if not valid_nick(name, settings.nicklen):
        raise CliError(
            f"{name!r} is not a valid account name (an ASCII nickname of at most "
            f"{settings.nicklen} characters, not starting with a digit or '-')"
        )
    return name


# --- accounts ------------------------------------------------------------------------------


@_command
def cmd_account_add(args: argparse.Namespace) -> int:
    """account add NAME [--admin] [--password-stdin]"""
    settings = _settings(args)
    name = _account_name(settings, args.name)
    role = "admin" if args.admin else "user"
    with _open(settings, create=True) as store:
        if store.get_account(name) is not None:
            raise CliError(f"account {name!r} already exists")
        password = read_new_password(stdin=args.password_stdin,
                                     min_length=settings.min_password_length)
        password_hash = Passwords(settings).hash(password)
        del password
        try:
            store.add_account(name, password_hash, role, audit=_audit("account.add", name, role))
        except AccountExists:
            raise CliError(f"account {name!r} already exists") from None
    print(f"account {name} created ({role})")
    return EXIT_OK


@_command
def cmd_account_passwd(args: argparse.Namespace) -> int:
    """account passwd NAME [--password-stdin]"""
    settings = _settings(args)
    with _open(settings) as store:
        account = store.get_account(args.name)
        if account is None:
            raise CliError(f"no account named {args.name!r}")
        password = read_new_password(stdin=args.password_stdin,
                                     min_length=settings.min_password_length)
        password_hash = Passwords(settings).hash(password)
        del password
        if not store.set_password_hash(
            account.name, password_hash, audit=_audit("account.passwd", account.name)
        ):
            raise CliError(f"no account named {args.name!r}")
    print(f"password of {account.name} changed")
    return EXIT_OK


@_command
def cmd_account_set(args: argparse.Namespace) -> int:
    """account set NAME [--create] [--admin|--user] [--password-stdin]: for scripts."""
    settings = _settings(args)
    name = _account_name(settings, args.name)
    with _open(settings, create=args.create) as store:
        account = store.get_account(name)
        if account is None and not args.create:
            raise CliError(f"no account named {name!r} (add --create to make it)")
        password = read_new_password(stdin=args.password_stdin,
                                     min_length=settings.min_password_length)
        password_hash = Passwords(settings).hash(password)
        del password
        if account is None:
            role = args.role or "user"
            try:
                store.add_account(name, password_hash, role,
                                  audit=_audit("account.add", name, role))
            except AccountExists:
                raise CliError(f"account {name!r} was created meanwhile; run again") from None
            print(f"account {name} created ({role})")
            return EXIT_OK
        store.set_password_hash(account.name, password_hash,
                                audit=_audit("account.passwd", account.name))
        if args.role and args.role != account.role:
            store.set_role(account.name, args.role,
                           audit=_audit("account.role", account.name, args.role))
        print(f"account {account.name} updated ({args.role or account.role})")
    return EXIT_OK


@_command
def cmd_account_del(args: argparse.Namespace) -> int:
    """account del NAME"""
    settings = _settings(args)
    with _open(settings) as store:
        account = store.get_account(args.name)
        if account is None or not store.delete_account(
            account.name, audit=_audit("account.del", account.name)
        ):
            raise CliError(f"no account named {args.name!r}")
    print(f"account {account.name} deleted")
    return EXIT_OK


@_command
def cmd_account_list(args: argparse.Namespace) -> int:
    """account list"""
    settings = _settings(args)
    with _open(settings, readonly=True) as store:
        accounts = store.list_accounts()
    if not accounts:
        print("no accounts")
        return EXIT_OK
    _table(
        ("NAME", "ROLE", "CREATED", "LAST LOGIN"),
        [(a.name, a.role, _when(a.created), _when(a.last_login)) for a in accounts],
    )
    return EXIT_OK


@_command
def cmd_account_role(args: argparse.Namespace) -> int:
    """account role NAME user|admin"""
    settings = _settings(args)
    with _open(settings) as store:
        account = store.get_account(args.name)
        if account is None or not store.set_role(
            account.name,
            args.role,
            audit=_audit("account.role", account.name, f"{account.role} -> {args.role}"),
        ):
            raise CliError(f"no account named {args.name!r}")
    print(f"{account.name} is now {args.role}")
    return EXIT_OK


# --- bans ----------------------------------------------------------------------------------


def _expires_text(record: BanRecord, now: float) -> str:
    if record.expires is None:
        return "never"
    return f"in {format_duration(max(1.0, record.expires - now), parts=2)}"


@_command
def cmd_ban_add(args: argparse.Namespace) -> int:
    """ban add TARGET [--duration D] [--reason TEXT] [--force]"""
    settings = _settings(args)
    kind, value = parse_target(args.target, nicklen=settings.nicklen)
    target = format_target(kind, value)
    if touches_loopback(kind, value) and not args.force:
        raise CliError(f"{target} not banned: {LOOPBACK_REASON}; add --force to insist")
    seconds = parse_duration(args.duration) if args.duration else None
    record = new_ban(kind, value, reason=args.reason or "", actor=_actor(), now=time.time(),
                     seconds=seconds)
    span = ban_span(record)
    with _open(settings, create=True) as store:
        existed = store.get_ban(kind.value, value) is not None
        store.add_ban(record, audit=ban_audit(record, actor=record.actor))
    print(f"ban on {target} {'updated' if existed else 'added'} ({span})")
    return EXIT_OK


@_command
def cmd_ban_del(args: argparse.Namespace) -> int:
    """ban del TARGET"""
    settings = _settings(args)
    kind, value = parse_target(args.target, nicklen=settings.nicklen)
    target = format_target(kind, value)
    with _open(settings) as store:
        if not store.delete_ban(kind.value, value, audit=_audit("ban.del", target)):
            raise CliError(f"no ban on {target}")
    print(f"ban on {target} lifted")
    return EXIT_OK


@_command
def cmd_ban_list(args: argparse.Namespace) -> int:
    """ban list"""
    settings = _settings(args)
    now = time.time()
    with _open(settings, readonly=True) as store:
        bans = store.list_bans(now)
    if not bans:
        print("no bans in force")
        return EXIT_OK
    _table(
        ("TARGET", "KIND", "EXPIRES", "BY", "SINCE", "REASON"),
        [
            (
                format_target(b.kind, b.value),
                BanKind(b.kind).value,
                _expires_text(b, now),
                b.actor,
                _when(b.created),
                b.reason,
            )
            for b in bans
        ],
    )
    return EXIT_OK


# --- audit ---------------------------------------------------------------------------------


def parse_since(text: str, now: float) -> float:
    """``1h`` (that long before ``now``) or an ISO date/time (local time unless it says)."""
    try:
        return now - parse_duration(text)
    except BanError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"--since {text!r}: give a duration such as 1h or 7d, or a date such as 2024-05-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local time
    return moment.timestamp()


@_command
def cmd_audit(args: argparse.Namespace) -> int:
    """audit [--since WHEN]"""
    settings = _settings(args)
    since = parse_since(args.since, time.time()) if args.since else None
    with _open(settings, readonly=True) as store:
        entries = store.audit_since(since)
    if not entries:
        print("no audit entries")
        return EXIT_OK
    _table(
        ("WHEN", "ACTOR", "ACTION", "TARGET", "REASON", "FROM"),
        [(_when(e.at), e.actor, e.action, e.target, e.reason, e.source_ip or "-") for e in entries],
    )
    return EXIT_OK


# --- backup and check ------------------------------------------------------------------------


def _summary(store: Store) -> str:
    counts = store.counts()
    return (
        f"schema version {store.schema_version()}, {counts['accounts']} accounts, "
        f"{counts['bans']} bans, {counts['audit']} audit lines"
    )


@_command
def cmd_backup(args: argparse.Namespace) -> int:
    """backup FILE [--force]"""
    settings = _settings(args)
    dest = Path(args.file)
    if dest.is_dir():
        raise CliError(f"{dest} is a directory; give a file name such as {dest}/chaton.db")
    if dest.exists() and not args.force:
        raise CliError(f"{dest} exists; add --force to replace it")
    if dest.resolve() == settings.db_file.resolve():
        raise CliError("the backup cannot be the live database itself")
    with _open(settings, readonly=True) as store:
        store.backup(dest)
    with Store(dest, readonly=True) as copy:
        summary = _summary(copy)
    print(f"backup of {settings.db_file} written to {dest} ({summary}; check ok)")
    return EXIT_OK


@_command
def cmd_check(args: argparse.Namespace) -> int:
    """check"""
    settings = _settings(args)
    with _open(settings, readonly=True) as store:
        problems = store.integrity_check()
        version = store.schema_version()
        summary = _summary(store) if problems == ["ok"] else ""
    if problems != ["ok"]:
        for line in problems[:20]:
            print(f"chaton: {_printable(line)}", file=sys.stderr)
        raise CliError(
            f"{settings.db_file} is damaged ({len(problems)} problem(s)); stop the server and "
            "restore a backup (see 'Backups' in the README)"
        )
    if version < SCHEMA_VERSION:
        summary += f" (this chaton is at {SCHEMA_VERSION}; the server migrates at start)"
    print(f"{settings.db_file}: integrity ok, {summary}")
    return EXIT_OK


@_command
def cmd_restore(args: argparse.Namespace) -> int:
    """restore FILE"""
    settings = _settings(args)
    source = Path(args.file)
    if not source.is_file():
        raise CliError(f"{source} is not a file")
    private_dir(settings.data_dir)
    try:
        lock = DataDirLock(settings.data_dir).acquire()  # no server may run meanwhile
    except DataDirInUse as exc:
        raise CliError(f"{exc}; a restore needs the server stopped") from None
    try:
        with Store(source, readonly=True) as backup:
            problems = backup.integrity_check()
            if problems != ["ok"]:
                raise CliError(f"{source} is damaged ({problems[0]}); not restored")
            if backup.schema_version() > SCHEMA_VERSION:
                raise CliError(f"{source} has schema version {backup.schema_version()}, newer "
                               f"than this chaton's {SCHEMA_VERSION}; not restored")
            summary = _summary(backup)
        kept = _restore_file(source, settings.db_file)
    finally:
        lock.release()
    moved = f"; the previous database is kept as {kept}" if kept else ""
    print(f"restored {settings.db_file} from {source} ({summary}){moved}")
    return EXIT_OK


def _restore_file(source: Path, db_file: Path) -> Path | None:
    """Put a copy of ``source`` in place of ``db_file``; return where the old one went.

    The old database's ``-wal`` and ``-shm`` go with it: a WAL left next to the restored
    file would be replayed into it and corrupt it. No connection of this process holds any
    of these files (the data dir lock keeps the server out), so opening them is safe here.
    """
    partial = db_file.with_name(db_file.name + ".restoring")
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o600)
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    kept: Path | None = None
    if db_file.exists():
        kept = db_file.with_name(f"{db_file.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(db_file, kept)
        for suffix in ("-wal", "-shm"):
            side = db_file.with_name(db_file.name + suffix)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + suffix))
    os.replace(partial, db_file)
    return kept


# --- argparse ------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Options every admin command takes. SUPPRESS keeps a parent parser's values intact."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="directory of chaton.db (default: data, or data_dir from --config)",
    )
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="TOML settings file, as given to 'chaton serve'",
    )
    return common


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input instead of the terminal",
    )


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``account``, ``ban``, ``audit``, ``room``... on ``subparsers``; each leaf sets
    ``func``."""
    common = _common()

    account = subparsers.add_parser(
        "account",
        parents=[common],
        help="manage accounts (offline, on the server database)",
        description="Manage accounts in the server database; safe while the server runs.",
    )
    acc = account.add_subparsers(dest="account_command", metavar="ACTION", required=True)

    p = acc.add_parser("add", parents=[common], help="register an account")
    p.add_argument("name", metavar="NAME", help="account name (a valid nickname)")
    p.add_argument("--admin", action="store_true", help="make it a server admin")
    _password_option(p)
    p.set_defaults(func=cmd_account_add)

    p = acc.add_parser("passwd", parents=[common], help="set an account's password")
    p.add_argument("name", metavar="NAME")
    _password_option(p)
    p.set_defaults(func=cmd_account_passwd)

    p = acc.add_parser(
        "set", parents=[common], help="set an account's password (and role), creating it "
        "with --create: one idempotent call for scripts",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--create", action="store_true", help="create the account if missing")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--admin", dest="role", action="store_const", const="admin",
                      help="make it an admin")
    role.add_argument("--user", dest="role", action="store_const", const="user",
                      help="make it a plain user")
    _password_option(p)
    p.set_defaults(func=cmd_account_set)

    p = acc.add_parser("del", parents=[common], help="delete an account")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_account_del)

    p = acc.add_parser("list", parents=[common], help="list accounts")
    p.set_defaults(func=cmd_account_list)

    p = acc.add_parser("role", parents=[common], help="make an account a user or an admin")
    p.add_argument("name", metavar="NAME")
    p.add_argument("role", choices=ROLES)
    p.set_defaults(func=cmd_account_role)

    ban = subparsers.add_parser(
        "ban",
        parents=[common],
        help="manage bans (offline, on the server database)",
        description="Manage bans; a running server applies changes within about a second.",
    )
    bans = ban.add_subparsers(dest="ban_command", metavar="ACTION", required=True)

    p = bans.add_parser(
        "add", parents=[common], help="ban a nickname, account:NAME, IP address or CIDR network"
    )
    p.add_argument("target", metavar="TARGET", help="nick, account:NAME, 192.0.2.7, 2001:db8::/32")
    p.add_argument(
        "--duration", metavar="D", help="e.g. 30m, 2h, 7d, 1w, 1h30m (default: permanent)"
    )
    p.add_argument("--reason", metavar="TEXT", help="shown to the banned user")
    p.add_argument("--force", action="store_true", help="allow banning loopback addresses")
    p.set_defaults(func=cmd_ban_add)

    p = bans.add_parser("del", parents=[common], help="lift a ban")
    p.add_argument("target", metavar="TARGET")
    p.set_defaults(func=cmd_ban_del)

    p = bans.add_parser("list", parents=[common], help="list the bans in force")
    p.set_defaults(func=cmd_ban_list)

    p = subparsers.add_parser("audit", parents=[common], help="show the audit log of admin actions")
    p.add_argument(
        "--since", metavar="WHEN", help="a duration ago (1h, 7d) or an ISO date (2024-05-01)"
    )
    p.set_defaults(func=cmd_audit)

    p = subparsers.add_parser(
        "backup",
        parents=[common],
        help="copy the database safely, even while the server runs",
        description="Write a consistent copy of the database (SQLite's online backup), "
        "safe while the server runs and writes. To restore: stop the server, copy the "
        "backup back with 'chaton restore FILE', start the server.",
    )
    p.add_argument("file", metavar="FILE", help="where to write the copy (a new file)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser(
        "check",
        parents=[common],
        help="check the database's integrity and schema version",
        description="Run SQLite's integrity_check on the database (read-only, safe while the "
        "server runs) and report its schema version and size. Exit 1 if it is damaged.",
    )
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser(
        "restore",
        parents=[common],
        help="put a backup back in place (the server must be stopped)",
        description="Check FILE, then make it the database. The server must be stopped "
        "(refused otherwise). The replaced database and its -wal/-shm files are kept "
        "next to it as chaton.db.before-restore-TIMESTAMP.",
    )
    p.add_argument("file", metavar="FILE", help="a file written by 'chaton backup'")
    p.set_defaults(func=cmd_restore)

    from chaton.cli_rooms import add_room_subcommands  # it builds on this module's helpers

    add_room_subcommands(subparsers, common)
    from chaton.cli_history import add_history_subcommands

    add_history_subcommands(subparsers, common)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaton",
        description="chaton offline administration: accounts, bans, rooms, history, audit, "
        "backup, check, restore.",
    )
    add_subcommands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m chaton.cli_admin``."""
    args = build_parser().parse_args(argv)
    func: Handler = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
