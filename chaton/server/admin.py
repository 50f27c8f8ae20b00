"""Admin powers: KILL and UBAN (the syntax of Ergo's UBAN). The table makes them admin-only.

Every action is committed to the audit log (and, for bans, to the bans table, in the same
transaction) before the admin is answered and the admins online are told.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaton.protocol import numerics as num
from chaton.protocol.durations import take_duration
from chaton.protocol.message import Message
from chaton.server.accounts import AccountService, store_failure
from chaton.server.bans import (
    LOOPBACK_REASON,
    BanError,
    BanKind,
    BanList,
    ban_audit,
    check_reason,
    format_duration,
    format_target,
    new_ban,
    parse_duration,
    parse_target,
    touches_loopback,
)
from chaton.store import BanRecord, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = ["kill", "uban"]

FORCE_WORD = "FORCE"


def _service(server: ChatServer) -> AccountService:
    svc = server.accounts
    assert isinstance(svc, AccountService)
    return svc


def _note(server: ChatServer, conn: Session, text: str) -> None:
    conn.send_msg("NOTICE", conn.name, text, source=server.name)


def _fail(conn: Session, code: str, text: str) -> None:
    conn.send_msg("FAIL", "UBAN", code, text)


# KILL <nickname> <comment>
def kill(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    victim = server.state.find_nick(msg.params[0])
    if victim is None:
        conn.numeric(num.ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
        return None
    reason = msg.param(1)[: server.settings.kicklen] or "No reason given"
    return _kill(server, conn, victim, reason)


async def _kill(server: ChatServer, conn: Session, victim: Session, reason: str) -> None:
    if not await _service(server).record_admin_action(conn, "KILL", "kill", victim.name, reason):
        return
    victim.quit(f"Killed by {conn.name}: {reason}")
    _note(server, conn, f"Killed {victim.name}: {reason}")


# AUDIT [<count>]
def audit(server: ChatServer, conn: Session, msg: Message) -> None:
    """The newest audit lines as NOTICEs (what ``chaton audit`` prints on the server), so
    an admin in a client (the web panel) sees who did what without a shell."""
    shown = server.settings.max_list_replies
    wanted = msg.param(0)
    if wanted and not wanted.isdigit():
        conn.send_msg("FAIL", "AUDIT", "INVALID_PARAMS", "AUDIT takes a count of lines")
        return
    count = min(int(wanted), shown) if wanted else min(50, shown)
    try:
        entries = _service(server).store.recent_audit(count)
    except StoreError as exc:
        store_failure(conn, "AUDIT", "the audit log could not be read", exc)
        return
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"Audit: {when} {e.actor} {e.action} {e.target or '-'}"
        _note(server, conn, f"{line}: {e.reason}" if e.reason else line)
    _note(server, conn, f"End of audit log ({len(entries)} shown)")


# UBAN ADD <target> [DURATION <duration>] [FORCE] [REASON...]
# UBAN DEL <target> | UBAN LIST | UBAN INFO <target>
def uban(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    sub = msg.params[0].upper()
    args = list(msg.params[1:])
    if len(args) == 1 and " " in args[0]:  # "UBAN ADD :target DURATION 1h reason" style
        args = args[0].split()
    if sub == "LIST":
        _uban_list(server, conn)
    elif sub not in ("ADD", "DEL", "INFO"):
        _fail(conn, "UNKNOWN_COMMAND", f"No UBAN {sub[:20]}; use ADD, DEL, LIST or INFO")
    elif not args:
        _fail(conn, "NEED_MORE_PARAMS", f"UBAN {sub} needs a target")
    elif sub == "ADD":
        return _uban_add(server, conn, args)
    elif sub == "DEL":
        return _uban_del(server, conn, args[0])
    else:
        _uban_info(server, conn, args[0])
    return None


def _target_or_fail(
    server: ChatServer, conn: Session, target: str
) -> tuple[BanKind, str] | None:
    try:
        return parse_target(target, nicklen=server.settings.nicklen)
    except BanError as exc:
        _fail(conn, "INVALID_TARGET", str(exc))
        return None


def _parse_add(args: list[str]) -> tuple[int | None, bool, str]:
    """DURATION/FORCE options, then the reason: (seconds or None, force, reason)."""
    duration: int | None = None
    force = False
    rest = list(args)
    while rest:
        word = rest[0].upper()
        if word == "DURATION" and len(rest) >= 2:
            text, rest = take_duration(rest[1:])
            duration = parse_duration(text or rest[0])
        elif word == FORCE_WORD:
            force = True
            rest = rest[1:]
        else:
            break
    return duration, force, check_reason(" ".join(rest))


def _needs_force(conn: Session, kind: BanKind, value: str, svc: AccountService) -> str | None:
    """Why this ban needs FORCE (it would hit loopback or the admin's own connection)."""
    if touches_loopback(kind, value):
        return LOOPBACK_REASON
    probe = BanRecord(kind.value, value, "", "", time.time())
    if svc.authority.ban_for(conn, BanList([probe])) is not None:
        return "it would ban your own connection"
    return None


async def _uban_add(server: ChatServer, conn: Session, args: list[str]) -> None:
    svc = _service(server)
    try:
        kind, value = parse_target(args[0], nicklen=server.settings.nicklen)
        duration, force, reason = _parse_add(args[1:])
    except BanError as exc:
        code = "INVALID_DURATION" if "duration" in str(exc) else "INVALID_TARGET"
        _fail(conn, code, str(exc))
        return
    why = _needs_force(conn, kind, value, svc)
    if why and not force:
        _fail(conn, "NEEDS_FORCE", f"Not banned: {why}; repeat with {FORCE_WORD} to insist")
        return
    targets = [(kind, value)]
    skipped_ip = ""
    if kind is BanKind.NICK:  # banning an online nickname also bans the address it uses
        online = server.state.find_nick(value)
        if online is not None:
            ip_kind, ip = parse_target(online.ip)
            ip_why = _needs_force(conn, ip_kind, ip, svc)
            if ip_why and not force:
                skipped_ip = f"; {online.ip} not banned: {ip_why} (add {FORCE_WORD})"
            else:
                targets.append((ip_kind, ip))
    now = time.time()
    actor = conn.oper_account or conn.account or conn.name
    records = []
    try:
        for k, v in targets:
            record = new_ban(k, v, reason=reason, actor=actor, now=now, seconds=duration)
            entry = ban_audit(record, actor=actor, source_ip=conn.ip)
            records.append(await svc.writer.run("add_ban", record, audit=entry))
            svc.authority.bans.add(record)
            svc.announce(entry)
    except StoreError as exc:
        store_failure(conn, "UBAN", "Ban not saved", exc)
        return
    lasting = f"for {format_duration(duration)}" if duration else "permanently"
    names = ", ".join(format_target(BanKind(r.kind), r.value) for r in records)
    dropped = []
    for record in records:
        dropped += [c.name for c in svc.authority.enforce(record)]
    gone = f"; disconnected {', '.join(dropped)}" if dropped else ""
    _note(server, conn, f"Banned {names} {lasting}{gone}{skipped_ip}")


async def _uban_del(server: ChatServer, conn: Session, target: str) -> None:
    svc = _service(server)
    parsed = _target_or_fail(server, conn, target)
    if parsed is None:
        return
    kind, value = parsed
    entry = svc.audit_entry(conn, "ban.del", format_target(kind, value), "")
    try:
        removed = await svc.writer.run("delete_ban", kind.value, value, audit=entry)
    except StoreError as exc:
        store_failure(conn, "UBAN", "Ban not removed", exc)
        return
    if not removed:
        _fail(conn, "NO_SUCH_BAN", f"No ban on {format_target(kind, value)}")
        return
    svc.authority.bans.remove(kind, value)
    svc.announce(entry)
    _note(server, conn, f"Removed the ban on {format_target(kind, value)}")


def _describe(record: BanRecord, now: float) -> str:
    target = format_target(BanKind(record.kind), record.value)
    if record.expires is None:
        left = "permanent"
    else:
        left = f"expires in {format_duration(record.expires - now, parts=2)}"
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.created))
    reason = record.reason or "no reason given"
    return f"{target} - {reason} - by {record.actor} on {made}, {left}"


def _uban_list(server: ChatServer, conn: Session) -> None:
    now = time.time()
    active = _service(server).authority.bans.active(now)
    shown = server.settings.max_list_replies
    for record in active[-shown:]:  # the newest: a long list would overrun the SendQ
        _note(server, conn, f"Ban: {_describe(record, now)}")
    if len(active) > shown:
        _note(server, conn, f"(the {len(active) - shown} older bans are not shown: "
                            "'chaton ban list' on the server lists them all)")
    _note(server, conn, f"End of ban list ({len(active)} in force)")


def _uban_info(server: ChatServer, conn: Session, target: str) -> None:
    svc = _service(server)
    parsed = _target_or_fail(server, conn, target)
    if parsed is None:
        return
    kind, value = parsed
    now = time.time()
    record = svc.authority.bans.get(kind, value)
    if record is None or record.expired(now):
        # Maybe it is an online nickname or address: say which ban would catch it.
        other = server.state.find_nick(target)
        hit = None
        if other is not None:
            hit = svc.authority.ban_for(other)
        if hit is None:
            _fail(conn, "NO_SUCH_BAN", f"No ban on {format_target(kind, value)}")
            return
        record = hit
    _note(server, conn, f"Ban: {_describe(record, now)}")
