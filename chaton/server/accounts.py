"""Accounts on the wire: SASL PLAIN, PASS, OPER, reserved nicknames and ban enforcement.

Invariants:
- argon2 never runs on the event loop: every check goes through the bounded ``HashPool``,
  shared round-robin between address groups; the handler returns the coroutine and the
  connection holds its further input until the answer is in, so a login storm slows only
  the clients logging in.
- A wrong password is answered the same way whether the account exists or not (the unknown
  case still pays for a dummy hash). Attempts are counted before hashing
  (``login_limits``); a login refused by a limit or for load is told so distinctly
  (:class:`LoginRefusal`), never "wrong password".
- A registered account's nickname is usable only by a client logged in to that account
  (rfc1459 casefolding, so case does not help an impostor); an unverified PASS claim never
  unlocks one.
- Durable changes (bans, audit lines) are committed before anyone is told; the in-memory
  ban list is updated only after the commit, and again from the store's change feed, which
  also re-derives live sessions from changed accounts (demoted, deleted, newly created).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING

from chaton.datadir import DataDirLock
from chaton.passwords import HashPool, HashPoolBusy, Passwords
from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold
from chaton.server.bans import BanList, ban_message
from chaton.server.login_limits import LoginLimits
from chaton.server.writer import StoreWriter
from chaton.store import Account, AuditEntry, BanRecord, Store, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.connection import Connection

__all__ = ["AccountService", "LoginRefusal", "authenticate", "oper", "store_failure"]

log = logging.getLogger("chaton")

SASL_CHUNK = 400
#: Longest SASL PLAIN payload (base64) we accept: authzid, authcid and password fit easily.
SASL_MAX = 1600
LOGIN_HINT = (
    "log in with SASL (chaton connect asks for the password) or send "
    "PASS {nick}:<password> before NICK"
)


class LoginRefusal(Enum):
    """Why a login failed; the value is what the client is told (WRONG says no more)."""

    WRONG = "Password incorrect"
    THROTTLED = "Too many failed logins from your address or for this account; try again later"
    BUSY = "Server busy with logins; try again in a moment"


class AccountService:
    """Logins, bans and the audit trail of one running server."""

    def __init__(self, server: ChatServer, store: Store, lock: DataDirLock | None = None) -> None:
        s = server.settings
        self.server = server
        self.store = store  # reads on the loop (WAL: never blocked by the writer)
        self.writer = StoreWriter(store.path)  # every write, off the loop
        self.passwords = Passwords(s)
        self.pool = HashPool(s)
        self.bans = BanList.load(store, time.time())
        self.limits = LoginLimits(s)
        self._next_poll = 0.0
        self._lock = lock  # one server per data dir, released last

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.writer.close()
        self.store.close()
        if self._lock is not None:
            self._lock.release()

    # --- hooks called by the server core ---------------------------------------------------
    def admit(self, conn: Connection) -> str | None:
        """An IP or CIDR ban refuses the connection before registration."""
        record = self.bans.match_ip(conn.ip, time.time())
        return ban_message(record, time.time()) if record is not None else None

    def tick(self, now_monotonic: float) -> None:
        """Apply what was committed since the last look, by the CLI or by this server."""
        if now_monotonic < self._next_poll:
            return
        self._next_poll = now_monotonic + self.server.settings.db_poll_interval
        try:
            self.apply_changes()
        except StoreError as exc:
            log.error("changes-poll-error: %s", exc)

    def apply_changes(self) -> None:
        """Bring the ban cache and the live sessions up to the database's current records.

        The cache's ``version`` is the change ``seq`` it has applied; it only ever moves to a
        ``seq`` whose changes were read, so a commit racing ours cannot be skipped. Each
        changed ban or account is read once per poll, however often it changed.
        """
        while True:  # in pages of changes_since's limit, until caught up
            changes = self.store.changes_since(self.bans.version)
            if changes.gap:
                self.bans = BanList.load(self.store, time.time())
                log.info("bans reloaded from the database (%d in force)", len(self.bans))
                self.enforce_all()
                names = {n for c in self.server.connections for n in (c.account, c.oper_account)}
                for name in sorted(casefold(n) for n in names if n is not None):
                    self._account_changed(name)  # what was pruned may have touched them
                return
            if not changes.items:
                return
            now = time.time()
            changed = dict.fromkeys((c.kind, c.key) for c in changes.items)  # in order, once
            for kind, key in changed:
                if kind == "ban":
                    ban_kind, _, value = key.partition(" ")
                    self._ban_changed(ban_kind, value, now)
                elif kind == "account":
                    self._account_changed(key)
            self.bans.version = changes.latest

    def _account_changed(self, key: str) -> None:
        """Re-derive the sessions of account ``key`` from its current record.

        A deleted account's sessions are closed; a session whose admin powers came from an
        account that is no longer an admin loses them and is told.
        """
        account = self.store.get_account(key)
        holder = self.server.state.find_nick(key)
        if account is not None and holder is not None and not holder.closing and (
            holder.account is None or casefold(holder.account) != key
        ):
            self._evict_from_nick(holder, account.name)
        for conn in list(self.server.connections):
            if conn.closing:
                continue
            logged_in = conn.account is not None and casefold(conn.account) == key
            opered = conn.oper_account is not None and casefold(conn.oper_account) == key
            if account is None and logged_in:
                log.info("account-deleted: closing session ip=%s account=%s", conn.ip, key)
                conn.quit("Your account was deleted")
            elif account is not None and logged_in and conn.password_gen != account.password_gen:
                log.info("password-reset: closing session ip=%s account=%s", conn.ip, key)
                conn.quit("Your password was changed; log in again with the new one")
            elif opered and conn.is_admin and (
                account is None or not account.is_admin or conn.oper_gen != account.password_gen
            ):
                conn.is_admin = False
                conn.oper_account = None
                if conn.registered:
                    conn.send_msg("MODE", conn.name, "-o", source=conn.name)
                    conn.send_msg("NOTICE", conn.name,
                                  "*** Your admin powers were withdrawn (the account changed)")
                log.info("admin-revoked ip=%s account=%s", conn.ip, key)

    def _evict_from_nick(self, conn: Connection, owner: str) -> None:
        """A guest holding a nickname that is now an account's is renamed to a guest nick."""
        from chaton.server.registration import change_nick, guest_nick

        old = conn.name
        change_nick(self.server, conn, guest_nick(self.server))
        conn.send_msg("NOTICE", conn.name, f"*** The nickname {old} now belongs to the "
                      f"account {owner}; you are now {conn.name}. "
                      + LOGIN_HINT.format(nick=owner))
        log.info("nick-reclaimed ip=%s nick=%s account=%s", conn.ip, old, owner)

    def _ban_changed(self, kind: str, value: str, now: float) -> None:
        record = self.store.get_ban(kind, value)
        if record is None or record.expired(now):
            self.bans.remove(kind, value)
            return
        try:
            self.bans.add(record)
        except ValueError:
            log.warning("skipping unreadable ban %s:%r", kind, value)
            return
        self.enforce(record)

    def may_use_nick(self, conn: Connection, nick: str) -> bool:
        """Refuse a banned or reserved nickname; the refusal is sent from here."""
        record = self.bans.match_nick(nick, time.time())
        if record is not None:
            self._refuse_banned(conn, record)
            return False
        if conn.account is not None and casefold(conn.account) == casefold(nick):
            return True
        if conn.pass_login is not None and not conn.registered:
            claimed = conn.pass_login[0] or nick
            if casefold(claimed) == casefold(nick):
                return True  # checked with the password when registration completes
        try:
            owner = self.store.get_account(nick)
        except StoreError:
            log.exception("store-error")
            owner = None
        if owner is None:
            return True
        if not conn.registered:
            conn.wanted_nick = nick  # taken up by itself after a login to that account
        hint = LOGIN_HINT.format(nick=owner.name)
        conn.send_msg("FAIL", "NICK", "ACCOUNT_REQUIRED", nick,
                      f"Nickname {nick} is registered; {hint}")
        conn.numeric(num.ERR_NICKNAMEINUSE, nick, f"Nickname is registered; {hint}")
        return False

    def register(
        self, conn: Connection, welcome: Callable[[], bool]
    ) -> Awaitable[None] | None:
        """Last checks before the welcome burst: PASS login, bans, ``require_account``."""
        if conn.account is not None:
            # SASL logged in: an unverified PASS claim must not unlock any nickname.
            conn.pass_login = None
        elif conn.pass_login is not None:
            return self._pass_login(conn, welcome)
        self._finish_registration(conn, welcome)
        return None

    async def _pass_login(self, conn: Connection, welcome: Callable[[], bool]) -> None:
        assert conn.pass_login is not None and conn.nick is not None
        name, password = conn.pass_login
        conn.pass_login = None
        account = await self.check_password(conn, name or conn.nick, password)
        if conn.closing:
            return
        if isinstance(account, LoginRefusal):
            self.explain(conn, account)
            if account is LoginRefusal.WRONG:
                conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
            conn.quit("Invalid password" if account is LoginRefusal.WRONG else account.value)
            return
        if not self.log_in(conn, account):
            return
        self._finish_registration(conn, welcome)

    def _finish_registration(self, conn: Connection, welcome: Callable[[], bool]) -> None:
        s = self.server.settings
        assert conn.nick is not None
        if s.require_account and conn.account is None:
            conn.send_msg("NOTICE", conn.name, "*** This server is for team members only: "
                          + LOGIN_HINT.format(nick=conn.nick))
            conn.quit("An account is required on this server")
            return
        owner_ok = conn.account is not None and casefold(conn.account) == casefold(conn.nick)
        if not owner_ok and not self.may_use_nick(conn, conn.nick):
            conn.nick = None
            return
        record = self.bans.match(time.time(), nick=conn.nick, account=conn.account)
        if record is not None:
            self._refuse_banned(conn, record)
            return
        if welcome() and conn.is_admin:
            self.server.notice_admins(f"{conn.nick} ({conn.account}) is online as admin")

    # --- password checks -------------------------------------------------------------------
    async def check_password(
        self, conn: Connection, name: str, password: str
    ) -> Account | LoginRefusal:
        """The account if ``password`` is right, else why not; limited; never on the loop.

        The attempt is counted before the hash runs (see ``login_limits``), and the hash
        waits in the pool's queue in this client's address group's turn.
        """
        attempt = self.limits.begin(conn.ip, name, time.monotonic())
        if attempt is None:
            log.info("login-throttled ip=%s account=%s", conn.ip, name[:40])
            return LoginRefusal.THROTTLED
        try:
            account = self.store.get_account(name)
        except (StoreError, ValueError):
            account = None
        stored = account.password_hash if account is not None else None
        try:
            ok, rehash = await self.pool.run(
                self.passwords.verify, stored, password, key=attempt.group
            )
        except HashPoolBusy as exc:
            # Not the client's fault: give the attempt back, say so distinctly.
            self.limits.by_group.refund(attempt.group, attempt.at)
            self.limits.by_account.refund(attempt.account, attempt.at)
            log.warning("login-busy ip=%s: %s", conn.ip, exc)
            return LoginRefusal.BUSY
        if not ok or account is None:
            log.info("login-failed ip=%s account=%s", conn.ip, name[:40])
            return LoginRefusal.WRONG
        self.limits.succeeded(attempt, time.monotonic())
        if rehash:
            await self._rehash(account, password)
        self.writer.submit("touch_login", account.name, time.time())
        return account

    @staticmethod
    def explain(conn: Connection, refusal: LoginRefusal) -> None:
        """Tell ``conn`` why a login that was not a wrong password failed."""
        if refusal is not LoginRefusal.WRONG:
            conn.send_msg("NOTICE", conn.name, f"*** {refusal.value}")

    async def _rehash(self, account: Account, password: str) -> None:
        """Store a hash with the current argon2 parameters (they changed since the last one)."""
        try:
            new_hash = await self.pool.run(self.passwords.hash, password)
            await self.writer.run("set_password_hash", account.name, new_hash, reset=False)
            log.info("rehashed password of account=%s with current parameters", account.name)
        except (HashPoolBusy, StoreError):
            log.warning("rehash postponed for account=%s", account.name)

    def log_in(self, conn: Connection, account: Account) -> bool:
        """Attach ``account`` to ``conn`` unless it is banned (then 465 and ERROR)."""
        record = self.bans.match_account(account.name, time.time())
        if record is not None:
            self._refuse_banned(conn, record)
            return False
        conn.account = account.name
        conn.password_gen = account.password_gen
        if account.is_admin:
            conn.is_admin = True
            conn.oper_account = account.name
            conn.oper_gen = account.password_gen
        log.info("login ip=%s account=%s role=%s", conn.ip, account.name, account.role)
        return True

    # --- bans ------------------------------------------------------------------------------
    def _refuse_banned(self, conn: Connection, record: BanRecord) -> None:
        text = ban_message(record, time.time())
        conn.numeric(num.ERR_YOUREBANNEDCREEP, text)
        conn.quit(text)

    def matches(self, conn: Connection, record: BanRecord) -> bool:
        return self.ban_for(conn, BanList([record]), time.time()) is not None

    @staticmethod
    def ban_for(conn: Connection, bans: BanList, now: float) -> BanRecord | None:
        """The ban in ``bans`` that catches ``conn``: its address, nick, login account, or
        the account whose admin powers it took with OPER."""
        found = bans.match(now, ip=conn.ip, nick=conn.nick, account=conn.account)
        if found is None and conn.oper_account is not None:
            found = bans.match_account(conn.oper_account, now)
        return found

    def enforce(self, record: BanRecord) -> list[Connection]:
        """Disconnect everyone ``record`` matches (a new ban applies at once)."""
        conns = [c for c in self.server.connections if not c.closing]
        hit = [c for c in conns if self.matches(c, record)]
        for conn in hit:
            self._refuse_banned(conn, record)
        return hit

    def enforce_all(self) -> None:
        now = time.time()
        for conn in list(self.server.connections):
            if conn.closing:
                continue
            record = self.ban_for(conn, self.bans, now)
            if record is not None:
                self._refuse_banned(conn, record)

    # --- audit -----------------------------------------------------------------------------
    def audit_entry(self, conn: Connection, action: str, target: str, reason: str) -> AuditEntry:
        return AuditEntry(
            at=time.time(), actor=conn.oper_account or conn.account or conn.name,
            action=action, target=target, reason=reason, source_ip=conn.ip,
        )

    async def record_admin_action(
        self, conn: Connection, command: str, action: str, target: str, reason: str
    ) -> bool:
        """Commit an audit line, then tell the admins online (KICK, KILL, OPER...).

        False when the line cannot be committed (disk full, read-only data dir): the admin
        has been told ``FAIL <command> STORE_ERROR`` and the action must not be carried out.
        """
        entry = self.audit_entry(conn, action, target, reason)
        try:
            await self.writer.run(
                "audit", entry.actor, entry.action, entry.target, entry.reason,
                entry.source_ip, at=entry.at,
            )
        except StoreError as exc:
            log.error("audit-write-failed action=%s: %s", action, exc)
            store_failure(conn, command, f"{command} not done", exc)
            return False
        self.announce(entry)
        return True

    def announce(self, entry: AuditEntry) -> None:
        why = f" ({entry.reason})" if entry.reason else ""
        self.server.notice_admins(f"{entry.actor} {entry.action} {entry.target}{why}")


def store_failure(conn: Connection, command: str, what: str, exc: StoreError) -> None:
    """Tell ``conn`` that ``what`` was not done because the database refused the write."""
    conn.send_msg("FAIL", command, "STORE_ERROR", f"{what}: {exc}")


def _service(server: ChatServer) -> AccountService:
    svc = server.accounts
    assert isinstance(svc, AccountService)
    return svc


# AUTHENTICATE <mechanism> | <base64 chunk> | + | *
def authenticate(server: ChatServer, conn: Connection, msg: Message) -> Awaitable[None] | None:
    svc = _service(server)
    arg = msg.params[0]
    if "sasl" not in conn.caps:
        conn.numeric(num.ERR_SASLFAIL, "SASL authentication failed: request the sasl capability")
        return None
    if conn.account is not None:
        conn.numeric(num.ERR_SASLALREADY, "You have already authenticated using SASL")
        return None
    if arg == "*":
        conn.sasl_buffer = None
        conn.numeric(num.ERR_SASLABORTED, "SASL authentication aborted")
        return None
    if conn.sasl_buffer is None:
        if arg.upper() != "PLAIN":
            conn.numeric(num.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
            conn.numeric(num.ERR_SASLFAIL, "SASL authentication failed")
            return None
        conn.sasl_buffer = []
        conn.send_msg("AUTHENTICATE", "+", source="")
        return None
    if len(arg) > SASL_CHUNK:
        conn.sasl_buffer = None
        conn.numeric(num.ERR_SASLTOOLONG, "SASL message too long")
        return None
    if arg != "+":
        conn.sasl_buffer.append(arg)
    if sum(map(len, conn.sasl_buffer)) > SASL_MAX:
        conn.sasl_buffer = None
        conn.numeric(num.ERR_SASLTOOLONG, "SASL message too long")
        return None
    if len(arg) == SASL_CHUNK:
        return None  # more chunks follow
    payload = "".join(conn.sasl_buffer)
    conn.sasl_buffer = None
    return _sasl_plain(svc, conn, payload)


async def _sasl_plain(svc: AccountService, conn: Connection, payload: str) -> None:
    try:
        authzid, authcid, password = (
            base64.b64decode(payload, validate=True).decode("utf-8").split("\0")
        )
    except (binascii.Error, UnicodeDecodeError, ValueError):
        conn.numeric(num.ERR_SASLFAIL, "SASL authentication failed")
        return
    if authzid and casefold(authzid) != casefold(authcid):
        conn.numeric(num.ERR_SASLFAIL, "SASL authentication failed")
        return
    account = await svc.check_password(conn, authcid, password)
    if conn.closing:
        return
    if isinstance(account, LoginRefusal):
        svc.explain(conn, account)
        why = "" if account is LoginRefusal.WRONG else f": {account.value}"
        conn.numeric(num.ERR_SASLFAIL, f"SASL authentication failed{why}")
        return
    if not svc.log_in(conn, account):
        return
    wanted = conn.wanted_nick
    if (
        not conn.registered and conn.nick is None and wanted is not None
        and casefold(wanted) == casefold(account.name)
        and not svc.server.state.nick_taken(wanted, conn)
    ):
        conn.nick = wanted
    mask = f"{conn.name}!{conn.user or '*'}@{conn.host}"
    conn.numeric(num.RPL_LOGGEDIN, mask, account.name, f"You are now logged in as {account.name}")
    conn.numeric(num.RPL_SASLSUCCESS, "SASL authentication successful")
    if not conn.registered and not conn.cap_negotiating:
        # Registration stalled on the reserved nickname (CAP END came first): finish it now.
        from chaton.server.registration import try_register

        pending = try_register(svc.server, conn)
        if pending is not None:
            await pending


# OPER <name> <password>
def oper(server: ChatServer, conn: Connection, msg: Message) -> Awaitable[None] | None:
    return _oper(_service(server), conn, msg.params[0], msg.params[1])


async def _oper(svc: AccountService, conn: Connection, name: str, password: str) -> None:
    account = await svc.check_password(conn, name, password)
    if conn.closing:
        return
    if isinstance(account, LoginRefusal):
        svc.explain(conn, account)
        conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    banned = svc.bans.match_account(account.name, time.time()) is not None
    if not account.is_admin or banned:
        # Right password, but no admin powers: the same reply as a wrong one, and counted.
        svc.limits.penalize(conn.ip, time.monotonic())
        log.info("oper-refused ip=%s account=%s role=%s banned=%s",
                 conn.ip, account.name, account.role, banned)
        conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    if not await svc.record_admin_action(conn, "OPER", "oper", conn.name, ""):
        return
    conn.is_admin = True
    conn.oper_account = account.name
    conn.oper_gen = account.password_gen
    conn.numeric(num.RPL_YOUREOPER, "You are now an IRC operator")
    conn.send_msg("MODE", conn.name, "+o", source=conn.name)
