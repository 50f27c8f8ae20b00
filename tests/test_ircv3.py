"""IRCv3 over real TLS: msgid, account-tag, TAGMSG, tag limits, and the NOTICE rule.

Each capability is checked from both sides: a client that negotiated it and one that did
not (which must see exactly what it saw before).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from conftest import RunningServer, add_account, logged_in

PW = "ircv3 password 1"


def test_messages_carry_a_msgid_shared_by_every_recipient_and_the_echo(
    server: RunningServer,
) -> None:
    alice = server.client().register("alice", caps=("message-tags", "echo-message"))
    bob = server.client().register("bob", caps=("message-tags",))
    plain = server.client("plain")
    for c in (alice, bob, plain):
        c.join("#room")
    alice.send("PRIVMSG #room :hello")
    echo = alice.expect("PRIVMSG", "#room")
    got = bob.expect("PRIVMSG", "#room")
    assert echo.tags["msgid"] and echo.tags["msgid"] == got.tags["msgid"]
    assert plain.expect("PRIVMSG", "#room").tags == {}  # no message-tags: no tags at all
    alice.send("PRIVMSG #room :again")
    assert alice.expect("PRIVMSG", "#room").tags["msgid"] != echo.tags["msgid"]
    alice.send("PRIVMSG bob :private")
    assert bob.expect("PRIVMSG", "bob").tags["msgid"]


def test_account_tag_names_the_sender_s_account(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW)
    seer = server.client().register("seer", caps=("account-tag",))
    blind = server.client("blind")
    guest = server.client("guest")
    for c in (olga, seer, blind, guest):
        c.join("#room")
    olga.send("PRIVMSG #room :from an account")
    assert seer.expect("PRIVMSG", "#room").tags == {"account": "olga"}
    assert blind.expect("PRIVMSG", "#room").tags == {}
    guest.send("PRIVMSG #room :from a guest")
    assert "account" not in seer.expect("PRIVMSG", "#room").tags


def test_tagmsg_reaches_only_clients_with_message_tags(server: RunningServer) -> None:
    alice = server.client().register("alice", caps=("message-tags",))
    bob = server.client().register("bob", caps=("message-tags",))
    plain = server.client("plain")
    for c in (alice, bob, plain):
        c.join("#room")
    alice.send("@+typing=active TAGMSG #room")
    got = bob.expect("TAGMSG", "#room")
    assert got.tags["+typing"] == "active" and got.tags["msgid"]
    assert (got.source or "").startswith("alice!")
    alice.send("@+typing=paused TAGMSG bob")
    assert bob.expect("TAGMSG", "bob").tags["+typing"] == "paused"
    alice.send("PRIVMSG #room :marker")
    assert not [m for m in plain.sync() if m.command == "TAGMSG"]
    plain.send("TAGMSG #room")  # no tags: nothing to deliver, and no error either
    assert not [m for m in plain.sync() if m.command[0] in "45"]
    # A client-only tag never reaches a client without message-tags, even on PRIVMSG.
    alice.send("@+draft/reply=x PRIVMSG #room :tagged")
    assert plain.expect("PRIVMSG", "#room", "tagged").tags == {}


def test_the_client_tag_section_is_at_most_4096_bytes_with_at_and_space(
    server: RunningServer,
) -> None:
    alice = server.client().register("alice", caps=("message-tags",))
    bob = server.client().register("bob", caps=("message-tags",))
    value = "x" * (4096 - len("@+a= "))  # exactly 4096 bytes with '@' and the space
    alice.send(f"@+a={value} PRIVMSG bob :fits")
    assert bob.expect("PRIVMSG", "bob", "fits").tags["+a"] == value
    alice.send(f"@+a={value}y PRIVMSG bob :too long")
    alice.expect("417")
    bob.send("PRIVMSG alice :after")  # bob got nothing from the refused line
    alice.expect("PRIVMSG", "alice", "after")
    assert not [m for m in bob.sync() if m.params[-1:] == ("too long",)]


def test_notice_never_gets_an_automatic_reply(server: RunningServer) -> None:
    bot = server.client("bot")
    bot.send("NOTICE nobody :hi")
    bot.send("NOTICE #nowhere :hi")
    bot.send("NOTICE")
    bot.send("NOTICE bot")
    owner = server.client("owner").join("#shut")
    owner.send("MODE #shut +m")
    owner.expect("MODE")
    bot.send("NOTICE #shut :outside")
    assert not [m for m in bot.sync() if m.command[0] in "45"]
    bot.send("PRIVMSG nobody :hi")  # PRIVMSG still gets its errors
    bot.expect("401")


def test_userhost_in_names_and_multi_prefix_are_acknowledged(server: RunningServer) -> None:
    full = server.client()
    full.send("CAP LS 302")
    full.send("CAP REQ :multi-prefix userhost-in-names")
    full.send("NICK full")
    full.send("USER fu 0 * :Full")
    assert full.expect("CAP", "*", "ACK").params[-1] == "multi-prefix userhost-in-names"
    full.send("CAP END")
    full.expect("001")
    full.nick = "full"
    full.join("#room")
    short = server.client("short").join("#room")
    full.send("NAMES #room")
    listed = set(full.expect("353").params[-1].split())
    assert listed == {"@full!~fu@" + _host(full, "full"), "short!~u@" + _host(full, "short")}
    short.send("NAMES #room")
    assert set(short.expect("353").params[-1].split()) == {"@full", "short"}


def _host(c: object, nick: str) -> str:
    """The host part chaton shows for ``nick`` (asked with WHOIS)."""
    from conftest import IrcClient

    assert isinstance(c, IrcClient)
    c.send(f"WHOIS {nick}")
    host = c.expect("311").params[3]
    c.expect("318")
    return host


def test_user_needs_a_user_name_and_a_real_name(server: RunningServer) -> None:
    c = server.client()
    c.send("NICK someone")
    c.send("USER u 0 * :")
    assert c.expect("461").params[1] == "USER"
    c.send("USER u 0 * :Real Name")
    c.expect("001")


def test_sasl_total_too_long_fails_with_904_and_a_long_chunk_with_905(
    server: RunningServer,
) -> None:
    c = server.client()
    c.send("CAP REQ :sasl")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    c.send("AUTHENTICATE " + "A" * 401)
    c.expect("905")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for _ in range(30):  # 400-byte chunks past the whole exchange's limit
        c.send("AUTHENTICATE " + "A" * 400)
    c.expect("904")


def test_lusers_counts_invisible_users_and_the_peak_of_users(server: RunningServer) -> None:
    a = server.client("a")
    server.client()  # connected, never registered: not a user
    a.send("MODE a +i")
    a.expect("MODE", "a", "+i")
    server.client("b")
    a.send("LUSERS")
    assert a.expect("251").params[-1] == "There are 1 users and 1 invisible on 1 server"
    assert a.expect("265").params[1:3] == ("2", "2")


def test_visible_hosts_are_host_names_and_never_the_address(server: RunningServer) -> None:
    add_account(server.settings, "Ol[ga]", PW)
    olga = logged_in(server, "Ol[ga]", "Ol[ga]", PW)
    guest = server.client("guest")
    olga.send("WHOIS guest")
    assert re.fullmatch(r"guest\.[0-9a-f]{8}\.chaton\.local", olga.expect("311").params[3])
    guest.send("WHOIS Ol[ga]")
    assert guest.expect("311").params[3] == "user.ol-ga-.chaton.local"
    assert not [m for m in guest.sync() if m.command == "338"]  # the address: admins only
    olga.join("#room")
    guest.join("#room")
    olga.send("PRIVMSG #room :hi")
    assert guest.expect("PRIVMSG", "#room").source == "Ol[ga]!~u@user.ol-ga-.chaton.local"


def test_host_settings_are_checked() -> None:
    import pytest

    from chaton.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="account_host must give a host name"):
        Settings().replace(account_host="users/{account}")
    with pytest.raises(ConfigError, match="may use only"):
        Settings().replace(guest_host="{who}.x")
    assert Settings().replace(guest_host="visitor.{server}").guest_host == "visitor.{server}"


def test_extended_join_and_away_notify(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    ext = server.client().register("ext", caps=("extended-join", "away-notify"))
    plain = server.client("plain")
    ext.join("#room")
    plain.join("#room")
    olga = logged_in(server, "olga", "olga", PW)
    olga.send("AWAY :at lunch")
    olga.expect("306")
    olga.send("JOIN #room")
    joined = ext.expect("JOIN", where=lambda m: (m.source or "").startswith("olga!"))
    assert joined.params == ("#room", "olga", "Test olga") or joined.params[:2] == (
        "#room", "olga")
    assert ext.expect("AWAY").params == ("at lunch",)  # away-notify: told on join
    assert plain.expect("JOIN", where=lambda m: (m.source or "").startswith("olga!")
                        ).params == ("#room",)
    olga.send("AWAY")
    assert (ext.expect("AWAY").source or "").startswith("olga!")  # back: no parameter
    guest = server.client("guest")
    guest.send("JOIN #room")
    assert ext.expect("JOIN", where=lambda m: (m.source or "").startswith("guest!")
                      ).params[1] == "*"  # no account
    assert not [m for m in plain.sync() if m.command == "AWAY"]


def test_setname_and_invite_notify(server: RunningServer) -> None:
    alice = server.client().register("alice", caps=("setname", "invite-notify"))
    bob = server.client().register("bob", caps=("setname",))
    plain = server.client("plain")
    for c in (alice, bob, plain):
        c.join("#room")
    bob.send("SETNAME :Bob the Builder")
    assert bob.expect("SETNAME").params == ("Bob the Builder",)  # confirmed to itself
    assert (alice.expect("SETNAME").source or "").startswith("bob!")
    bob.send("WHOIS bob")
    assert bob.expect("311").params[-1] == "Bob the Builder"
    bob.send("SETNAME :" + "x" * 101)
    assert bob.expect("FAIL").params[:2] == ("SETNAME", "INVALID_REALNAME")
    bob.send("INVITE carol #room")  # no such nick
    bob.expect("401")
    carol = server.client("carol")
    bob.send("INVITE carol #room")
    bob.expect("341")
    carol.expect("INVITE", "carol", "#room")
    told = alice.expect("INVITE", "carol", "#room")
    assert (told.source or "").startswith("bob!")
    assert not [m for m in plain.sync() if m.command in ("SETNAME", "INVITE")]


def test_a_late_sasl_login_tells_account_notify_and_chghost(server: RunningServer) -> None:
    import base64

    add_account(server.settings, "olga", PW)
    watcher = server.client().register("watcher", caps=("account-notify", "chghost"))
    watcher.join("#room")
    late = server.client().register("late", caps=("sasl", "chghost"))
    late.join("#room")
    late.send("AUTHENTICATE PLAIN")
    late.expect("AUTHENTICATE", "+")
    late.send("AUTHENTICATE " + base64.b64encode(f"olga\0olga\0{PW}".encode()).decode())
    assert late.expect("CHGHOST").params == ("~u", "user.olga.chaton.local")
    late.expect("903")
    account = watcher.expect("ACCOUNT")
    assert account.params == ("olga",) and (account.source or "").endswith(
        ".chaton.local") and "@guest." in (account.source or "")
    change = watcher.expect("CHGHOST")
    assert change.params == ("~u", "user.olga.chaton.local")


def test_each_guest_address_has_its_own_cloak_stable_across_restarts(
    start_server: Callable[..., RunningServer],
) -> None:
    """A ban on one guest's host (what WeeChat's /ban sends) catches that guest on every
    reconnection and no guest from another address."""
    server = start_server()
    op = server.client("op").join("#room")
    first = server.client("first", bind="127.0.0.2").join("#room")
    other = server.client("other", bind="127.0.0.3").join("#room")
    hosts = {}
    for nick in ("first", "other"):
        op.send(f"WHOIS {nick}")
        hosts[nick] = op.expect("311").params[3]
    assert hosts["first"] != hosts["other"]
    op.send(f"MODE #room +b *!*@{hosts['first']}")
    op.expect("MODE", "#room", "+b")
    first.send("PART #room")
    first.expect("PART")
    first.close()
    again = server.client("again", bind="127.0.0.2")  # another nick and user name
    again.send("JOIN #room")
    again.expect("474")
    other.send("PART #room")
    other.expect("PART")
    other.join("#room")  # another address: not caught
    server.stop()
    restarted = start_server()
    c = restarted.client("c", bind="127.0.0.2")
    c.send("WHOIS c")
    assert c.expect("311").params[3] == hosts["first"]  # the same cloak after a restart


def test_room_events_carry_a_msgid_one_per_event_whatever_the_form(
    server: RunningServer,
) -> None:
    """JOIN, TOPIC, MODE, KICK, NICK, PART and QUIT can be referenced (replies, history):
    each carries one msgid, the same in the extended-join and the plain JOIN."""
    watcher = server.client().register("watcher", caps=("message-tags",))
    extended = server.client().register("extended", caps=("message-tags", "extended-join"))
    plain = server.client("plain")
    for c in (watcher, extended, plain):
        c.join("#ev")
    actor = server.client("actor")
    actor.join("#ev")
    ids = []
    joined = watcher.expect("JOIN", "#ev", where=lambda m: (m.source or "").startswith("actor!"))
    assert extended.expect("JOIN", "#ev", where=lambda m: (m.source or "").startswith(
        "actor!")).tags["msgid"] == joined.tags["msgid"]
    ids.append(joined.tags["msgid"])
    watcher.send("TOPIC #ev :news")  # watcher is the room's first member: an operator
    ids.append(watcher.expect("TOPIC", "#ev").tags["msgid"])
    watcher.send("MODE #ev +v actor")
    ids.append(watcher.expect("MODE", "#ev").tags["msgid"])
    actor.send("NICK actor2")
    ids.append(watcher.expect("NICK").tags["msgid"])
    watcher.send("KICK #ev plain :out")
    ids.append(watcher.expect("KICK", "#ev").tags["msgid"])
    actor.send("PART #ev")
    ids.append(watcher.expect("PART", "#ev").tags["msgid"])
    extended.send("QUIT :bye")
    ids.append(watcher.expect("QUIT").tags["msgid"])
    assert all(ids) and len(set(ids)) == len(ids)
    assert not [m for m in plain.log if m.tags]  # no message-tags: never a tag
