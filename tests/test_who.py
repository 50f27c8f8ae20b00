"""WHO over real TLS: rooms, masks over every field, invisible users, WHOX fields."""

from __future__ import annotations

from conftest import RunningServer, add_account, logged_in

PW = "who password 1"


def guest_host(server: RunningServer) -> str:
    """The host chaton shows for a guest on 127.0.0.1 (its cloak: hosts.cloak)."""
    from chaton.server.hosts import cloak

    return f"guest.{cloak(server.server.cloak_key, '127.0.0.1')}.chaton.local"


def _who(c: object, line: str, reply: str = "352") -> list[tuple[str, ...]]:
    from conftest import IrcClient

    assert isinstance(c, IrcClient)
    c.send(line)
    got = c.sync()
    assert any(m.command == "315" for m in got), got
    return [m.params[1:] for m in got if m.command == reply]


def test_masks_match_nick_user_host_realname_and_server(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW)
    cool = server.client().register("coolnick", user="cooluser")
    asker = server.client("asker")
    assert {r[4] for r in _who(asker, "WHO coolni*")} == {"coolnick"}
    assert {r[4] for r in _who(asker, "WHO COOLNI*")} == {"coolnick"}  # casemapping
    assert {r[4] for r in _who(asker, "WHO *cooluser*")} == {"coolnick"}  # user name
    assert {r[4] for r in _who(asker, "WHO user.*.chaton.local")} == {"olga"}  # host
    assert {r[4] for r in _who(asker, "WHO Test?coolnick")} == {"coolnick"}  # real name
    everyone = {r[4] for r in _who(asker, "WHO *")}
    assert everyone == {"olga", "coolnick", "asker"}
    assert {r[4] for r in _who(asker, "WHO chaton.loc*")} == everyone  # server name
    assert _who(asker, "WHO nobody*") == []
    row = _who(asker, "WHO coolnick")[0]
    assert row == ("*", "~cooluser", guest_host(server), "chaton.local", "coolnick", "H",
                   "0 Test coolnick")
    del olga, cool


def test_invisible_users_only_for_those_who_share_a_room(server: RunningServer) -> None:
    shy = server.client("shy")
    shy.send("MODE shy +i")
    shy.expect("MODE")
    friend = server.client("friend")
    stranger = server.client("stranger")
    assert "shy" not in {r[4] for r in _who(stranger, "WHO *")}
    assert {r[4] for r in _who(stranger, "WHO shy")} == {"shy"}  # the exact nick: as WHOIS
    shy.join("#room")
    friend.join("#room")
    rows = {r[4]: r for r in _who(friend, "WHO *")}
    assert rows["shy"][0] == "#room"  # named with the room they share
    assert "shy" not in {r[4] for r in _who(stranger, "WHO sh*")}


def test_private_rooms_and_operators_only(server: RunningServer) -> None:
    add_account(server.settings, "boss", PW, admin=True)
    boss = logged_in(server, "boss", "boss", PW)
    member = server.client("member").join("#secret")
    member.send("MODE #secret +s")
    member.expect("MODE")
    outsider = server.client("outsider")
    assert _who(outsider, "WHO #secret") == []
    assert [r[4] for r in _who(member, "WHO #secret")] == ["member"]
    assert [r[4] for r in _who(outsider, "WHO * o")] == ["boss"]
    assert _who(outsider, "WHO boss")[0][5] == "H*"  # an admin, in no room: no '@'
    del boss


def test_whox_fields_account_and_token(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW).join("#room")
    guest = server.client("guest").join("#room")
    rows = _who(guest, "WHO #room %tcuhnfar,42", reply="354")
    assert rows == [
        ("42", "#room", "~u", "user.olga.chaton.local", "olga", "H@", "olga", "u"),
        ("42", "#room", "~u", guest_host(server), "guest", "H", "0", "Test guest"),
    ]
    assert _who(guest, "WHO olga %an", reply="354") == [("olga", "olga")]  # WHOX order
    ip_rows = _who(guest, "WHO olga %ni", reply="354")
    assert ip_rows == [("255.255.255.255", "olga")]  # the address: admins and self only
    self_rows = _who(olga, "WHO olga %ni", reply="354")
    assert self_rows == [("127.0.0.1", "olga")]
    bad = _who(guest, "WHO guest %tn,abcd", reply="354")
    assert bad == [("0", "guest")]  # a token must be 1-3 digits; otherwise 0
