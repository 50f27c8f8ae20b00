"""Durable facts in SQLite: accounts, bans and the append-only audit log.

Invariants:
- Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction; a method returns only after
  the commit, and ``synchronous=FULL`` makes that commit survive ``kill -9`` and power loss. The
  optional ``audit=`` line of a mutating method is written in the *same* transaction, so an
  action and its audit record exist together or not at all (and only when something changed).
- The schema version is ``PRAGMA user_version``; ``_MIGRATIONS[i]`` moves a database from
  version ``i`` to ``i + 1``. Migrations only ever move forward; a newer file is refused.
- Account rows are keyed by the rfc1459 casefold of the name, so ``Alice`` and ``alice`` are one
  account; the name as first registered is kept for display.
- The audit table is append-only: triggers abort any UPDATE or DELETE on it.
- Password hashes are stored, never passwords; neither appears in a repr, message or log.
- ``meta.bans_version`` is bumped by triggers on every INSERT/UPDATE/DELETE of ``bans``, inside
  the writing transaction, whoever the writer is. A process that caches bans compares
  :meth:`Store.bans_version` with the value it read *before* loading them and reloads when it
  differs. (``PRAGMA data_version`` was not used: it ignores the reading connection's own
  writes and changes on any table, e.g. every login's ``last_login``.)
- One ``Store`` is one connection. The server uses it from the event loop thread only
  (``check_same_thread=False`` merely allows it to be created elsewhere); the CLI may open its
  own ``Store`` on the same file concurrently thanks to WAL and ``busy_timeout``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from chaton.protocol.names import casefold

__all__ = [
    "ROLES",
    "SCHEMA_VERSION",
    "Account",
    "AccountExists",
    "AuditEntry",
    "BanRecord",
    "Store",
    "StoreError",
]

ROLES = ("user", "admin")
BUSY_TIMEOUT_MS = 5000


class StoreError(Exception):
    """The database cannot be used as asked (closed, unreadable, too new...)."""


class AccountExists(StoreError):
    """An account with that (casefolded) name is already registered."""


@dataclass(frozen=True, slots=True)
class Account:
    """A registered account; ``password_hash`` is an argon2 string, kept out of the repr."""

    name: str
    role: str
    password_hash: str = field(repr=False)
    created: float
    last_login: float | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class BanRecord:
    """One ban: ``kind`` is a ``chaton.server.bans.BanKind`` value, ``value`` its canonical target.

    ``expires`` is an absolute UNIX time or ``None`` for a permanent ban; a ban stops applying
    at the instant ``now >= expires``.
    """

    kind: str
    value: str
    reason: str
    actor: str
    created: float
    expires: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log: who did what to whom, when, why and from where."""

    at: float
    actor: str
    action: str
    target: str
    reason: str = ""
    source_ip: str = ""


# Each migration is a sequence of single SQL statements (no executescript: it would COMMIT).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: accounts
    (
        """CREATE TABLE accounts (
            name_key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            created REAL NOT NULL,
            last_login REAL
        )""",
    ),
    # 1 -> 2: bans and the append-only audit log
    (
        """CREATE TABLE bans (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL,
            UNIQUE (kind, value)
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            source_ip TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX audit_at ON audit (at)",
        """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    ),
    # 2 -> 3: a counter that every change to ``bans`` bumps, so a running server can notice
    # bans added or lifted by another process (the offline CLI) with one cheap read.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('bans_version', 0)",
        """CREATE TRIGGER bans_version_insert AFTER INSERT ON bans
           BEGIN UPDATE meta SET value = value + 1 WHERE key = 'bans_version'; END""",
        """CREATE TRIGGER bans_version_update AFTER UPDATE ON bans
           BEGIN UPDATE meta SET value = value + 1 WHERE key = 'bans_version'; END""",
        """CREATE TRIGGER bans_version_delete AFTER DELETE ON bans
           BEGIN UPDATE meta SET value = value + 1 WHERE key = 'bans_version'; END""",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

_ACCOUNT_COLUMNS = "name, role, password_hash, created, last_login"
_BAN_COLUMNS = "kind, value, reason, actor, created, expires"
_AUDIT_COLUMNS = "at, actor, action, target, reason, source_ip"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _key(name: str) -> str:
    if not name:
        raise ValueError("an account name cannot be empty")
    return casefold(name)


class Store:
    """The SQLite database of one chaton server (accounts, bans, audit log)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        _prepare_file(self.path)
        try:
            db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL journal mode (got {mode})")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._db = db
            self._migrate()
        except sqlite3.Error as exc:
            db.close()
            self._db = None
            raise StoreError(f"cannot use database {self.path}: {exc}") from None
        except BaseException:
            db.close()
            self._db = None
            raise

    # --- plumbing --------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is closed")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE) so it never fails half-way on BUSY."""
        db = self._conn()
        if db.in_transaction:
            raise StoreError("nested write transaction")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # Locked past busy_timeout, disk full, read-only file...: one exception type
            # for callers, and nothing was committed.
            raise StoreError(f"cannot write to {self.path}: {exc}") from None

    def _migrate(self) -> None:
        db = self._conn()
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(_too_new(self.path, version))
        if version == SCHEMA_VERSION:
            return
        with self._write():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(_too_new(self.path, version))
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target:d}")

    def schema_version(self) -> int:
        """The ``PRAGMA user_version`` of the open database."""
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent); later calls raise :class:`StoreError`."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _audit_row(db: sqlite3.Connection, entry: AuditEntry | None) -> None:
        if entry is not None:
            db.execute(
                f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.at, entry.actor, entry.action, entry.target,
                    entry.reason, entry.source_ip,
                ),
            )

    # --- accounts --------------------------------------------------------------------------

    def add_account(
        self,
        name: str,
        password_hash: str,
        role: str = "user",
        *,
        created: float | None = None,
        audit: AuditEntry | None = None,
    ) -> Account:
        """Register ``name``; raises :class:`AccountExists` if its casefold is taken."""
        _check_role(role)
        key = _key(name)
        account = Account(
            name=name,
            role=role,
            password_hash=password_hash,
            created=time.time() if created is None else created,
        )
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO accounts (name_key, name, password_hash, role, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, account.name, account.password_hash, account.role, account.created),
                )
            except sqlite3.IntegrityError:
                raise AccountExists(f"account {name!r} already exists") from None
            self._audit_row(db, audit)
        return account

    def get_account(self, name: str) -> Account | None:
        """The account registered under ``name`` (case-insensitively), if any."""
        row = self._conn().execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name_key = ?", (casefold(name),)
        ).fetchone()
        return Account(*row) if row else None

    def list_accounts(self) -> list[Account]:
        """All accounts, ordered by casefolded name."""
        rows = self._conn().execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY name_key"
        ).fetchall()
        return [Account(*row) for row in rows]

    def _update_account(
        self, sql: str, params: tuple[object, ...], audit: AuditEntry | None
    ) -> bool:
        with self._write() as db:
            changed = db.execute(sql, params).rowcount > 0
            if changed:
                self._audit_row(db, audit)
        return changed

    def set_password_hash(
        self, name: str, password_hash: str, *, audit: AuditEntry | None = None
    ) -> bool:
        """Replace the stored hash; False if there is no such account."""
        return self._update_account(
            "UPDATE accounts SET password_hash = ? WHERE name_key = ?",
            (password_hash, casefold(name)),
            audit,
        )

    def set_role(self, name: str, role: str, *, audit: AuditEntry | None = None) -> bool:
        """Make ``name`` a ``user`` or an ``admin``; False if there is no such account."""
        _check_role(role)
        return self._update_account(
            "UPDATE accounts SET role = ? WHERE name_key = ?", (role, casefold(name)), audit
        )

    def touch_login(self, name: str, at: float, *, audit: AuditEntry | None = None) -> bool:
        """Record a successful login at ``at``; False if there is no such account."""
        return self._update_account(
            "UPDATE accounts SET last_login = ? WHERE name_key = ?", (at, casefold(name)), audit
        )

    def delete_account(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        """Remove the account; False if there was none."""
        return self._update_account(
            "DELETE FROM accounts WHERE name_key = ?", (casefold(name),), audit
        )

    # --- bans ------------------------------------------------------------------------------

    def add_ban(self, record: BanRecord, *, audit: AuditEntry | None = None) -> BanRecord:
        """Store ``record``, replacing any earlier ban of the same (kind, value)."""
        kind = str(record.kind)
        with self._write() as db:
            db.execute(
                f"INSERT INTO bans ({_BAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason,"
                " actor = excluded.actor, created = excluded.created,"
                " expires = excluded.expires",
                (kind, record.value, record.reason, record.actor, record.created, record.expires),
            )
            self._audit_row(db, audit)
        return record

    def get_ban(self, kind: str, value: str) -> BanRecord | None:
        """The ban on exactly (kind, value), expired or not."""
        row = self._conn().execute(
            f"SELECT {_BAN_COLUMNS} FROM bans WHERE kind = ? AND value = ?", (str(kind), value)
        ).fetchone()
        return BanRecord(*row) if row else None

    def delete_ban(self, kind: str, value: str, *, audit: AuditEntry | None = None) -> bool:
        """Lift the ban on (kind, value); False if there was none."""
        with self._write() as db:
            changed = (
                db.execute(
                    "DELETE FROM bans WHERE kind = ? AND value = ?", (str(kind), value)
                ).rowcount
                > 0
            )
            if changed:
                self._audit_row(db, audit)
        return changed

    def list_bans(self, now: float | None = None) -> list[BanRecord]:
        """All bans oldest first; with ``now``, only those still in force at that time."""
        sql = f"SELECT {_BAN_COLUMNS} FROM bans"
        params: tuple[float, ...] = ()
        if now is not None:
            sql += " WHERE expires IS NULL OR expires > ?"
            params = (now,)
        rows = self._conn().execute(sql + " ORDER BY created, id", params).fetchall()
        return [BanRecord(*row) for row in rows]

    def bans_version(self) -> int:
        """A counter that changes whenever any connection commits a change to the bans.

        One indexed read, cheap enough to poll every few seconds. Read it *before*
        :meth:`list_bans` so a change racing the load is seen at the next poll.
        """
        row = self._conn().execute(
            "SELECT value FROM meta WHERE key = 'bans_version'"
        ).fetchone()
        return int(row[0]) if row else 0

    def purge_expired(self, now: float, *, audit: AuditEntry | None = None) -> int:
        """Delete the bans that expired at or before ``now``; returns how many."""
        with self._write() as db:
            count = db.execute(
                "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?", (now,)
            ).rowcount
            if count:
                self._audit_row(db, audit)
        return count

    # --- audit log -------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        reason: str = "",
        source_ip: str = "",
        at: float | None = None,
    ) -> AuditEntry:
        """Append one audit line on its own (for actions that change nothing in this database)."""
        entry = AuditEntry(
            at=time.time() if at is None else at,
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            source_ip=source_ip,
        )
        with self._write() as db:
            self._audit_row(db, entry)
        return entry

    def audit_since(self, since: float | None = None) -> list[AuditEntry]:
        """Audit lines at or after ``since`` (all without it), oldest first."""
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit"
        params: Sequence[float] = ()
        if since is not None:
            sql += " WHERE at >= ?"
            params = (since,)
        rows = self._conn().execute(sql + " ORDER BY at, id", params).fetchall()
        return [AuditEntry(*row) for row in rows]


def _too_new(path: Path, version: int) -> str:
    return (
        f"{path} has schema version {version}, but this chaton knows only up to "
        f"{SCHEMA_VERSION}; upgrade chaton (or restore an older backup) to use it"
    )


def _prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and the database file (0600) before SQLite does.

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's permissions, so a
    private database file keeps the whole database private.
    """
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot prepare database file {path}: {exc.strerror}") from None
