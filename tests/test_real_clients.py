"""The real irssi and WeeChat against chaton: the README's own steps (SASL, a room and a
private conversation with chaton's client), and a room operator's commands.

Each test starts the real binary (irssi 1.4 in tmux, ``weechat-headless`` 3.8) with a fresh
home, verifying the server with the test CA. The user types the commands a room operator
types; raw IRC clients in the room check every effect on the server side, and at the end the
real client's own raw log must hold no error numeric (400-599) beyond the ones it provokes on
every connect (``real_clients.CONNECT_ERRORS``).

The tests skip when a binary is missing, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import trustme
from real_clients import Irssi, RealClient, WeeChat, readme_commands, require, running
from test_client_e2e import ClientProcess

from chaton.protocol.message import Message

from conftest import IrcClient, RunningServer, add_account

ROOM = "#r"
CLIENTS = [pytest.param(Irssi, id="irssi"), pytest.param(WeeChat, id="weechat")]


def by(real: RealClient, msg_source: str | None) -> bool:
    return (msg_source or "").startswith(real.nick + "!")


def raw_client(server: RunningServer, nick: str, user: str, bind: str | None = None
               ) -> IrcClient:
    """A raw test client with its own user name (``~user@guest.<cloak>.chaton.local``),
    from ``bind`` (another loopback address: another cloak) if given."""
    c = server.client(bind=bind)
    return c.register(nick, user=user)


def join_seen(real: RealClient, c: IrcClient, *key: str) -> IrcClient:
    """``c`` joins the room, and the real client has seen it (its /ban needs bob's host)."""
    start = len(real.raw())
    c.send(" ".join(("JOIN", ROOM, *key)))
    c.expect("366", c.nick or "", ROOM)
    real.wait_raw(f"{c.nick}'s JOIN", lambda x: not x.sent and x.command == "JOIN"
                  and x.source.startswith(f"{c.nick}!"), after=start)
    return c


def type_and_see(real: RealClient, typed: str, command: str, *params: str,
                 room: str | None = ROOM) -> Message:
    """Type a command, then wait until the real client has seen its effect, as a person
    does before typing the next one (WeeChat skips ``/deop bob`` while it thinks bob is
    not an operator yet). Returns the line that showed it."""
    start = len(real.raw())
    real.command(typed, room)
    index = real.wait_received(command, *params, after=start)
    seen = real.raw()[index].message
    assert seen is not None
    return seen


def assert_no_errors(real: RealClient) -> None:
    real.sync()  # every reply to what it sent is now in its raw log
    errors = real.errors()
    assert not errors, f"{real.name} received error numerics:\n" + "\n".join(map(str, errors))


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_readme_s_steps_log_in_and_talk_with_a_chaton_client(
    kind: type[RealClient], server: RunningServer, tmp_path: Path
) -> None:
    """Typed as the README says (its irssi or WeeChat block, with this server, account and
    room): verified TLS, a SASL login under the account's own nickname, then a room message
    and a private message each way with a person on chaton's own client."""
    require(kind)
    account, password = "alice", "readme-secret-1"
    add_account(server.settings, account, password)
    setup = readme_commands(kind, kind.version(), host="localhost", port=server.port,
                            account=account, password=password, room=ROOM)
    assert [line for line in setup if line.startswith("/join")] == [f"/join {ROOM}"]
    with running(kind, tmp_path / kind.name, "localhost", server.port, server.ca_file,
                 account, setup) as real:
        real.wait_received("903")  # SASL succeeded, before registration ended
        real.join(ROOM)
        assert server.call(lambda: server.server.state.nicks[account].account) == account
        tls_only = server.call(lambda: server.server.state.nicks[account].link.description)
        assert "TLS" in tls_only, tls_only

        carol = ClientProcess(server, tmp_path, "--nick", "carol", "--join", ROOM)
        try:
            carol.expect(rf"{ROOM} -- carol joined$")
            real.wait_raw("carol's JOIN", lambda x: not x.sent and x.command == "JOIN"
                          and x.source.startswith("carol!"))
            carol.type("hello from chaton")
            real.wait_received("PRIVMSG", ROOM, "hello from chaton")
            real.command(f"hi from {kind.name}", ROOM)
            carol.expect(rf"{ROOM} <{account}> hi from {kind.name}$")
            real.command(f"/msg carol psst from {kind.name}")
            carol.expect(rf"\*{account}\* psst from {kind.name}$")
            carol.type(f"/msg {account} and back")
            real.wait_received("PRIVMSG", account, "and back")
            assert_no_errors(real)
            assert carol.finish() == 0
            trouble = re.compile(r"-!- .*(failed|No such|ERROR: (?!Closing Link))")
            assert not [line for line in carol.lines if trouble.search(line)], carol.lines
        finally:
            carol.kill()


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_real_client_joining_a_room_is_shown_what_was_said_before(
    kind: type[RealClient], server: RunningServer, tmp_path: Path
) -> None:
    """irssi and WeeChat cannot ask for history (no CHATHISTORY): on JOIN the server
    replays the room's past, and the client shows it, once, before what is said next."""
    require(kind)
    bob = raw_client(server, "bob", "bob")
    bob.send(f"JOIN {ROOM}")
    bob.expect("366", "bob", ROOM)
    for text in ("said before you came", "and this too"):
        bob.send(f"PRIVMSG {ROOM} :{text}")
    bob.sync()
    with running(kind, tmp_path / kind.name, "localhost", server.port, server.ca_file,
                 "latecomer") as real:
        real.join(ROOM)
        real.wait_received("PRIVMSG", ROOM, "said before you came")
        real.wait_received("PRIVMSG", ROOM, "and this too")
        real.wait_shown("and this too")
        bob.send(f"PRIVMSG {ROOM} :live now")
        real.wait_shown("live now")
        got = [x.message.params[-1] for x in real.raw()
               if not x.sent and x.command == "PRIVMSG" and x.message is not None]
        assert got == ["said before you came", "and this too", "live now"]
        assert_no_errors(real)


@pytest.mark.parametrize("kind", CLIENTS)
def test_room_operator_commands(kind: type[RealClient], server: RunningServer,
                                tmp_path: Path) -> None:
    with running(kind, tmp_path / kind.name, "localhost", server.port, server.ca_file,
                 "realop") as real:
        real.join(ROOM)  # a new room: the real client is its operator
        bob = join_seen(real, raw_client(server, "bob", "bob", bind="127.0.0.2"))
        carol = join_seen(real, raw_client(server, "carol", "carol", bind="127.0.0.3"))

        # /op /deop /voice /devoice
        for typed, change in (("/op bob", "+o"), ("/deop bob", "-o"),
                              ("/voice bob", "+v"), ("/devoice bob", "-v")):
            type_and_see(real, typed, "MODE", ROOM, change, "bob")
            mode = carol.expect("MODE", ROOM)
            assert mode.params[1:] == (change, "bob") and by(real, mode.source), (typed, mode)
        bob.send(f"NAMES {ROOM}")
        assert set(bob.expect("353").params[-1].split()) == {"@realop", "bob", "carol"}

        # /kick with a reason
        type_and_see(real, "/kick bob out you go", "KICK", ROOM, "bob")
        kick = bob.expect("KICK", ROOM, "bob")
        assert kick.params[2:] == ("out you go",) and by(real, kick.source)
        carol.expect("KICK", ROOM, "bob")
        join_seen(real, bob)

        # /ban NICK: the client makes a mask from bob's address; bob can no longer rejoin
        type_and_see(real, "/ban bob", "MODE", ROOM, "+b")
        ban = carol.expect("MODE", ROOM, "+b")
        mask = ban.params[2]
        bob_source = server.call(lambda: server.server.state.nicks["bob"].source)
        assert by(real, ban.source) and fnmatch.fnmatchcase(bob_source, mask), ban
        bob.send(f"PART {ROOM}")
        bob.expect("PART", ROOM)
        bob.send(f"JOIN {ROOM}")
        assert bob.expect("474", "bob", ROOM)

        # WeeChat's /ban alone asks for the list (MODE #r +b with no mask); irssi's shows the
        # list it fetched on joining (MODE #r b) and kept up to date from MODE lines
        if kind is WeeChat:
            start = len(real.raw())
            real.command("/ban", ROOM)
            listed = real.wait_received("367", real.nick, ROOM, mask, after=start)
            real.wait_received("368", real.nick, ROOM, after=listed)

        # /unban: irssi matches its ban list with a wildcard, WeeChat takes the list's number
        type_and_see(real, "/unban *" if kind is Irssi else "/unban 1", "MODE", ROOM, "-b")
        unban = carol.expect("MODE", ROOM, "-b")
        assert unban.params[2:] == (mask,) and by(real, unban.source)
        join_seen(real, bob)
        bob.send(f"PART {ROOM}")
        bob.expect("PART", ROOM)

        # +i and /invite: bob is refused, then let in once by the invitation
        type_and_see(real, f"/mode {ROOM} +i", "MODE", ROOM, "+i")
        assert by(real, carol.expect("MODE", ROOM, "+i").source)
        bob.send(f"JOIN {ROOM}")
        bob.expect("473", "bob", ROOM)
        type_and_see(real, f"/invite bob {ROOM}", "341", real.nick, "bob", ROOM)
        invite = bob.expect("INVITE", "bob", ROOM)
        assert by(real, invite.source)
        join_seen(real, bob)
        type_and_see(real, f"/mode {ROOM} -i", "MODE", ROOM, "-i")
        carol.expect("MODE", ROOM, "-i")

        # +k: the key is needed to join
        bob.send(f"PART {ROOM}")
        bob.expect("PART", ROOM)
        type_and_see(real, f"/mode {ROOM} +k sesame", "MODE", ROOM, "+k")
        assert carol.expect("MODE", ROOM, "+k").params[2:] == ("sesame",)
        bob.send(f"JOIN {ROOM}")
        bob.expect("475", "bob", ROOM)
        join_seen(real, bob, "sesame")

        # +l: three members, a limit of three, a fourth is refused
        type_and_see(real, f"/mode {ROOM} +l 3", "MODE", ROOM, "+l")
        assert carol.expect("MODE", ROOM, "+l").params[2:] == ("3",)
        dave = raw_client(server, "dave", "dave")
        dave.send(f"JOIN {ROOM} sesame")
        dave.expect("471", "dave", ROOM)

        # +m: unvoiced bob cannot speak
        type_and_see(real, f"/mode {ROOM} +m", "MODE", ROOM, "+m")
        carol.expect("MODE", ROOM, "+m")
        bob.send(f"PRIVMSG {ROOM} :may I?")
        bob.expect("404", "bob", ROOM)

        # +s: the room vanishes from an outsider's LIST
        type_and_see(real, f"/mode {ROOM} +s", "MODE", ROOM, "+s")
        carol.expect("MODE", ROOM, "+s")
        dave.send("LIST")
        listing = [m for m in dave.sync() if m.command == "322"]
        assert all(m.param(1) != ROOM for m in listing), listing

        # -t lets members set the topic, +t takes it back
        type_and_see(real, f"/mode {ROOM} -t", "MODE", ROOM, "-t")
        carol.expect("MODE", ROOM, "-t")
        carol.send(f"TOPIC {ROOM} :carol was here")
        bob.expect("TOPIC", ROOM, "carol was here")
        type_and_see(real, f"/mode {ROOM} +t", "MODE", ROOM, "+t")
        carol.expect("MODE", ROOM, "+t")
        carol.send(f"TOPIC {ROOM} :carol again")
        carol.expect("482", "carol", ROOM)

        # /topic from the operator
        type_and_see(real, "/topic Welcome to the room", "TOPIC", ROOM)
        topic = bob.expect("TOPIC", ROOM)
        assert topic.params[1:] == ("Welcome to the room",) and by(real, topic.source)

        # the room's modes as the server now holds them
        carol.send(f"MODE {ROOM}")
        modes = carol.expect("324", "carol", ROOM)
        assert set(modes.params[2].lstrip("+")) == set("klmnst"), modes

        assert_no_errors(real)


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_client_refuses_a_server_its_ca_did_not_sign(
    kind: type[RealClient], server: RunningServer, tmp_path: Path
) -> None:
    """The clients really verify: with another CA they say so and never register."""
    require(kind)
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    real = kind(tmp_path / kind.name, "localhost", server.port, other_ca, "realop")
    with real:
        real.launch()
        real.wait_shown(real.untrusted_certificate)
        assert not [line for line in real.raw() if line.sent], real.raw()
        watcher = server.client("watcher")
        watcher.send("WHOIS realop")
        watcher.expect("401", "watcher", "realop")


@pytest.mark.parametrize("kind", CLIENTS)
def test_banning_a_guest_by_nick_leaves_other_guests_in(
    kind: type[RealClient], server: RunningServer, tmp_path: Path
) -> None:
    """``/ban bob`` keeps bob out, not every guest: each guest address has its own cloak
    (``guest.<cloak>.<server>``, chaton/server/hosts.py), which both clients' default ban
    masks use (irssi ``*!*bob@host``; WeeChat ``*!*@host`` for a ``~`` user)."""
    with running(kind, tmp_path / kind.name, "localhost", server.port, server.ca_file,
                 "realop") as real:
        real.join(ROOM)
        bob = join_seen(real, raw_client(server, "bob", "bob", bind="127.0.0.2"))
        mask = type_and_see(real, "/ban bob", "MODE", ROOM, "+b").params[2]
        bob_host = server.call(lambda: server.server.state.nicks["bob"].host)
        assert mask.endswith(bob_host.split(".", 1)[1]) and "guest.*" not in mask, mask
        carol = raw_client(server, "carol", "carol", bind="127.0.0.3")
        carol.send(f"JOIN {ROOM}")
        reply = carol.expect(("366", "474"), "carol", ROOM)
        bob.send(f"PART {ROOM}")
        bob.expect("PART")
        bob.send(f"JOIN {ROOM}")
        bob.expect("474", "bob", ROOM)  # and bob stays out
        assert_no_errors(real)
    assert reply.command == "366", (mask, reply)
