"""Ban targets, durations and fast matching, in the style of Ergo's UBAN.

Invariants:
- Every ban has one canonical spelling ``(kind, value)``, produced by :func:`parse_target` and
  stored as such in ``bans`` (``BanRecord.kind`` is a :class:`BanKind` value): nicknames and
  accounts are rfc1459-casefolded; addresses are compressed, without an IPv6 zone, and an
  IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is the IPv4 address; a network is normalized
  with host bits cleared, and a full-length network (``/32``, ``/128``) *is* an IP ban, so
  ``1.2.3.4`` and ``1.2.3.4/32`` name the same ban.
- A record applies while ``now < expires``. :class:`BanList` checks this on every match, so a
  ban lapses at its time without a restart; an expired record found is dropped from the cache.
- Matching costs dict lookups: one each for nick, account and exact IP, and one per distinct
  prefix length among the CIDR bans of that address family, never a scan of all bans.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from chaton.protocol import durations
from chaton.protocol.durations import format_duration
from chaton.protocol.names import casefold, valid_nick
from chaton.store import AuditEntry, BanRecord

if TYPE_CHECKING:
    from chaton.store import Store

__all__ = [
    "LOOPBACK_REASON",
    "MAX_BAN_DURATION",
    "MAX_REASON_LENGTH",
    "BanDurationError",
    "BanError",
    "BanKind",
    "BanList",
    "BanTargetError",
    "ban_audit",
    "ban_message",
    "ban_span",
    "check_reason",
    "format_duration",
    "format_target",
    "new_ban",
    "normalize_ip",
    "parse_duration",
    "parse_target",
    "touches_loopback",
]

log = logging.getLogger(__name__)

MAX_BAN_DURATION = 10 * 365 * 86400
"""Longest timed ban (about ten years); a longer one should simply be permanent."""

MAX_REASON_LENGTH = 300
"""Longest ban reason, so the ban message fits one IRC line with room to spare."""

_NICK_SANITY_LEN = 64  # target nicknames longer than this cannot be real on any sane config
_ACCOUNT_PREFIX = "account:"
_NICK_PREFIX = "nick:"


class BanKind(StrEnum):
    """What a ban applies to; the value is what ``bans.kind`` stores."""

    NICK = "nick"
    ACCOUNT = "account"
    IP = "ip"
    CIDR = "cidr"


class BanError(ValueError):
    """A ban request is malformed; the message says why and is safe to show the admin."""


class BanTargetError(BanError):
    """Text that is not a nickname, ``account:NAME``, IP address or CIDR network."""


class BanDurationError(BanError):
    """Text that is not a positive duration such as ``30m`` or ``1h30m`` within the maximum."""


def _show(text: str, limit: int = 60) -> str:
    """``text`` quoted for an error message: repr'd (no control characters), truncated."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- targets -------------------------------------------------------------------------------

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> _Address:
    """Parse an address, dropping an IPv6 zone and unwrapping IPv4-mapped IPv6."""
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def normalize_ip(text: str) -> str:
    """The canonical spelling of an IP address (raises ``ValueError`` if it is not one)."""
    return _address(text).compressed


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _network(text: str) -> _Network:
    net = ipaddress.ip_network(text, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


def parse_target(text: str, *, nicklen: int = _NICK_SANITY_LEN) -> tuple[BanKind, str]:
    """Read a ban target: ``account:NAME``, an IP address, a CIDR network or a nickname.

    Returns the canonical ``(kind, value)`` (see the module invariants). ``nick:NAME`` forces
    a nickname. Raises :class:`BanTargetError` (only) for anything else.
    """
    raw = text.strip()
    if not raw:
        raise BanTargetError("empty ban target")
    lowered = raw[: len(_ACCOUNT_PREFIX)].lower()
    if lowered == _ACCOUNT_PREFIX:
        name = raw[len(_ACCOUNT_PREFIX) :]
        if not valid_nick(name, nicklen):
            raise BanTargetError(f"{_show(name)} is not a valid account name")
        return BanKind.ACCOUNT, casefold(name)
    if lowered.startswith(_NICK_PREFIX):
        name = raw[len(_NICK_PREFIX) :]
        if not valid_nick(name, nicklen):
            raise BanTargetError(f"{_show(name)} is not a valid nickname")
        return BanKind.NICK, casefold(name)
    if "/" in raw:
        try:
            net = _network(raw)
        except ValueError:
            raise BanTargetError(f"{_show(raw)} is not a valid CIDR network") from None
        if net.prefixlen == net.max_prefixlen:
            return BanKind.IP, net.network_address.compressed
        return BanKind.CIDR, net.compressed
    if ":" in raw or raw[:1].isdigit():
        try:
            return BanKind.IP, normalize_ip(raw)
        except ValueError:
            raise BanTargetError(f"{_show(raw)} is not a valid IP address") from None
    if valid_nick(raw, nicklen):
        return BanKind.NICK, casefold(raw)
    raise BanTargetError(
        f"{_show(raw)} is not a nickname, account:NAME, IP address or CIDR network"
    )


def format_target(kind: BanKind | str, value: str) -> str:
    """The text an admin would type for this ban; :func:`parse_target` reads it back."""
    kind = BanKind(kind)
    if kind is BanKind.ACCOUNT:
        return _ACCOUNT_PREFIX + value
    return value


_LOOPBACK_NETS = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))


def touches_loopback(kind: BanKind | str, value: str) -> bool:
    """True if an IP or CIDR ban would cover a loopback address (local admins, tests, bots)."""
    kind = BanKind(kind)
    if kind is BanKind.IP:
        return _address(value).is_loopback
    if kind is BanKind.CIDR:
        net = _network(value)
        return any(net.version == lo.version and net.overlaps(lo) for lo in _LOOPBACK_NETS)
    return False


def check_reason(text: str) -> str:
    """``text`` stripped, if it is fit to be a ban reason; else :class:`BanError`.

    Control characters (CR, LF, NUL, escapes...) are refused: the reason is echoed to IRC
    clients and terminals.
    """
    reason = text.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise BanError(f"ban reason longer than {MAX_REASON_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in reason):
        raise BanError("ban reason must not contain control characters")
    return reason


# --- durations -----------------------------------------------------------------------------



def parse_duration(text: str) -> int:
    """Seconds of a ban duration (``chaton.protocol.durations`` grammar), at most
    :data:`MAX_BAN_DURATION`; :class:`BanDurationError` otherwise."""
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError as exc:
        raise BanDurationError(str(exc)) from None
    if seconds > MAX_BAN_DURATION:
        raise BanDurationError(
            f"duration longer than {format_duration(MAX_BAN_DURATION)}; "
            "leave it out for a permanent ban"
        )
    return seconds


LOOPBACK_REASON = "it covers loopback addresses (local admins, bots, this machine)"


def new_ban(
    kind: BanKind, value: str, *, reason: str, actor: str, now: float, seconds: int | None
) -> BanRecord:
    """The record of a ban made now, by UBAN or by the CLI alike (``reason`` checked)."""
    return BanRecord(kind.value, value, check_reason(reason), actor, now,
                     None if seconds is None else now + seconds)


def ban_span(record: BanRecord) -> str:
    """``permanent`` or ``for 2h``: how long a ban was made for."""
    if record.expires is None:
        return "permanent"
    return f"for {format_duration(record.expires - record.created)}"


def ban_audit(record: BanRecord, *, actor: str, source_ip: str = "") -> AuditEntry:
    """The one audit line of a new ban, whoever makes it: target, reason and span."""
    span = ban_span(record)
    return AuditEntry(
        at=record.created, actor=actor, action="ban.add",
        target=format_target(record.kind, record.value),
        reason=f"{record.reason} ({span})" if record.reason else f"({span})",
        source_ip=source_ip,
    )


def ban_message(record: BanRecord, now: float) -> str:
    """What a banned client is told (in ``ERROR`` or a 465): the reason and time left."""
    reason = " ".join(record.reason.split())  # no CR/LF can leak into an IRC line
    head = "You are banned from this server"
    head = f"{head}: {reason}" if reason else head
    if record.expires is None:
        return f"{head} (permanent)"
    left = max(1, math.ceil(record.expires - now))
    return f"{head} (expires in {format_duration(left, parts=2)})"


# --- the in-memory list --------------------------------------------------------------------


class BanList:
    """The bans in force, indexed for matching; the server's cache of the ``bans`` table.

    ``version`` is the ``seq`` of the store's change feed that the list is current to: the
    server applies :meth:`Store.changes_since` of it (see ``chaton.store``).
    """

    __slots__ = ("_account", "_cidr", "_ip", "_nick", "version")

    def __init__(self, records: Iterable[BanRecord] = (), *, version: int = 0) -> None:
        self._nick: dict[str, BanRecord] = {}
        self._account: dict[str, BanRecord] = {}
        self._ip: dict[str, BanRecord] = {}
        # ip version -> prefix length -> network bits (int, shifted right) -> record
        self._cidr: dict[int, dict[int, dict[int, BanRecord]]] = {4: {}, 6: {}}
        self.version = version
        for record in records:
            self.add(record)

    @classmethod
    def load(cls, store: Store, now: float) -> BanList:
        """The bans in ``store`` still in force at ``now``; rows that do not parse are skipped."""
        records, version = store.load_bans(now)
        bans = cls(version=version)
        for record in records:
            try:
                bans.add(record)
            except ValueError:
                log.warning("skipping unreadable ban %s:%r", record.kind, record.value)
        return bans

    def add(self, record: BanRecord) -> None:
        """Index ``record``, replacing any ban on the same target. ``ValueError`` if malformed."""
        kind = BanKind(record.kind)
        if kind is BanKind.NICK:
            self._nick[casefold(record.value)] = record
        elif kind is BanKind.ACCOUNT:
            self._account[casefold(record.value)] = record
        elif kind is BanKind.IP:
            self._ip[normalize_ip(record.value)] = record
        else:
            net = _network(record.value)
            by_len = self._cidr[net.version].setdefault(net.prefixlen, {})
            by_len[int(net.network_address) >> (net.max_prefixlen - net.prefixlen)] = record

    def _slot(self, kind: BanKind | str, value: str) -> tuple[dict[Any, BanRecord], Any] | None:
        """The dict and key where a ban on ``(kind, value)`` lives, or None if none can."""
        try:
            kind = BanKind(kind)
            if kind is BanKind.NICK:
                return self._nick, casefold(value)
            if kind is BanKind.ACCOUNT:
                return self._account, casefold(value)
            if kind is BanKind.IP:
                return self._ip, normalize_ip(value)
            net = _network(value)
        except ValueError:
            return None
        by_len = self._cidr[net.version].get(net.prefixlen)
        if by_len is None:
            return None
        return by_len, int(net.network_address) >> (net.max_prefixlen - net.prefixlen)

    def remove(self, kind: BanKind | str, value: str) -> BanRecord | None:
        """Forget the ban on ``(kind, value)``; returns it, or None if there was none."""
        slot = self._slot(kind, value)
        if slot is None:
            return None
        table, key = slot
        record = table.pop(key, None)
        if not table and BanKind(kind) is BanKind.CIDR:
            # Keep only prefix lengths that hold bans: matching probes each one.
            net = _network(value)
            del self._cidr[net.version][net.prefixlen]
        return record

    def get(self, kind: BanKind | str, value: str) -> BanRecord | None:
        """The cached ban on ``(kind, value)``, expired or not (for UBAN INFO)."""
        slot = self._slot(kind, value)
        return None if slot is None else slot[0].get(slot[1])

    def _live(self, record: BanRecord | None, now: float) -> BanRecord | None:
        if record is None:
            return None
        if record.expired(now):
            self.remove(record.kind, record.value)
            return None
        return record

    def match_nick(self, nick: str, now: float) -> BanRecord | None:
        """The ban in force on nickname ``nick`` (any case), if any."""
        return self._live(self._nick.get(casefold(nick)), now)

    def match_account(self, name: str, now: float) -> BanRecord | None:
        """The ban in force on account ``name`` (any case), if any."""
        return self._live(self._account.get(casefold(name)), now)

    def match_ip(self, ip: str, now: float) -> BanRecord | None:
        """The ban in force on address ``ip``: an exact IP ban, else the narrowest CIDR.

        An IPv4-mapped IPv6 address is matched as its IPv4 address. Text that is not an
        address matches nothing.
        """
        try:
            addr = _address(ip)
        except ValueError:
            return None
        found = self._live(self._ip.get(addr.compressed), now)
        if found is not None:
            return found
        table = self._cidr[addr.version]
        if not table:
            return None
        bits = int(addr)
        width = addr.max_prefixlen
        for prefixlen in sorted(table, reverse=True):
            found = self._live(table[prefixlen].get(bits >> (width - prefixlen)), now)
            if found is not None:
                return found
        return None

    def match(
        self,
        now: float,
        *,
        ip: str | None = None,
        nick: str | None = None,
        account: str | None = None,
    ) -> BanRecord | None:
        """The first ban in force on any of the given targets (checked IP, account, nick)."""
        if ip is not None and (found := self.match_ip(ip, now)) is not None:
            return found
        if account is not None and (found := self.match_account(account, now)) is not None:
            return found
        if nick is not None:
            return self.match_nick(nick, now)
        return None

    def prune(self, now: float) -> list[BanRecord]:
        """Drop every record expired at ``now``; returns them (for an audit or log line)."""
        gone = [record for record in self if record.expired(now)]
        for record in gone:
            self.remove(record.kind, record.value)
        return gone

    def active(self, now: float) -> list[BanRecord]:
        """The bans in force at ``now``, oldest first (for UBAN LIST)."""
        return sorted(
            (r for r in self if not r.expired(now)), key=lambda r: (r.created, r.kind, r.value)
        )

    def __iter__(self) -> Iterator[BanRecord]:
        yield from list(self._nick.values())
        yield from list(self._account.values())
        yield from list(self._ip.values())
        for table in self._cidr.values():
            for by_len in list(table.values()):
                yield from list(by_len.values())

    def __len__(self) -> int:
        return (
            len(self._nick)
            + len(self._account)
            + len(self._ip)
            + sum(len(b) for t in self._cidr.values() for b in t.values())
        )

    def __repr__(self) -> str:
        return f"<BanList {len(self)} bans, version {self.version}>"
