"""Logins on the wire (SASL PLAIN, PASS, OPER), the last registration checks, the audit trail.

Invariants:
- argon2 never runs on the event loop: every check goes through the bounded ``HashPool``,
  shared round-robin between address groups; the handler returns the coroutine and the
  connection holds its further input until the answer is in, so a login storm slows only
  the clients logging in.
- A wrong password is answered the same way whether the account exists or not (the unknown
  case still pays for a dummy hash). Attempts are counted before hashing
  (``login_limits``); a login refused by a limit or for load is told so distinctly
  (:class:`LoginRefusal`), never "wrong password".
- What a login may unlock (nicknames, admin powers) is the authority's decision
  (``authority``), made from the current records; this module only proves who is asking.
- Durable changes (bans, audit lines) are committed before anyone is told; the in-memory
  ban list is updated only after the commit, and again from the store's change feed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable
from enum import Enum
from typing import TYPE_CHECKING

from chaton.datadir import DataDirLock
from chaton.passwords import HashPool, HashPoolBusy, Passwords
from chaton.protocol import numerics as num
from chaton.protocol.message import Message
from chaton.protocol.names import casefold
from chaton.server.authority import LOGIN_HINT, Authority
from chaton.server.login_limits import Attempt, LoginLimits, Wait
from chaton.server.notify import tell_peers
from chaton.server.registration_state import PassClaim
from chaton.server.writer import StoreWriter
from chaton.store import Account, AuditEntry, Store, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["AccountService", "LoginRefusal", "authenticate", "oper", "store_failure"]

log = logging.getLogger("chaton")

#: Longest a login waits for earlier in-flight attempts of its address group or account.
LOGIN_WAIT = 30.0
SASL_CHUNK = 400
#: Longest SASL PLAIN payload (base64) we accept: authzid, authcid and password fit easily.
SASL_MAX = 1600


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
        self.authority = Authority(server, store)
        self.limits = LoginLimits(s)
        self._settled: dict[str, asyncio.Event] = {}  # woken when an attempt settles
        self._lock = lock  # one server per data dir, released last

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.writer.close()
        self.store.close()
        if self._lock is not None:
            self._lock.release()

    def finish_registration(self, conn: Session) -> Awaitable[None] | None:
        """The checks between "ready" and the welcome (phase CHECKING): a PASS claim's
        password, ``require_account``, the nickname's owner, bans."""
        claim = conn.take_pass_claim()
        if claim is not None:
            return self._pass_login(conn, claim)
        self._final_checks(conn)
        return None

    async def _pass_login(self, conn: Session, claim: PassClaim) -> None:
        assert conn.nick is not None
        account = await self.check_password(conn, claim.account or conn.nick, claim.password)
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
        self._final_checks(conn)

    def _final_checks(self, conn: Session) -> None:
        from chaton.server.registration import complete

        s = self.server.settings
        assert conn.nick is not None
        if s.require_account and conn.account is None:
            conn.send_msg("NOTICE", conn.name, "*** This server is for team members only: "
                          + LOGIN_HINT.format(nick=conn.nick))
            conn.quit("An account is required on this server")
            return
        if not self.authority.may_use_nick(conn, conn.nick):
            if not conn.closing:
                conn.nick_refused()
            return
        record = self.authority.ban_for(conn)
        if record is not None:
            self.authority.refuse_banned(conn, record)
            return
        if complete(self.server, conn) and conn.is_admin:
            self.server.notice_admins(f"{conn.nick} ({conn.account}) is online as admin")

    # --- password checks -------------------------------------------------------------------
    async def check_password(
        self, conn: Session, name: str, password: str
    ) -> Account | LoginRefusal:
        """The account if ``password`` is right, else why not; limited; never on the loop.

        The attempt is counted before the hash runs (see ``login_limits``), and the hash
        waits in the pool's queue in this client's address group's turn.
        """
        attempt = await self._begin_attempt(conn, name)
        try:  # read after any wait: the record the password is checked against is current
            account = self.store.get_account(name)
        except (StoreError, ValueError):
            account = None
        # People type passwords into the name field ('PASS Tr0ub4dor:horse'): a name is
        # logged only when it is an account's.
        logged_name = account.name if account is not None else "(no such account)"
        counts = self.server.metrics.logins
        if attempt is None:
            counts["throttled"] += 1
            self.server.client_log(conn.group, logging.INFO, "login-throttled ip=%s account=%s",
                                   conn.ip, logged_name)
            return LoginRefusal.THROTTLED
        stored = account.password_hash if account is not None else None
        try:
            ok, rehash = await self.pool.run(
                self.passwords.verify, stored, password, key=attempt.group
            )
        except HashPoolBusy as exc:
            # Not the client's fault: give the attempt back, say so distinctly.
            self.limits.by_group.refund(attempt.group, attempt.at)
            self.limits.by_account.refund(attempt.account, attempt.at)
            counts["busy"] += 1
            self.server.client_log(conn.group, logging.WARNING, "login-busy ip=%s: %s",
                                   conn.ip, exc)
            return LoginRefusal.BUSY
        finally:
            self._settle(attempt)  # whatever happened, even a cancellation
        if not ok or account is None:
            counts["failed"] += 1
            self.server.client_log(conn.group, logging.INFO, "login-failed ip=%s account=%s",
                                   conn.ip, logged_name)
            return LoginRefusal.WRONG
        counts["ok"] += 1
        self.limits.succeeded(attempt, time.monotonic())
        if rehash:
            await self._rehash(account, password)
        self.writer.submit("touch_login", account.name, time.time())
        return account

    async def _begin_attempt(self, conn: Session, name: str) -> Attempt | None:
        """Count the attempt, waiting while the limit is full only with attempts in flight
        (see ``login_limits``); None when it is full with failures, or after a long wait."""
        deadline = time.monotonic() + LOGIN_WAIT
        while True:
            got = self.limits.begin(conn.group, name, time.monotonic())
            if not isinstance(got, Wait):
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or conn.closing:
                return None
            event = self._settled.setdefault(got.key, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _settle(self, attempt: Attempt) -> None:
        for key in self.limits.settle(attempt):
            event = self._settled.pop(key, None)
            if event is not None:
                event.set()

    @staticmethod
    def explain(conn: Session, refusal: LoginRefusal) -> None:
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

    def log_in(self, conn: Session, account: Account) -> bool:
        """Attach ``account`` to ``conn`` unless it is banned (then 465 and ERROR)."""
        record = self.authority.login_ban(account.name)
        if record is not None:
            self.authority.refuse_banned(conn, record)
            return False
        before = conn.source if conn.registered else None
        conn.logged_in(account.name)
        conn.password_gen = account.password_gen
        if before is not None:  # a late SASL login: the account and the host change now
            tell_peers(self.server, conn, "account-notify", "ACCOUNT", [account.name],
                       source=before)
            tell_peers(self.server, conn, "chghost", "CHGHOST", [conn.user or conn.name,
                       conn.host], source=before, include_self=True)
        if self.authority.may_be_admin(account):
            conn.is_admin = True
            conn.oper_account = account.name
            conn.oper_gen = account.password_gen
            if conn.registered:  # a late SASL login: the welcome's MODE +o came before
                conn.send_msg("MODE", conn.name, "+o", source=conn.name)
        log.info("login ip=%s account=%s role=%s", conn.ip, account.name, account.role)
        return True

    # --- audit -----------------------------------------------------------------------------
    def audit_entry(self, conn: Session, action: str, target: str, reason: str) -> AuditEntry:
        return AuditEntry(
            at=time.time(), actor=conn.oper_account or conn.account or conn.name,
            action=action, target=target, reason=reason, source_ip=conn.ip,
        )

    async def record_admin_action(
        self, conn: Session, command: str, action: str, target: str, reason: str
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


def store_failure(conn: Session, command: str, what: str, exc: StoreError) -> None:
    """Tell ``conn`` that ``what`` was not done because the database refused the write."""
    conn.send_msg("FAIL", command, "STORE_ERROR", f"{what}: {exc}")


def _service(server: ChatServer) -> AccountService:
    svc = server.accounts
    assert isinstance(svc, AccountService)
    return svc


# AUTHENTICATE <mechanism> | <base64 chunk> | + | *
def authenticate(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
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
    if sum(map(len, conn.sasl_buffer)) > SASL_MAX:  # each chunk fits, the whole does not
        conn.sasl_buffer = None
        conn.numeric(num.ERR_SASLFAIL, "SASL authentication failed (the message is too long)")
        return None
    if len(arg) == SASL_CHUNK:
        return None  # more chunks follow
    payload = "".join(conn.sasl_buffer)
    conn.sasl_buffer = None
    return _sasl_plain(svc, conn, payload)


async def _sasl_plain(svc: AccountService, conn: Session, payload: str) -> None:
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
    if not conn.registered and not conn.negotiating:
        # Registration stalled on the reserved nickname (CAP END came first): finish it now.
        from chaton.server.registration import progress

        pending = progress(svc.server, conn)
        if pending is not None:
            await pending


# OPER <name> <password>
def oper(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    return _oper(_service(server), conn, msg.params[0], msg.params[1])


async def _oper(svc: AccountService, conn: Session, name: str, password: str) -> None:
    account = await svc.check_password(conn, name, password)
    if conn.closing:
        return
    if isinstance(account, LoginRefusal):
        svc.explain(conn, account)
        conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    banned = svc.authority.login_ban(account.name) is not None
    if not svc.authority.may_be_admin(account):
        # Right password, but no admin powers: the same reply as a wrong one, and counted.
        svc.limits.penalize(conn.group, time.monotonic())
        svc.server.client_log(conn.group, logging.INFO,
                              "oper-refused ip=%s account=%s role=%s banned=%s",
                              conn.ip, account.name, account.role, banned)
        conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    if not await svc.record_admin_action(conn, "OPER", "oper", conn.name, ""):
        return
    current = svc.authority.account(account.name)  # the commit took time: look again
    if conn.closing or current is None or not svc.authority.may_be_admin(current) or (
        current.password_gen != account.password_gen
    ):
        conn.numeric(num.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    conn.is_admin = True
    conn.oper_account = account.name
    conn.oper_gen = account.password_gen
    conn.numeric(num.RPL_YOUREOPER, "You are now an IRC operator")
    conn.send_msg("MODE", conn.name, "+o", source=conn.name)
