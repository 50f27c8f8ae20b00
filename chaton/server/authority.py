"""The authority: may this session hold this nickname, use admin powers, stay connected?

Every answer comes from the *current* records: the account row (exists, role, password
generation) and the bans in force. Nothing a login set is trusted later without looking
again, and every change committed by this server or by the CLI reaches the live sessions
through the store's change feed (:meth:`Authority.apply_changes`, run every
``db_poll_interval``).

Invariants:
- A registered account's nickname is held only by a session logged in to that account
  (rfc1459 casefolding, so case does not help an impostor). A guest holding a name that
  becomes an account is renamed to a ``GuestNNNNN`` nick and told why.
- Admin powers are used only while the account they came from exists, is an admin, has
  the password generation seen at login or OPER, and is not banned:
  :meth:`admin_powers` checks the record on every admin command, and the change feed
  withdraws them (``MODE -o`` and a notice) within one poll when any of that changes.
- A ban catches a session by its address, nickname, login account, or the account whose
  powers it took with OPER. A deleted or banned account's sessions are closed with the
  reason; a password reset ends its sessions logged in with the old password.
- The ban cache's ``version`` is the change ``seq`` it has applied; it only moves to a
  ``seq`` whose changes were read, so a commit racing ours cannot be skipped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.names import casefold
from chaton.server.bans import BanList, ban_message
from chaton.store import Account, BanRecord, Store, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["LOGIN_HINT", "Authority", "admin_now"]

log = logging.getLogger("chaton")

LOGIN_HINT = (
    "log in with SASL (chaton connect asks for the password) or send "
    "PASS {nick}:<password> before NICK"
)


def admin_now(server: ChatServer, conn: Session) -> bool:
    """Does ``conn`` have admin powers by the current account record? (No database: no
    admins.) The one question every admin-only path asks."""
    return server.authority is not None and server.authority.admin_powers(conn)


class Authority:
    """Decides from the current records; reacts when they change."""

    def __init__(self, server: ChatServer, store: Store) -> None:
        self.server = server
        self.store = store  # reads on the loop (WAL: never blocked by the writer)
        self.bans = BanList.load(store, time.time())
        self._next_poll = 0.0

    # --- the questions --------------------------------------------------------------------
    def account(self, name: str) -> Account | None:
        """The current record of account ``name``; ``None`` if absent or unreadable."""
        try:
            return self.store.get_account(name)
        except (StoreError, ValueError):
            log.exception("store-error reading account %r", name[:40])
            return None

    def ban_for(self, conn: Session, bans: BanList | None = None) -> BanRecord | None:
        """The ban that catches ``conn``: its address, nick, login account, or the account
        whose admin powers it took with OPER."""
        bans = self.bans if bans is None else bans
        now = time.time()
        found = bans.match(now, ip=conn.ip, nick=conn.nick, account=conn.account)
        if found is None and conn.oper_account is not None:
            found = bans.match_account(conn.oper_account, now)
        return found

    def login_ban(self, account: str) -> BanRecord | None:
        return self.bans.match_account(account, time.time())

    def may_be_admin(self, account: Account) -> bool:
        """May a login to or OPER as ``account`` give admin powers right now?"""
        return account.is_admin and self.login_ban(account.name) is None

    def admin_powers(self, conn: Session) -> bool:
        """Does ``conn`` have admin powers *now*? Checked on every use; withdrawn if not."""
        if not conn.is_admin or conn.oper_account is None:
            return False
        account = self.account(conn.oper_account)
        if (
            account is not None and self.may_be_admin(account)
            and account.password_gen == conn.oper_gen
        ):
            return True
        self._withdraw_admin(conn, casefold(conn.oper_account))
        return False

    def may_use_nick(self, conn: Session, nick: str) -> bool:
        """Refuse a banned or reserved nickname; the refusal is sent from here.

        Only a verified login unlocks a reserved nickname; a PASS claim does not (it is
        checked when registration completes, and refused then if the password is wrong).
        """
        record = self.bans.match_nick(nick, time.time())
        if record is not None:
            self.refuse_banned(conn, record)
            return False
        if conn.account is not None and casefold(conn.account) == casefold(nick):
            return True
        claim = conn.pass_claim
        if (
            claim is not None and not conn.registered
            and casefold(claim.account or nick) == casefold(nick)
        ):
            return True  # verified with the password before the welcome, or refused
        owner = self.account(nick)
        if owner is None:
            return True
        if not conn.registered:
            conn.wanted_nick = nick  # taken up by itself after a login to that account
        hint = LOGIN_HINT.format(nick=owner.name)
        conn.send_msg("FAIL", "NICK", "ACCOUNT_REQUIRED", nick,
                      f"Nickname {nick} is registered; {hint}")
        conn.numeric(num.ERR_NICKNAMEINUSE, nick, f"Nickname is registered; {hint}")
        return False

    # --- refusing -------------------------------------------------------------------------
    def admit(self, conn: Session) -> str | None:
        """An IP or CIDR ban refuses the connection before registration."""
        record = self.bans.match_ip(conn.ip, time.time())
        return ban_message(record, time.time()) if record is not None else None

    def refuse_banned(self, conn: Session, record: BanRecord) -> None:
        text = ban_message(record, time.time())
        conn.numeric(num.ERR_YOUREBANNEDCREEP, text)
        conn.quit(text)

    def enforce(self, record: BanRecord) -> list[Session]:
        """Disconnect everyone ``record`` matches (a new ban applies at once)."""
        one = BanList([record])
        hit = [c for c in self.server.sessions if not c.closing and self.ban_for(c, one)]
        for conn in hit:
            self.refuse_banned(conn, record)
        return hit

    def enforce_all(self) -> None:
        for conn in list(self.server.sessions):
            if conn.closing:
                continue
            record = self.ban_for(conn)
            if record is not None:
                self.refuse_banned(conn, record)

    # --- reacting to changes ------------------------------------------------------------
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

        Each changed ban or account is read once per poll, however often it changed.
        """
        while True:  # in pages of changes_since's limit, until caught up
            changes = self.store.changes_since(self.bans.version)
            if changes.gap:
                self.bans = BanList.load(self.store, time.time())
                log.info("bans reloaded from the database (%d in force)", len(self.bans))
                self.enforce_all()
                names = {n for c in self.server.sessions for n in (c.account, c.oper_account)}
                for name in sorted(casefold(n) for n in names if n is not None):
                    self.account_changed(name)  # what was pruned may have touched them
                if self.server.registry is not None:
                    self.server.registry.reload_all()
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
                    self.account_changed(key)
                elif kind == "room" and self.server.registry is not None:
                    self.server.registry.room_changed(key)
            self.bans.version = changes.latest

    def account_changed(self, key: str) -> None:
        """Re-derive the sessions of account ``key`` (casefolded) from its current record."""
        account = self.store.get_account(key)
        holder = self.server.state.find_nick(key)
        if account is not None and holder is not None and not holder.closing and (
            holder.account is None or casefold(holder.account) != key
        ):
            self._evict_from_nick(holder, account.name)
        for conn in list(self.server.sessions):
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
                self._withdraw_admin(conn, key)

    def _withdraw_admin(self, conn: Session, key: str) -> None:
        conn.is_admin = False
        conn.oper_account = None
        if conn.registered:
            conn.send_msg("MODE", conn.name, "-o", source=conn.name)
            conn.send_msg("NOTICE", conn.name,
                          "*** Your admin powers were withdrawn (the account changed)")
        log.info("admin-revoked ip=%s account=%s", conn.ip, key)

    def _evict_from_nick(self, conn: Session, owner: str) -> None:
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
