"""Room operators, voice and room modes, as irssi/WeeChat users drive them (real TLS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaton.store import RoomRecord, Store

from conftest import RunningServer, add_account, logged_in

StartServer = Callable[..., RunningServer]
PW = "room modes password 1"


def test_the_first_in_is_operator_and_gives_op_and_voice(server: RunningServer) -> None:
    owner = server.client("owner").join("#team")
    bob = server.client("bob").join("#team")
    owner.send("MODE #team +ov bob bob")
    mode = bob.expect("MODE", "#team")
    assert mode.params[1:] == ("+ov", "bob", "bob") and (mode.source or "").startswith("owner!")
    carol = server.client("carol")
    carol.send("CAP REQ :multi-prefix")
    carol.expect("CAP", where=lambda m: m.param(1) == "ACK")
    carol.send("JOIN #team")
    names = carol.expect("353")
    assert set(names.params[-1].split()) == {"@owner", "@+bob", "carol"}
    bob.send("MODE #team -o bob")
    bob.expect("MODE", "#team", "-o", "bob")
    bob.send("MODE #team +o carol")
    bob.expect("482")  # bob is voiced, no longer an operator


def test_topic_lock_and_moderation(server: RunningServer) -> None:
    owner = server.client("owner").join("#r")
    guest = server.client("guest").join("#r")
    guest.send("TOPIC #r :mine")
    guest.expect("482")  # +t by default
    owner.send("MODE #r -t+m")
    guest.expect("MODE", "#r", "-t+m")
    guest.send("TOPIC #r :ours")
    owner.expect("TOPIC", "#r", "ours")
    guest.send("PRIVMSG #r :can I speak?")
    guest.expect("404")
    owner.send("MODE #r +v guest")
    guest.expect("MODE", "#r", "+v", "guest")
    guest.send("PRIVMSG #r :now I can")
    owner.expect("PRIVMSG", "#r", "now I can")


def test_outside_messages_only_with_minus_n(server: RunningServer) -> None:
    owner = server.client("owner").join("#r")
    outsider = server.client("outsider")
    outsider.send("PRIVMSG #r :hello from outside")
    outsider.expect("404")
    owner.send("MODE #r -n")
    owner.expect("MODE", "#r", "-n")
    outsider.send("PRIVMSG #r :hello from outside")
    owner.expect("PRIVMSG", "#r", "hello from outside")


def test_key_limit_and_invite_only(server: RunningServer) -> None:
    owner = server.client("owner").join("#private")
    owner.send("MODE #private +kl s3cret 2")
    owner.expect("MODE", "#private", "+kl", "s3cret", "2")
    a = server.client("a")
    a.send("JOIN #private")
    a.expect("475")
    a.send("JOIN #private wrong")
    a.expect("475")
    a.send("JOIN #private s3cret")
    a.expect("366")
    b = server.client("b")
    b.send("JOIN #private s3cret")
    b.expect("471")  # full: 2 members
    owner.send("MODE #private -kl+i *")
    owner.expect("MODE", "#private", "-kl+i", "*")
    b.send("JOIN #private")
    b.expect("473")
    a.send("INVITE b #private")
    a.expect("482")  # +i: only operators invite
    owner.send("INVITE b #private")
    owner.expect("341", "owner", "b", "#private")
    b.expect("INVITE", "b", "#private")
    owner.send("INVITE a #private")
    owner.expect("443")
    b.send("JOIN #private")
    b.expect("366")
    b.send("PART #private")
    b.send("JOIN #private")
    b.expect("473")  # an invitation is used once


@pytest.mark.parametrize("private", ["s", "i"])
def test_a_private_room_is_invisible_to_outsiders(server: RunningServer, private: str) -> None:
    """Secret (+s) and invite-only (+i) rooms: nothing of them reaches a non-member."""
    owner = server.client("owner").join("#incident")
    owner.send(f"MODE #incident +{private}")
    owner.expect("MODE", "#incident", f"+{private}")
    owner.send("TOPIC #incident :prod is down")
    owner.expect("TOPIC")
    spy = server.client("spy")
    spy.send("LIST")
    listed = [m.params[1] for m in spy.sync() if m.command == "322"]
    assert "#incident" not in listed
    spy.send("NAMES #incident")
    assert not [m for m in spy.sync() if m.command == "353"]
    spy.send("WHO #incident")
    assert not [m for m in spy.sync() if m.command == "352"]
    spy.send("WHOIS owner")
    assert not [m for m in spy.sync() if m.command == "319"]
    spy.send("TOPIC #incident")
    spy.expect("403")
    spy.send("MODE #incident")
    spy.expect("403")
    spy.send("PRIVMSG #incident :anyone?")
    spy.expect("403")
    spy.send("PRIVMSG ChanServ :INFO #incident")
    assert "No such room" in spy.expect("NOTICE", "spy").params[-1]
    member_view = server.client("member")
    owner.send("INVITE member #incident")
    member_view.expect("INVITE")
    member_view.send("JOIN #incident")
    symbol = member_view.expect("353").params[1]
    assert symbol == ("@" if private == "s" else "=")  # "@": the secret-room symbol
    member_view.send("TOPIC #incident")
    assert member_view.expect("332").params[-1] == "prod is down"  # members see it all


def test_kick_checks_run_in_the_standard_order(server: RunningServer) -> None:
    owner = server.client("owner").join("#r")
    member = server.client("member").join("#r")
    outsider = server.client("outsider")
    outsider.send("KICK #nowhere member")
    outsider.expect("403")
    outsider.send("KICK #r member")
    outsider.expect("442")
    member.send("KICK #r owner")
    member.expect("482")
    owner.send("KICK #r outsider")
    owner.expect("441")
    owner.send("KICK #r member :bye")
    member.expect("KICK", "#r", "member")


def test_an_admin_acts_in_any_room_and_it_is_audited(server: RunningServer) -> None:
    from chaton.store import Store

    add_account(server.settings, "boss", PW, admin=True)
    owner = server.client("owner").join("#r")
    boss = logged_in(server, "boss", "boss", PW)
    boss.send("MODE #r +i")
    owner.expect("MODE", "#r", "+i")
    boss.send("KICK #r owner :override")
    owner.expect("KICK", "#r", "owner")
    with Store(server.settings.db_file) as store:
        actions = [(e.actor, e.action, e.target) for e in store.audit_since()]
    assert ("boss", "mode", "#r +i") in actions  # the override is audited
    assert any(action == "kick" and actor == "boss" for actor, action, _ in actions)


def test_bad_mode_strings_get_errors_not_silence(server: RunningServer) -> None:
    owner = server.client("owner").join("#r")
    owner.send("MODE #r +z")
    owner.expect("472")
    owner.send("MODE #r +k")
    owner.expect("461")
    owner.send("MODE #r +l many")
    owner.expect("696")
    owner.send("MODE #r +o nobody")
    owner.expect("441")


_letters = st.text(alphabet="+-imnstklovbeIzX", max_size=12)
_args = st.lists(st.sampled_from(["owner", "guest", "nobody", "key1", "5", "0", "-3", "x y",
                                  "*", "", "99999999999"]), max_size=6)


@pytest.mark.parametrize("registered", [False, True])
def test_random_mode_strings_never_break_the_room(
    start_server: StartServer, registered: bool
) -> None:
    """Whatever MODE an operator sends, nothing raises and ``MODE #r`` agrees with what
    was announced (and, in a registered room, with what the database holds)."""
    server = start_server(flood_rate=0)
    owner = server.client("owner").join("#r")
    guest = server.client("guest").join("#r")
    shown: dict[str, object] = {"flags": set("nt"), "k": None, "l": None}
    if registered:  # as 'chaton room register' would, then the feed is read
        with Store(server.settings.db_file) as store:
            store.register_room(RoomRecord("#r", "#r", "someone", 1.0))
        assert server.server.authority is not None
        server.call(server.server.authority.apply_changes)
        assert server.call(lambda: server.server.state.channels["#r"].owner) == "someone"

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(letters=_letters, args=_args)
    def check(letters: str, args: list[str]) -> None:
        line = " ".join(["MODE", "#r", letters or "+", *(a for a in args if a and " " not in a)])
        owner.send(line)
        owner.sync()  # the MODE is done (a registered room's write committed) before...
        for m in guest.sync():  # ...the guest looks at what it was told
            if m.command != "MODE" or m.params[0] != "#r":
                continue
            _track(shown, m.params[1], list(m.params[2:]))
        owner.send("MODE #r")
        query = owner.expect("324")
        owner.sync()
        want = "+" + "".join(sorted(shown["flags"]))  # type: ignore[arg-type]
        params = []
        if shown["k"] is not None:
            want += "k"
            params.append(shown["k"])
        if shown["l"] is not None:
            want += "l"
            params.append(shown["l"])
        assert list(query.params[2:]) == [want, *params], line

    check()
    owner.sync()
    guest.sync()
    if registered:
        with Store(server.settings.db_file, readonly=True) as store:
            record = store.get_room("#r")
        assert record is not None
        assert (set(record.flags), record.secret_key, record.user_limit) == (
            shown["flags"], shown["k"],
            None if shown["l"] is None else int(str(shown["l"])))


def _track(shown: dict[str, object], modes: str, args: list[str]) -> None:
    adding = True
    flags: set[str] = shown["flags"]  # type: ignore[assignment]
    for letter in modes:
        if letter in "+-":
            adding = letter == "+"
        elif letter in "ovbeI":  # member status and list entries: not in MODE #r
            args.pop(0)
        elif letter == "k":
            value = args.pop(0)
            shown["k"] = value if adding else None
        elif letter == "l":
            shown["l"] = args.pop(0) if adding else None
        elif adding:
            flags.add(letter)
        else:
            flags.discard(letter)


def test_bans_exceptions_and_invite_exceptions(server: RunningServer) -> None:
    """What irssi's and WeeChat's /ban send: MODE #r +b mask."""
    owner = server.client("owner").join("#r")
    troll = server.client("troll").join("#r")
    owner.send("MODE #r +b troll")
    troll.expect("MODE", "#r", "+b", "troll!*@*")
    troll.send("PRIVMSG #r :still talking")
    troll.expect("404")  # a banned member cannot speak
    owner.send("KICK #r troll")
    troll.expect("KICK")
    troll.send("JOIN #r")
    troll.expect("474")
    owner.send("MODE #r b")
    entry = owner.expect("367", "owner", "#r", "troll!*@*")
    assert (entry.params[3] or "").startswith("owner!")
    owner.expect("368")
    owner.send("MODE #r +e troll!*@guest.*.chaton.local")
    owner.expect("MODE", "#r", "+e")
    troll.send("JOIN #r")
    troll.expect("366")  # the exception lets it in
    owner.send("MODE #r -be troll!*@* troll!*@guest.*.chaton.local")
    owner.expect("MODE", "#r", "-be")
    owner.send("MODE #r +iI *!*@user.alice.chaton.local")
    owner.expect("MODE", "#r", "+iI")
    add_account(server.settings, "alice", PW)
    alice = logged_in(server, "alice", "alice", PW)
    alice.send("JOIN #r")
    alice.expect("366")  # +I: the invite exception
    server.client("nobody").send("JOIN #r")


def test_an_account_ban_follows_the_account_not_the_nick(server: RunningServer) -> None:
    add_account(server.settings, "mallory", PW)
    owner = server.client("owner").join("#r")
    owner.send("MODE #r +b $a:mallory")
    owner.expect("MODE", "#r", "+b", "$a:mallory")
    m = logged_in(server, "m2", "mallory", PW)
    m.send("JOIN #r")
    m.expect("474")
    guest = server.client("mallory-guest")
    guest.join("#r")  # a guest is not that account


def test_who_may_create_rooms_is_a_setting(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(room_creation="accounts")
    add_account(server.settings, "alice", PW)
    guest = server.client("guest")
    guest.send("JOIN #new")
    guest.expect("477")
    alice = logged_in(server, "alice", "alice", PW)
    alice.join("#new")
    guest.join("#new")  # joining an existing room is not creating one
    admins_only = start_server(room_creation="admins", data_dir=tmp_path / "other")
    add_account(admins_only.settings, "alice", PW)
    user = logged_in(admins_only, "alice", "alice", PW)
    user.send("JOIN #other")
    user.expect("477")
