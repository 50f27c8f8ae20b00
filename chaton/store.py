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
- Change detection cannot miss a commit: triggers append one row to ``changes`` for every
  INSERT/UPDATE/DELETE of a ban and every account created, deleted, re-roled or given a new
  password, inside the writing transaction, whoever the writer is (server or CLI). SQLite has
  one writer at a time, so ``seq`` grows in commit order: a reader that has applied every row
  up to ``seq`` N and reads ``seq > N`` sees every later commit. Only the newest
  ``CHANGES_KEPT`` rows are kept; a reader further behind than that is told so (``gap``) and
  reloads everything. A snapshot (``load_bans``) and the ``seq`` it is current to are read in
  one read transaction. (``PRAGMA data_version`` was not used: it says *that* something
  changed, on any table, not *what*.)
- One owner of the file per process. POSIX record locks belong to a process, and closing
  *any* descriptor of a file drops all of that process's locks on it; SQLite's own document
  "How To Corrupt An SQLite Database File" (section 2.2, "Posix advisory locks canceled by a
  separate thread doing close()") shows how that lets another process delete a live WAL. So
  this module never calls ``open()``/``close()`` on a database file, its ``-wal`` or its
  ``-shm``: the file is created by SQLite itself and its mode is set by path (``os.chmod``).
  Several ``Store`` connections in one process are fine: SQLite shares one descriptor and its
  locks between them.
- One ``Store`` is one connection, used by one thread at a time (the server: the event loop
  reads, the writer thread writes, each with its own ``Store``); the CLI may open its own
  ``Store`` on the same file concurrently thanks to WAL and ``busy_timeout``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from chaton.protocol.names import casefold

__all__ = [
    "ROLES",
    "SCHEMA_VERSION",
    "Account",
    "AccountExists",
    "AuditEntry",
    "BanRecord",
    "Change",
    "Changes",
    "RoomRecord",
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
    password_gen: int = 0  # bumped by every password reset (see migration 5)

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
class RoomRecord:
    """A registered room as stored: what must survive a restart.

    ``key`` is the room's lookup key (``chaton.protocol.names.room_key``), ``owner`` the
    owning account's casefolded name. ``grants`` maps casefolded account names to standing
    status bits (``room_modes.OP``/``VOICE``); ``lists`` maps ``b``/``e``/``I`` to their
    entries as ``(mask, set_by, set_at)``.
    """

    key: str
    name: str
    owner: str
    registered: float
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    flags: str = "nt"
    secret_key: str | None = None
    user_limit: int | None = None
    grants: dict[str, int] = field(default_factory=dict)
    lists: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log: who did what to whom, when, why and from where."""

    at: float
    actor: str
    action: str
    target: str
    reason: str = ""
    source_ip: str = ""


#: Rows of the change feed kept; a reader more than this many changes behind reloads all.
CHANGES_KEPT = 10000
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"  # UNIX time (unixepoch() is 3.38+)

@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: ``kind`` is ``ban`` (``key`` = "KIND VALUE"), ``account``
    (``key`` = the casefolded account name) or ``room`` (``key`` = the room's key)."""

    seq: int
    kind: str
    key: str


@dataclass(frozen=True, slots=True)
class Changes:
    """What :meth:`Store.changes_since` found: the changes, the newest ``seq``, and whether
    some were pruned before the reader saw them (then it must reload everything)."""

    items: list[Change]
    latest: int
    gap: bool


# Each migration is a sequence of single SQL statements (no executescript: it would COMMIT).
#: The messages table (as of migrations 8 and 9, which differ only in msgid's uniqueness).
_MESSAGES_TABLE = """CREATE TABLE {name} (
    id INTEGER PRIMARY KEY, {msgid}, at REAL NOT NULL, target TEXT NOT NULL,
    recipient TEXT NOT NULL, command TEXT NOT NULL, source TEXT NOT NULL, account TEXT,
    params TEXT NOT NULL, tags TEXT
)"""
#: A message's text in SQL (the first parameter after the target), for the search index.
_TEXT_SQL = "json_extract({}.params, '$[0]')"

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
    # 3 -> 4: the change feed replaces the bans counter (see the module invariants): it says
    # *which* ban or account changed, and a reader can never adopt a version it did not load.
    (
        "DROP TRIGGER bans_version_insert",
        "DROP TRIGGER bans_version_update",
        "DROP TRIGGER bans_version_delete",
        "DROP TABLE meta",
        """CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL
        )""",
        *(
            f"""CREATE TRIGGER {name} AFTER {event} ON {table}
               BEGIN INSERT INTO changes (at, kind, key) VALUES ({_NOW_SQL}, '{kind}', {key});
               END"""
            for name, event, table, kind, key in (
                ("changes_ban_insert", "INSERT", "bans", "ban", "NEW.kind || ' ' || NEW.value"),
                ("changes_ban_update", "UPDATE", "bans", "ban", "NEW.kind || ' ' || NEW.value"),
                ("changes_ban_delete", "DELETE", "bans", "ban", "OLD.kind || ' ' || OLD.value"),
                ("changes_account_insert", "INSERT", "accounts", "account", "NEW.name_key"),
                ("changes_account_delete", "DELETE", "accounts", "account", "OLD.name_key"),
                (
                    "changes_account_update", "UPDATE OF role, password_hash", "accounts",
                    "account", "NEW.name_key",
                ),
            )
        ),
        f"""CREATE TRIGGER changes_prune AFTER INSERT ON changes
           BEGIN DELETE FROM changes WHERE seq <= NEW.seq - {CHANGES_KEPT}; END""",
    ),
    # 4 -> 5: a password generation, bumped by a password *reset* (not by a rehash with new
    # argon2 parameters), so the server can end the sessions logged in with the old one.
    ("ALTER TABLE accounts ADD COLUMN password_gen INTEGER NOT NULL DEFAULT 0",),
    # 5 -> 6: registered rooms, their standing grants and their b/e/I lists; every change to
    # them is in the change feed (kind 'room', key the room's key) like bans and accounts.
    (
        """CREATE TABLE rooms (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            registered REAL NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            topic_by TEXT NOT NULL DEFAULT '',
            topic_at REAL NOT NULL DEFAULT 0,
            flags TEXT NOT NULL DEFAULT 'nt',
            secret_key TEXT,
            user_limit INTEGER
        )""",
        """CREATE TABLE room_grants (
            room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
            account TEXT NOT NULL,
            status INTEGER NOT NULL,
            PRIMARY KEY (room, account)
        )""",
        """CREATE TABLE room_lists (
            room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
            letter TEXT NOT NULL CHECK (letter IN ('b', 'e', 'I')),
            mask TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at REAL NOT NULL,
            PRIMARY KEY (room, letter, mask)
        )""",
        *(
            f"""CREATE TRIGGER {name} AFTER {event} ON {table}
               BEGIN INSERT INTO changes (at, kind, key) VALUES ({_NOW_SQL}, 'room', {key});
               END"""
            for name, event, table, key in (
                ("changes_room_insert", "INSERT", "rooms", "NEW.key"),
                ("changes_room_update", "UPDATE", "rooms", "NEW.key"),
                ("changes_room_delete", "DELETE", "rooms", "OLD.key"),
                ("changes_grant_insert", "INSERT", "room_grants", "NEW.room"),
                ("changes_grant_update", "UPDATE", "room_grants", "NEW.room"),
                ("changes_grant_delete", "DELETE", "room_grants", "OLD.room"),
                ("changes_list_insert", "INSERT", "room_lists", "NEW.room"),
                ("changes_list_delete", "DELETE", "room_lists", "OLD.room"),
            )
        ),
    ),
    # 6 -> 7: things done once per database (the default room registered on first run),
    # remembered so that dropping the default room is not undone by the next start.
    ("CREATE TABLE once (key TEXT PRIMARY KEY, at REAL NOT NULL)",),
    # 7 -> 8: the message store (``chaton.history_store``): room and private messages in
    # commit order, and per party the private conversations it has (for CHATHISTORY TARGETS).
    (
        _MESSAGES_TABLE.format(name="messages", msgid="msgid TEXT NOT NULL UNIQUE"),
        "CREATE INDEX messages_target ON messages (target, at)",
        "CREATE INDEX messages_at ON messages (at)",
        """CREATE TABLE conversations (
            party TEXT NOT NULL,
            target TEXT NOT NULL,
            peer TEXT NOT NULL,
            last_at REAL NOT NULL,
            PRIMARY KEY (party, target)
        )""",
    ),
    # 8 -> 9: what reading history needs. Conversation order (an index on target is one on
    # (target, id)); the words of every PRIVMSG and NOTICE for SEARCH (a contentless FTS5
    # index, filled per batch by HistoryStore.append, the one writer of messages: a
    # trigger costs 3x the insert; emptied by triggers, so a purge or redaction by any
    # writer, the CLI included, takes the words out with the row); per party the read
    # marker of each conversation, when it first joined each room (history_visibility
    # "joined") and when it was last seen (what it missed); and a registered room's own
    # retention.
    # The table is rebuilt to let a msgid repeat across targets: a QUIT or NICK is one
    # event with one msgid, kept in the history of each room it was seen in. It has no
    # index on ``at`` any more: ids grow with time, so a purge finds its boundary by
    # bisecting ids, and every message commit is spared one index insert.
    (
        _MESSAGES_TABLE.format(name="messages_9", msgid="msgid TEXT NOT NULL"),
        "INSERT INTO messages_9 SELECT * FROM messages",
        "DROP TABLE messages",
        "ALTER TABLE messages_9 RENAME TO messages",
        "CREATE UNIQUE INDEX messages_msgid ON messages (msgid, target)",
        "CREATE INDEX messages_target ON messages (target, at)",
        "CREATE INDEX messages_order ON messages (target)",
        "CREATE VIRTUAL TABLE messages_text USING fts5 (text, content = '')",
        f"""INSERT INTO messages_text (rowid, text) SELECT id, {_TEXT_SQL.format("messages")}
           FROM messages WHERE command IN ('PRIVMSG', 'NOTICE')""",
        f"""CREATE TRIGGER messages_text_delete AFTER DELETE ON messages
           WHEN OLD.command IN ('PRIVMSG', 'NOTICE')
           BEGIN INSERT INTO messages_text (messages_text, rowid, text)
                 VALUES ('delete', OLD.id, {_TEXT_SQL.format("OLD")});
           END""",
        f"""CREATE TRIGGER messages_text_update AFTER UPDATE OF params ON messages
           WHEN OLD.command IN ('PRIVMSG', 'NOTICE')
           BEGIN INSERT INTO messages_text (messages_text, rowid, text)
                 VALUES ('delete', OLD.id, {_TEXT_SQL.format("OLD")});
                 INSERT INTO messages_text (rowid, text) SELECT NEW.id, {_TEXT_SQL.format("NEW")}
                 WHERE {_TEXT_SQL.format("NEW")} IS NOT NULL;
           END""",
        """CREATE TABLE read_markers (
            party TEXT NOT NULL,
            target TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (party, target)
        )""",
        """CREATE TABLE room_joins (
            target TEXT NOT NULL,
            party TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (target, party)
        )""",
        "CREATE TABLE seen (party TEXT PRIMARY KEY, at REAL NOT NULL)",
        "ALTER TABLE rooms ADD COLUMN history_retention REAL",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

_ACCOUNT_COLUMNS = "name, role, password_hash, created, last_login, password_gen"
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

    def __init__(self, path: Path, *, create: bool = True, readonly: bool = False) -> None:
        """Open (``create``: or make) the database at ``path``; ``readonly`` for inspection.

        A missing file with ``create=False`` is a :class:`StoreError` naming the path, so a
        mistyped ``--data-dir`` does not silently start an empty database.
        """
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        if not self.path.exists() and (readonly or not create):
            raise StoreError(
                f"no database at {self.path} (start the server once, or check --data-dir)"
            )
        if not readonly:
            _prepare_dir(self.path.parent)
        mode = "ro" if readonly else ("rwc" if create else "rw")
        uri = f"file:{quote(str(self.path.absolute()))}?mode={mode}"
        try:
            db = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        if not readonly:
            _make_private(self.path)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if readonly:
                self._db = db
                self.schema_version()  # "file is not a database" surfaces here
                return
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

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every statement in it sees the same committed snapshot."""
        db = self._conn()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None

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

    def integrity_check(self, *, quick: bool = False) -> list[str]:
        """SQLite's ``integrity_check`` (``quick_check`` with ``quick``): ``["ok"]`` or problems."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            rows = self._conn().execute(f"PRAGMA {pragma}").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [str(row[0]) for row in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table, for ``chaton check`` and backups' reports."""
        db = self._conn()
        return {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("accounts", "bans", "audit")
        }

    def backup(self, dest: Path) -> None:
        """Write a consistent copy of the database to ``dest`` (a new file, mode 0600).

        SQLite's online backup API copies every page inside one read transaction, so the copy
        is a snapshot of one moment even while the server keeps committing. The copy is made
        as ``dest.partial`` and renamed into place only after it is complete and synced, and
        it uses the rollback journal, so it is one self-contained file.
        """
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".partial")
        try:
            partial.unlink(missing_ok=True)
            target = sqlite3.connect(partial, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot create {partial}: {exc}") from None
        try:
            _make_private(partial)
            self._conn().backup(target)
            target.execute("PRAGMA journal_mode = DELETE")
            problems = [r[0] for r in target.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise StoreError(f"the copy failed its check: {'; '.join(problems[:3])}")
        except sqlite3.Error as exc:
            target.close()
            partial.unlink(missing_ok=True)
            raise StoreError(f"backup to {dest} failed: {exc}") from None
        except BaseException:
            target.close()
            partial.unlink(missing_ok=True)
            raise
        target.close()
        try:
            os.replace(partial, dest)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise StoreError(f"cannot move the backup into place at {dest}: {exc}") from None

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
        self,
        name: str,
        password_hash: str,
        *,
        reset: bool = True,
        audit: AuditEntry | None = None,
    ) -> bool:
        """Replace the stored hash; False if there is no such account.

        ``reset`` (a new password) bumps ``password_gen``, which ends the sessions that
        logged in with the old one; ``reset=False`` is a rehash of the same password.
        """
        return self._update_account(
            "UPDATE accounts SET password_hash = ?, password_gen = password_gen + ?"
            " WHERE name_key = ?",
            (password_hash, 1 if reset else 0, casefold(name)),
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

    # --- registered rooms ------------------------------------------------------------------

    def register_room(self, record: RoomRecord, *, audit: AuditEntry | None = None) -> bool:
        """Register ``record`` with its grants and lists; False if its key is taken."""
        with self._write() as db:
            inserted = self._insert_room(db, record)
            if inserted:
                self._audit_row(db, audit)
        return inserted

    def register_owned(
        self, record: RoomRecord, max_owned: int, *, audit: AuditEntry | None = None
    ) -> str:
        """Register ``record`` unless its owner already owns ``max_owned`` rooms (0: no
        limit), counted in the same transaction so parallel requests cannot pass the limit.
        Returns ``"registered"``, ``"taken"`` or ``"limit"``."""
        with self._write() as db:
            if max_owned and db.execute(
                "SELECT count(*) FROM rooms WHERE owner = ?", (record.owner,)
            ).fetchone()[0] >= max_owned:
                return "limit"
            if not self._insert_room(db, record):
                return "taken"
            self._audit_row(db, audit)
        return "registered"

    def _insert_room(self, db: sqlite3.Connection, record: RoomRecord) -> bool:
        inserted = db.execute(
            "INSERT INTO rooms (key, name, owner, registered, topic, topic_by, topic_at,"
            " flags, secret_key, user_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (record.key, record.name, record.owner, record.registered, record.topic,
             record.topic_by, record.topic_at, record.flags, record.secret_key,
             record.user_limit),
        ).rowcount > 0
        if inserted:
            for account, status in record.grants.items():
                self._grant(db, record.key, account, status)
            for letter, entries in record.lists.items():
                for mask, set_by, set_at in entries:
                    self._list_entry(db, record.key, letter, mask, set_by, set_at, True)
        return inserted

    def get_room(self, key: str) -> RoomRecord | None:
        """The registered room with lookup key ``key``, grants and lists included."""
        with self._read() as db:
            return self._load_room(db, key)

    @staticmethod
    def _load_room(db: sqlite3.Connection, key: str) -> RoomRecord | None:
        row = db.execute(
            "SELECT key, name, owner, registered, topic, topic_by, topic_at, flags,"
            " secret_key, user_limit FROM rooms WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        grants = dict(db.execute(
            "SELECT account, status FROM room_grants WHERE room = ? ORDER BY account", (key,)
        ).fetchall())
        lists: dict[str, list[tuple[str, str, float]]] = {}
        for letter, mask, set_by, set_at in db.execute(
            "SELECT letter, mask, set_by, set_at FROM room_lists WHERE room = ?"
            " ORDER BY set_at, mask", (key,)
        ):
            lists.setdefault(letter, []).append((mask, set_by, set_at))
        key_, name, owner, registered, topic, topic_by, topic_at, flags, secret, limit = row
        return RoomRecord(key_, name, owner, registered, topic, topic_by, topic_at, flags,
                          secret, limit, grants=grants, lists=lists)

    def update_room(
        self, key: str, change: Callable[[RoomRecord], RoomRecord],
        *, audit: AuditEntry | None = None,
    ) -> RoomRecord | None:
        """Apply ``change`` to the room's *current* record in one write transaction and
        store what differs; return the record as committed (``None``: not registered).

        Read-modify-write under the write lock, so a change made meanwhile by another
        process (the CLI) is built upon, never overwritten.
        """
        with self._write() as db:
            old = self._load_room(db, key)
            if old is None:
                return None
            new = change(old)
            if new == old:
                return old
            state = ("owner", "topic", "topic_by", "topic_at", "flags", "secret_key",
                     "user_limit")
            if any(getattr(new, f) != getattr(old, f) for f in state):
                db.execute(
                    "UPDATE rooms SET owner = ?, topic = ?, topic_by = ?, topic_at = ?,"
                    " flags = ?, secret_key = ?, user_limit = ? WHERE key = ?",
                    (*(getattr(new, f) for f in state), key),
                )
            for account in old.grants.keys() | new.grants.keys():
                if old.grants.get(account, 0) != new.grants.get(account, 0):
                    self._grant(db, key, account, new.grants.get(account, 0))
            for letter in "beI":
                before = {e[0]: e for e in old.lists.get(letter, [])}
                after = {e[0]: e for e in new.lists.get(letter, [])}
                for mask in before.keys() - after.keys():
                    self._list_entry(db, key, letter, mask, "", 0.0, False)
                for mask in after.keys() - before.keys():
                    _, set_by, set_at = after[mask]
                    self._list_entry(db, key, letter, mask, set_by, set_at, True)
            self._audit_row(db, audit)
            return self._load_room(db, key)

    def register_once(self, once: str, record: RoomRecord) -> bool:
        """Register ``record`` unless the action ``once`` was already done in this database
        (the default room on first run: a later drop stays dropped)."""
        with self._write() as db:
            if db.execute(
                "INSERT INTO once (key, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (once, time.time()),
            ).rowcount == 0:
                return False
            return self._insert_room(db, record)

    def list_rooms(self) -> list[RoomRecord]:
        """Every registered room, by name."""
        keys = [k for (k,) in self._conn().execute("SELECT key FROM rooms ORDER BY name")]
        return [room for room in map(self.get_room, keys) if room is not None]

    def drop_room(self, key: str, *, audit: AuditEntry | None = None) -> bool:
        """Unregister a room (its grants and lists go with it); False if it was not."""
        with self._write() as db:
            dropped = db.execute("DELETE FROM rooms WHERE key = ?", (key,)).rowcount > 0
            if dropped:
                self._audit_row(db, audit)
        return dropped

    def save_room_state(
        self, key: str, *, topic: str, topic_by: str, topic_at: float, flags: str,
        secret_key: str | None, user_limit: int | None,
    ) -> bool:
        """Store a registered room's topic and modes as they are now; False if unregistered."""
        with self._write() as db:
            return db.execute(
                "UPDATE rooms SET topic = ?, topic_by = ?, topic_at = ?, flags = ?,"
                " secret_key = ?, user_limit = ? WHERE key = ?",
                (topic, topic_by, topic_at, flags, secret_key, user_limit, key),
            ).rowcount > 0

    def set_room_grant(self, key: str, account: str, status: int) -> bool:
        """Give ``account`` standing status bits in a registered room (0 takes them away)."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM rooms WHERE key = ?", (key,)).fetchone() is None:
                return False
            self._grant(db, key, account, status)
        return True

    def set_room_list_entry(
        self, key: str, letter: str, mask: str, set_by: str, set_at: float, *, present: bool
    ) -> bool:
        """Add (``present``) or remove one b/e/I entry of a registered room."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM rooms WHERE key = ?", (key,)).fetchone() is None:
                return False
            self._list_entry(db, key, letter, mask, set_by, set_at, present)
        return True

    @staticmethod
    def _grant(db: sqlite3.Connection, key: str, account: str, status: int) -> None:
        if status:
            db.execute(
                "INSERT INTO room_grants (room, account, status) VALUES (?, ?, ?)"
                " ON CONFLICT (room, account) DO UPDATE SET status = excluded.status",
                (key, casefold(account), status),
            )
        else:
            db.execute("DELETE FROM room_grants WHERE room = ? AND account = ?",
                       (key, casefold(account)))

    @staticmethod
    def _list_entry(
        db: sqlite3.Connection, key: str, letter: str, mask: str, set_by: str, set_at: float,
        present: bool,
    ) -> None:
        if present:
            db.execute(
                "INSERT INTO room_lists (room, letter, mask, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, letter, mask, set_by, set_at),
            )
        else:
            db.execute("DELETE FROM room_lists WHERE room = ? AND letter = ? AND mask = ?",
                       (key, letter, mask))

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

    def load_bans(self, now: float) -> tuple[list[BanRecord], int]:
        """The bans in force at ``now`` and the change ``seq`` they are current to, read in one
        transaction: apply :meth:`changes_since` of that ``seq`` and nothing is missed."""
        with self._read() as db:
            latest = self._latest_change(db)
            return self.list_bans(now), latest

    def changes_since(self, seq: int, limit: int = 1000) -> Changes:
        """Changes committed after ``seq`` (at most ``limit``, oldest first).

        One indexed read: cheap enough to poll every second from the event loop.
        """
        with self._read() as db:
            latest = self._latest_change(db)
            if latest <= seq:
                return Changes([], latest, gap=False)
            rows = db.execute(
                "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        items = [Change(*row) for row in rows]
        # Pruned rows (or more than ``limit`` pending) mean the reader must reload everything.
        gap = latest - seq > CHANGES_KEPT or (bool(items) and items[0].seq != seq + 1)
        if gap:
            return Changes([], latest, gap=True)
        return Changes(items, items[-1].seq, gap=False)

    @staticmethod
    def _latest_change(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
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

    def set_room_retention(self, key: str, seconds: float | None,
                           audit: AuditEntry | None = None) -> bool:
        """A registered room's own history retention (``None``: the server's); with its
        audit line in the same commit. False: no such registered room."""
        with self._write() as db:
            done = db.execute("UPDATE rooms SET history_retention = ? WHERE key = ?",
                              (seconds, key)).rowcount > 0
            if done:
                self._audit_row(db, audit)
            return done

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

    def recent_audit(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` audit lines, oldest first."""
        rows = self._conn().execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY at DESC, id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]

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


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the backup is not the live database file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare_dir(directory: Path) -> None:
    """Create the data directory (0700) if it is missing."""
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise StoreError(f"cannot create data directory {directory}: {exc.strerror}") from None


def _make_private(path: Path) -> None:
    """Make the database file 0600, by path (see the invariants: never a descriptor of ours).

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's permissions, so a
    private database file keeps the whole database private.
    """
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot make {path} private: {exc.strerror}") from None
