"""Two or more real clients over TLS: registration, rooms, private messages, errors."""

from __future__ import annotations

import re

from conftest import IrcClient, RunningServer


def test_welcome_burst_has_isupport_and_motd(server: RunningServer) -> None:
    c = server.client()
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice Example")
    welcome = c.expect("001", "alice")
    assert "alice" in welcome.params[-1]
    for code in ("002", "003", "004"):
        c.expect(code, "alice")
    isupport = c.expect("005", "alice")
    tokens = isupport.params[1:-1]
    assert "CASEMAPPING=rfc1459" in tokens
    assert "CHANTYPES=#" in tokens
    assert f"NICKLEN={server.settings.nicklen}" in tokens
    assert "NETWORK=chaton" in tokens
    c.expect("251")
    c.expect("375")
    c.expect("372")
    c.expect("376")


def test_two_clients_talk_in_a_room(server: RunningServer) -> None:
    alice = server.client("alice").join("#team")
    bob = server.client("bob")
    bob.send("JOIN #team")
    joined = alice.expect("JOIN", "#team")
    assert joined.source is not None and joined.source.startswith("bob!")
    names = bob.expect("353")
    assert set(names.params[-1].split()) == {"@alice", "bob"}  # the first in is operator
    bob.expect("366")
    alice.send("PRIVMSG #team :hello bob")
    got = bob.expect("PRIVMSG", "#team")
    assert got.params[1] == "hello bob"
    assert got.source is not None and got.source.startswith("alice!")
    bob.send("NOTICE #team :hi alice")
    assert alice.expect("NOTICE", "#team").params[1] == "hi alice"
    # The sender does not get its own message back without echo-message.
    assert not [m for m in alice.sync() if m.command == "PRIVMSG"]


def test_private_message_reaches_only_its_target(server: RunningServer) -> None:
    alice = server.client("alice").join("#general")
    bob = server.client("bob").join("#general")
    carol = server.client("carol").join("#general")
    alice.sync()
    bob.sync()
    alice.send("PRIVMSG Bob :just for you")  # nicknames are case-insensitive
    got = bob.expect("PRIVMSG", "bob")
    assert got.params[1] == "just for you"
    alice.sync()
    assert not [m for m in carol.sync() if m.command == "PRIVMSG"]
    assert not [m for m in alice.sync() if m.command == "PRIVMSG"]


def test_nick_taken_in_any_case(server: RunningServer) -> None:
    server.client("Alice")
    c = server.client()
    c.send("NICK aLICE")
    c.send("USER x 0 * :x")
    assert c.expect("433").params[1] == "aLICE"
    c.send("NICK alice2")
    c.expect("001", "alice2")


def test_rfc1459_casemapping_makes_brackets_equal(server: RunningServer) -> None:
    server.client("nick[a]")
    c = server.client()
    c.send("NICK NICK{A}")
    c.expect("433")


def test_commands_before_registration_get_451(server: RunningServer) -> None:
    c = server.client()
    c.send("JOIN #general")
    c.expect("451")
    c.send("PRIVMSG #general :hi")
    c.expect("451")
    c.send("NICK early")
    c.send("USER e 0 * :e")
    c.expect("001")


def test_ping_pong_both_ways(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(ping_interval=0.3, ping_timeout=5.0)
    c = server.client("pinger")
    c.send("PING :are-you-there")
    pong = c.expect("PONG")
    assert pong.params[-1] == "are-you-there"
    ping = c.expect("PING", timeout=5)
    c.send(f"PONG :{ping.params[-1]}")
    c.send("PING :still")
    c.expect("PONG", where=lambda m: m.params[-1] == "still")


def test_quit_and_nick_change_are_announced(server: RunningServer) -> None:
    alice = server.client("alice").join("#general")
    bob = server.client("bob").join("#general")
    alice.expect("JOIN", "#general", where=lambda m: (m.source or "").startswith("bob!"))
    bob.send("NICK robert")
    change = alice.expect("NICK")
    assert change.source is not None and change.source.startswith("bob!")
    assert change.params[0] == "robert"
    assert bob.expect("NICK").params[0] == "robert"
    bob.send("QUIT :see you")
    quit_ = alice.expect("QUIT")
    assert quit_.source is not None and quit_.source.startswith("robert!")
    assert "see you" in quit_.params[0]
    error = bob.expect("ERROR")
    assert "see you" in error.params[0]
    bob.wait_closed()
    # The nickname is free again.
    server.client("robert")


def test_errors_use_standard_numerics(server: RunningServer) -> None:
    c = server.client("alice")
    c.send("PRIVMSG nobody :hi")
    assert c.expect("401").params[1] == "nobody"
    c.send("PRIVMSG #nowhere :hi")
    assert c.expect("403").params[1] == "#nowhere"
    server.client("bob").join("#bobs")
    c.send("PRIVMSG #bobs :let me in")
    c.expect("404")
    c.send("PRIVMSG")
    c.expect("411")
    c.send("PRIVMSG bob")
    c.expect("412")
    c.send("FROBNICATE now")
    assert c.expect("421").params[1] == "FROBNICATE"
    c.send("NICK")
    c.expect("431")
    c.send("NICK 9lives")
    c.expect("432")
    c.send("NICK bob")
    c.expect("433")
    c.send("PART #nowhere")
    c.expect("403")
    c.send("PART #general")  # registered: it exists, empty
    c.expect("442")
    c.send("JOIN #mine")
    c.expect("366")
    c.send("TOPIC #bobs :mine now")
    c.expect("442")
    c.send("JOIN")
    c.expect("461")
    c.send("USER again 0 * :again")
    c.expect("462")
    c.send("KICK #mine bob")
    c.expect("441")  # c made #mine, so c is its operator; bob is not in it


def test_non_ascii_nick_is_refused(server: RunningServer) -> None:
    c = server.client()
    c.send("NICK аlice")  # Cyrillic a: a look-alike
    c.expect("432")


def test_nick_length_limit(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(nicklen=9)
    c = server.client()
    c.send("NICK abcdefghij")
    c.expect("432")
    c.send("NICK abcdefghi")
    c.send("USER u 0 * :u")
    c.expect("001", "abcdefghi")


def test_join_part_names_topic_list(server: RunningServer) -> None:
    alice = server.client("alice").join("#team")
    bob = server.client("bob").join("#team")
    alice.send("TOPIC #team :ship it")
    topic = bob.expect("TOPIC", "#team")
    assert topic.params[1] == "ship it"
    carol = server.client("carol")
    carol.send("JOIN #team")
    assert carol.expect("332", "carol", "#team").params[-1] == "ship it"
    carol.expect("333")
    carol.expect("366")
    carol.send("TOPIC #team")
    carol.expect("332")
    carol.send("LIST")
    entry = carol.expect("322", "carol", "#team")
    assert entry.params[2] == "3" and entry.params[3] == "ship it"
    carol.expect("323")
    bob.send("PART #team :bye")
    part = alice.expect("PART", "#team")
    assert part.params[1] == "bye"
    carol.send("NAMES #team")
    names = carol.expect("353")
    assert set(names.params[-1].split()) == {"@alice", "carol"}


def test_mode_queries_standard_clients_send_on_join(server: RunningServer) -> None:
    alice = server.client("alice").join("#fresh")
    alice.send("MODE #fresh")
    assert alice.expect("324", "alice", "#fresh").params[2] == "+nt"
    alice.expect("329", "alice", "#fresh")
    alice.send("MODE #fresh b")
    alice.expect("368", "alice", "#fresh")
    alice.send("MODE alice")
    alice.expect("221")
    alice.send("MODE alice +i")
    assert alice.expect("MODE", "alice").params[1] == "+i"
    bob = server.client("bob").join("#fresh")
    bob.send("MODE #fresh +m")
    bob.expect("482")  # not an operator
    alice.send("WHO #fresh")
    who = alice.expect("352", "alice", "#fresh")
    assert who.params[5] == "alice" and who.params[6] == "H@"
    alice.expect("315")
    unexpected = [m for m in alice.sync() if m.command.startswith(("4", "5"))]
    assert not unexpected


def test_whois_away_lusers(server: RunningServer) -> None:
    alice = server.client("alice").join("#general")
    bob = server.client("bob")
    bob.send("AWAY :lunch")
    bob.expect("306")
    alice.send("PRIVMSG bob :you there?")
    assert alice.expect("301", "alice", "bob").params[-1] == "lunch"
    alice.send("WHOIS bob")
    assert alice.expect("311", "alice", "bob").params[-1] == "Test bob"
    assert alice.expect("301", "alice", "bob").params[-1] == "lunch"
    alice.expect("671")
    alice.expect("318")
    bob.send("AWAY")
    bob.expect("305")
    alice.send("WHOIS ghost")
    alice.expect("401")
    alice.expect("318")
    alice.send("LUSERS")
    assert re.search(r"There are 2 users", alice.expect("251").params[-1])


def test_cap_negotiation_server_time_and_echo(server: RunningServer) -> None:
    alice = server.client()
    alice.send("CAP LS 302")
    caps = alice.expect("CAP", "*", "LS").params[-1].split()
    assert {"server-time", "message-tags", "echo-message"} <= {c.split("=")[0] for c in caps}
    alice.send("NICK alice")
    alice.send("USER a 0 * :a")
    alice.send("CAP REQ :server-time echo-message message-tags")
    alice.expect("CAP", where=lambda m: m.params[1] == "ACK")
    # Registration waits for CAP END.
    assert not [m for m in alice.sync() if m.command == "001"]
    alice.send("CAP LIST")
    listed = alice.expect("CAP", where=lambda m: m.params[1] == "LIST")
    assert set(listed.params[-1].split()) == {"server-time", "echo-message", "message-tags"}
    alice.send("CAP END")
    alice.expect("001")
    alice.nick = "alice"
    alice.join("#general")
    bob = server.client("bob").join("#general")
    alice.send("@+draft/reply=abc PRIVMSG #general :stamped")
    echo = alice.expect("PRIVMSG", "#general")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", echo.tags["time"])
    assert echo.tags["+draft/reply"] == "abc"
    plain = bob.expect("PRIVMSG", "#general")
    assert plain.tags == {}  # bob asked for no tags
    alice.send("CAP REQ :bogus-cap")
    alice.expect("CAP", where=lambda m: m.params[1] == "NAK")


def test_ipv6_loopback(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(host="::1")
    c = IrcClient("::1", server.port, server.ca_file)
    server.clients.append(c)
    c.register("six")
    c.send("WHOIS six")
    assert c.expect("338").params[2] == "0::1"  # '::1' would start a trailing parameter


def test_shutdown_sends_error_to_every_client(server: RunningServer) -> None:
    a = server.client("alice")
    b = server.client("bob")
    server.run(server.server.close("Server shutting down"))
    for c in (a, b):
        lines = c.wait_closed()
        assert any(m.command == "ERROR" and "shutting down" in m.params[0] for m in lines)


def test_uvloop_serves_the_same_conversation(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(loop="uvloop")
    alice = server.client("alice").join("#general")
    bob = server.client("bob").join("#general")
    alice.send("PRIVMSG #general :over uvloop")
    assert bob.expect("PRIVMSG", "#general").params[1] == "over uvloop"
    alice.send("PRIVMSG bob :private")
    assert bob.expect("PRIVMSG", "bob").params[1] == "private"
