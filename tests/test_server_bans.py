"""Ban targets, durations, matching with expiry, and the message a banned user reads."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.server.bans import (
    MAX_BAN_DURATION,
    BanDurationError,
    BanError,
    BanKind,
    BanList,
    BanTargetError,
    ban_message,
    check_reason,
    format_duration,
    format_target,
    parse_duration,
    parse_target,
    touches_loopback,
)
from chaton.store import BanRecord, Store

NOW = 1_700_000_000.0


def ban(kind: BanKind, value: str, expires: float | None = None, reason: str = "r") -> BanRecord:
    return BanRecord(kind.value, value, reason, "cli:test", NOW - 100, expires)


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice", (BanKind.NICK, "alice")),
        ("[Bot]\\", (BanKind.NICK, "{bot}|")),
        ("nick:Carol", (BanKind.NICK, "carol")),
        ("account:Alice", (BanKind.ACCOUNT, "alice")),
        ("ACCOUNT:Bob[1]", (BanKind.ACCOUNT, "bob{1}")),
        ("192.0.2.7", (BanKind.IP, "192.0.2.7")),
        (" 192.0.2.7 ", (BanKind.IP, "192.0.2.7")),
        ("2001:DB8:0:0::1", (BanKind.IP, "2001:db8::1")),
        ("fe80::1%eth0", (BanKind.IP, "fe80::1")),
        ("::ffff:192.0.2.7", (BanKind.IP, "192.0.2.7")),
        ("10.1.2.3/8", (BanKind.CIDR, "10.0.0.0/8")),
        ("2001:db8:ABCD::/32", (BanKind.CIDR, "2001:db8::/32")),
        ("::ffff:10.0.0.0/104", (BanKind.CIDR, "10.0.0.0/8")),
        ("192.0.2.7/32", (BanKind.IP, "192.0.2.7")),
        ("2001:db8::5/128", (BanKind.IP, "2001:db8::5")),
    ],
)
def test_parse_target_kinds(text: str, expected: tuple[BanKind, str]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a b",
        "1nick",
        "-dash",
        "#room",
        "nick!user@host",
        "*@1.2.3.4",
        "account:",
        "account:1bad",
        "nick:",
        "256.1.1.1",
        "1.2.3",
        "10.0.0.0/33",
        "2001:db8::/129",
        "::g",
        "1.2.3.4/abc",
        "é",
        "x" * 100,
    ],
)
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(BanTargetError):
        parse_target(text)


def test_parse_target_respects_nicklen() -> None:
    assert parse_target("abcdef", nicklen=6) == (BanKind.NICK, "abcdef")
    with pytest.raises(BanTargetError):
        parse_target("abcdefg", nicklen=6)


@given(st.text(max_size=80))
def test_parse_target_only_raises_ban_target_error(text: str) -> None:
    try:
        kind, value = parse_target(text)
    except BanTargetError:
        return
    assert parse_target(format_target(kind, value)) == (kind, value)


@given(st.ip_addresses())
def test_any_address_round_trips(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    kind, value = parse_target(str(addr))
    assert kind is BanKind.IP
    assert parse_target(format_target(kind, value)) == (kind, value)


def test_loopback_detection() -> None:
    assert touches_loopback(*parse_target("127.0.0.1"))
    assert touches_loopback(*parse_target("127.5.6.7"))
    assert touches_loopback(*parse_target("::1"))
    assert touches_loopback(*parse_target("::ffff:127.0.0.1"))
    assert touches_loopback(*parse_target("127.0.0.0/8"))
    assert touches_loopback(*parse_target("0.0.0.0/0"))
    assert touches_loopback(*parse_target("::/0"))
    assert not touches_loopback(*parse_target("10.0.0.0/8"))
    assert not touches_loopback(*parse_target("2001:db8::/32"))
    assert not touches_loopback(*parse_target("localhost"))  # a nickname


def test_check_reason() -> None:
    assert check_reason("  spam  ") == "spam"
    for bad in ("a\r\nQUIT", "bell\x07", "x" * 301):
        with pytest.raises(BanError):
            check_reason(bad)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1H30M", 5400),
        ("0h5m", 300),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0s", "0h0m", "-5m", "5", "m", "5x", "1.5h", "h1", "99999w", "1h-30m", "٣h"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(BanDurationError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(5400) == "1h 30m"
    assert format_duration(694861) == "1w 1d 1h 1m 1s"
    assert format_duration(7199.9, parts=2) == "1h 59m"
    assert format_duration(0) == "0s"


@given(st.integers(1, MAX_BAN_DURATION))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.text(max_size=20))
def test_parse_duration_only_raises_duration_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except BanDurationError:
        return
    assert 0 < seconds <= MAX_BAN_DURATION


# --- matching -------------------------------------------------------------------------------


def test_ip_ban_matches_only_that_address() -> None:
    bans = BanList([ban(BanKind.IP, "192.0.2.7")])
    assert bans.match_ip("192.0.2.7", NOW) is not None
    assert bans.match_ip("::ffff:192.0.2.7", NOW) is not None
    assert bans.match_ip("192.0.2.8", NOW) is None
    assert bans.match_ip("192.0.2.70", NOW) is None
    assert bans.match_ip("not an address", NOW) is None


def test_cidr_contains() -> None:
    bans = BanList(
        [
            ban(BanKind.CIDR, "10.0.0.0/8", reason="wide"),
            ban(BanKind.CIDR, "10.1.0.0/16", reason="narrow"),
        ]
    )
    assert bans.match_ip("10.200.3.4", NOW).reason == "wide"  # type: ignore[union-attr]
    assert bans.match_ip("10.1.3.4", NOW).reason == "narrow"  # type: ignore[union-attr]
    assert bans.match_ip("::ffff:10.9.9.9", NOW) is not None
    assert bans.match_ip("11.0.0.1", NOW) is None
    assert bans.match_ip("9.255.255.255", NOW) is None
    assert bans.match_ip("::a00:1", NOW) is None  # the IPv6 address with the same bits


def test_ipv6_cidr_and_exact() -> None:
    bans = BanList([ban(BanKind.CIDR, "2001:db8::/32"), ban(BanKind.IP, "2001:db9::1")])
    assert bans.match_ip("2001:db8:ffff::42", NOW) is not None
    assert bans.match_ip("2001:DB9:0::1", NOW) is not None
    assert bans.match_ip("2001:db9::2", NOW) is None
    assert bans.match_ip("2001:dba::1", NOW) is None
    assert bans.match_ip("32.1.13.184", NOW) is None  # 0x20010db8 as IPv4


def test_nick_and_account_case_insensitive() -> None:
    bans = BanList([ban(BanKind.NICK, "spam{bot}"), ban(BanKind.ACCOUNT, "mallory")])
    assert bans.match_nick("SPAM[BOT]", NOW) is not None
    assert bans.match_nick("spambot", NOW) is None
    assert bans.match_account("Mallory", NOW) is not None
    assert bans.match_account("spam{bot}", NOW) is None  # kinds do not mix
    assert bans.match_nick("mallory", NOW) is None
    assert bans.match(NOW, ip="192.0.2.1", nick="x", account="MALLORY") is not None
    assert bans.match(NOW, ip="192.0.2.1", nick="x", account="bob") is None


def test_expiry_with_injected_now_and_pruning() -> None:
    bans = BanList(
        [
            ban(BanKind.IP, "192.0.2.7", expires=NOW + 60),
            ban(BanKind.CIDR, "198.51.100.0/24", expires=NOW + 60),
            ban(BanKind.NICK, "eve", expires=NOW + 60),
            ban(BanKind.ACCOUNT, "perm"),
        ]
    )
    assert bans.match_ip("192.0.2.7", NOW + 59.9) is not None
    assert bans.match_ip("192.0.2.7", NOW + 60) is None
    assert bans.match_ip("198.51.100.9", NOW + 61) is None
    assert len(bans) == 2  # both dropped when found expired
    assert bans.match_nick("eve", NOW + 30) is not None
    assert [r.value for r in bans.prune(NOW + 1000)] == ["eve"]
    assert bans.match_account("perm", NOW + 10**9) is not None
    assert len(bans) == 1


def test_remove_and_replace() -> None:
    bans = BanList([ban(BanKind.CIDR, "10.0.0.0/8"), ban(BanKind.IP, "192.0.2.1")])
    bans.add(ban(BanKind.CIDR, "10.0.0.0/8", reason="updated"))
    assert len(bans) == 2
    assert bans.get("cidr", "10.0.0.0/8").reason == "updated"  # type: ignore[union-attr]
    assert bans.remove(BanKind.CIDR, "10.0.0.0/8") is not None
    assert bans.remove(BanKind.CIDR, "10.0.0.0/8") is None
    assert bans._cidr[4] == {}  # no empty prefix table left to probe
    assert bans.match_ip("10.1.1.1", NOW) is None
    assert bans.remove("ip", "192.0.2.1") is not None
    assert bans.remove("ip", "garbage") is None
    assert len(bans) == 0


def test_cidr_check_probes_prefix_lengths_not_bans() -> None:
    records = [ban(BanKind.CIDR, f"10.{i // 256}.{i % 256}.0/24") for i in range(5000)]
    bans = BanList(records)
    assert len(bans._cidr[4]) == 1
    assert bans.match_ip("10.19.135.77", NOW) is not None  # i = 19*256 + 135
    assert bans.match_ip("10.200.0.1", NOW) is None


def test_load_from_store_skips_expired_and_tracks_version(tmp_path: Path) -> None:
    with Store(tmp_path / "chaton.db") as store:
        store.add_ban(ban(BanKind.IP, "192.0.2.1"))
        store.add_ban(ban(BanKind.NICK, "gone", expires=NOW - 1))
        store.add_ban(ban(BanKind.CIDR, "2001:db8::/48", expires=NOW + 5))
        bans = BanList.load(store, NOW)
        assert len(bans) == 2
        assert bans.version == store.changes_since(0).latest
        assert bans.match_ip("2001:db8:0:1::1", NOW) is not None
        store.delete_ban("ip", "192.0.2.1")
        assert [c.key for c in store.changes_since(bans.version).items] == ["ip 192.0.2.1"]


# --- the message ----------------------------------------------------------------------------


def test_ban_message() -> None:
    timed = ban(BanKind.IP, "192.0.2.7", expires=NOW + 7199, reason="spamming\r\n#general")
    assert ban_message(timed, NOW) == (
        "You are banned from this server: spamming #general (expires in 1h 59m)"
    )
    assert ban_message(timed, NOW + 7198.5) == (
        "You are banned from this server: spamming #general (expires in 1s)"
    )
    permanent = ban(BanKind.NICK, "eve", reason="")
    assert ban_message(permanent, NOW) == "You are banned from this server (permanent)"
