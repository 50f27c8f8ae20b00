"""Registered rooms over real TLS: ChanServ, persistence across restarts, write-through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from chaton.protocol.message import Message
from chaton.store import RoomRecord, Store

from conftest import IrcClient, RunningServer, add_account, logged_in

StartServer = Callable[..., RunningServer]
PW = "registered rooms password 1"


def cs(client: IrcClient, text: str) -> str:
    """Send a ChanServ command; return its replies (NOTICEs to the sender) joined by " | ".
    Everything else that arrived meanwhile stays to be expected."""
    client.send(f"PRIVMSG ChanServ :{text}")
    got = client.sync()

    def reply(m: Message) -> bool:
        return m.command == "NOTICE" and m.params[0] == client.nick and (
            m.source or "").startswith("ChanServ!")

    client.pending[:0] = [m for m in got if not reply(m)]
    return " | ".join(m.params[-1] for m in got if reply(m))


def names(client: IrcClient, room: str) -> set[str]:
    client.send(f"NAMES {room}")
    found: set[str] = set()
    while True:
        msg = client.expect(("353", "366"))
        if msg.command == "366":
            return found
        found.update(msg.params[-1].split())


def stored(server: RunningServer, room: str) -> RoomRecord | None:
    """What the database holds now, read by another connection (as the CLI would)."""
    with Store(server.settings.db_file, readonly=True) as store:
        return store.get_room(room.lower())


def owner_in_room(server: RunningServer, room: str = "#team") -> IrcClient:
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW)
    olga.join(room)
    return olga


def test_register_needs_a_login_and_operator_status(server: RunningServer) -> None:
    guest = server.client("guest").join("#team")
    assert "Log in" in cs(guest, "REGISTER #team")
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW).join("#team")  # second in: not an operator
    assert "must be an operator" in cs(olga, "REGISTER #team")
    assert "No such room" in cs(olga, "REGISTER #nowhere")
    assert "Which room" in cs(olga, "REGISTER")
    assert "Unknown command" in cs(olga, "FROB #team")
    guest.send("MODE #team +o olga")
    olga.expect("MODE", "#team", "+o", "olga")
    assert "registered to olga" in cs(olga, "REGISTER #team")
    assert "already registered" in cs(olga, "REGISTER #team")
    record = stored(server, "#team")
    assert record is not None and record.owner == "olga"
    assert "owned by olga" in cs(guest, "INFO #team")


def test_a_registered_room_keeps_everything_across_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    olga = owner_in_room(server)
    olga.send("TOPIC #team :plans for Q3")
    olga.expect("TOPIC", "#team")
    assert "registered" in cs(olga, "REGISTER #team")
    olga.send("MODE #team +imk-t sesame")
    olga.expect("MODE", "#team")
    olga.send("MODE #team +b spam*!*@*")
    olga.expect("MODE", "#team", "+b")
    olga.send("MODE #team +l 9")
    olga.expect("MODE", "#team", "+l", "9")
    olga.send("TOPIC #team :plans for Q4")  # changed after registering: written through
    olga.expect("TOPIC", "#team")
    server.stop()

    again = start_server()  # the same data dir
    add_account(again.settings, "vic", PW)
    outsider = again.client("outsider")
    outsider.send("LIST")
    listed = [m.params[1] for m in outsider.sync() if m.command == "322"]
    assert "#general" in listed and "#team" not in listed  # +i: private, even when empty
    outsider.send("JOIN #team")
    outsider.expect("475")  # the key survived (checked before +i)
    olga2 = logged_in(again, "olga", "olga", PW)
    olga2.send("JOIN #team sesame")
    olga2.expect("366", "olga", "#team")
    assert names(olga2, "#team") == {"@olga"}  # the owner is operator again
    olga2.send("MODE #team")
    assert olga2.expect("324").params[2:] == ("+imnkl", "sesame", "9")
    olga2.send("TOPIC #team")
    assert olga2.expect("332").params[-1] == "plans for Q4"
    olga2.send("MODE #team b")
    assert olga2.expect("367").params[2] == "spam*!*@*"


def test_an_empty_registered_room_stays_and_a_stranger_is_not_its_operator(
    server: RunningServer,
) -> None:
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    olga.send("PART #team")
    olga.expect("PART", "#team")
    first = server.client("first")
    first.send("LIST")
    listed = {m.params[1]: m.params[2] for m in first.sync() if m.command == "322"}
    assert listed["#team"] == "0"  # empty, still listed
    first.send("JOIN #team")
    first.expect("366", "first", "#team")
    assert names(first, "#team") == {"first"}  # first in, but the room has an owner
    first.send("TOPIC #team :mine now")
    first.expect("482")


def test_acknowledged_means_committed(server: RunningServer) -> None:
    """When the room hears the MODE or TOPIC, another process already reads it on disk."""
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    olga.send("MODE #team +m")
    olga.expect("MODE", "#team", "+m")
    record = stored(server, "#team")
    assert record is not None and "m" in record.flags
    olga.send("TOPIC #team :now")
    olga.expect("TOPIC", "#team", "now")
    record = stored(server, "#team")
    assert record is not None and record.topic == "now" and record.topic_by.startswith("olga!")
    olga.send("MODE #team +e friend!*@*")
    olga.expect("MODE", "#team", "+e", "friend!*@*")
    record = stored(server, "#team")
    assert record is not None and [e[0] for e in record.lists["e"]] == ["friend!*@*"]


def test_cli_edits_reach_the_room_from_chanserv(server: RunningServer) -> None:
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    with Store(server.settings.db_file) as store:
        store.update_room("#team", lambda r: replace(r, flags="mnt", topic="from the CLI",
                                                     topic_by="cli:root"))
    mode = olga.expect("MODE", "#team", "+m")
    assert (mode.source or "").startswith("ChanServ!")
    topic = olga.expect("TOPIC", "#team", "from the CLI")
    assert (topic.source or "").startswith("ChanServ!")
    olga.send("MODE #team")
    assert olga.expect("324").params[2] == "+mnt"


def test_cli_and_server_writing_at_once_lose_nothing(server: RunningServer) -> None:
    """The CLI adds bans while the operator adds others: every one is kept, and the room
    ends up holding exactly what the database holds."""
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    count = 20

    def cli_writes() -> None:
        with Store(server.settings.db_file) as store:
            for i in range(count):
                store.update_room("#team", lambda r, i=i: replace(
                    r, lists={**r.lists, "b": [*r.lists.get("b", []),
                                               (f"cli{i}!*@*", "cli", float(i))]}))

    writer = threading.Thread(target=cli_writes)
    writer.start()
    for i in range(count):
        olga.send(f"MODE #team +b irc{i}!*@*")
    for i in range(count):
        olga.expect("MODE", "#team", "+b", f"irc{i}!*@*")
    writer.join(30)
    record = stored(server, "#team")
    assert record is not None
    masks = {m for m, _, _ in record.lists["b"]}
    assert masks == {f"cli{i}!*@*" for i in range(count)} | {f"irc{i}!*@*" for i in range(count)}

    def live() -> set[str]:
        room = server.server.state.find_channel("#team")
        assert room is not None
        return {e.mask for e in room.bans.values()}

    olga.send("MODE #team +b last!*@*")  # after every CLI change has been polled...
    olga.expect("MODE", "#team", "+b", "last!*@*")
    server.call(server.server.authority.apply_changes)  # type: ignore[union-attr]
    assert server.call(live) == masks | {"last!*@*"}


def test_standing_grants_give_status_on_join(server: RunningServer) -> None:
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    add_account(server.settings, "vic", PW)
    vic = logged_in(server, "vic", "vic", PW).join("#team")
    assert "no standing grant" in cs(vic, "OP #team")
    assert "Only the owner" in cs(vic, "AMODE #team +o vic")
    assert "no account" in cs(olga, "AMODE #team +v nobody")
    assert "vic now has standing +v" in cs(olga, "AMODE #team +v vic")
    given = vic.expect("MODE", "#team", "+v", "vic")  # present: given at once
    assert (given.source or "").startswith("ChanServ!")
    vic.send("PART #team")
    vic.expect("PART")
    vic.join("#team")
    assert "+vic" in names(vic, "#team")
    assert "no standing grant" in cs(vic, "OP #team")
    cs(olga, "AMODE #team +o vic")
    vic.expect("MODE", "#team", "+o", "vic")
    assert cs(vic, "DEOP #team") == ""  # the MODE line is the answer
    vic.expect("MODE", "#team", "-o", "vic")
    assert cs(vic, "OP #team") == ""
    vic.expect("MODE", "#team", "+o", "vic")
    assert "vic(+ov)" in cs(olga, "AMODE #team")
    guest = server.client("guest").join("#team")  # a guest named like nobody: nothing
    assert "guest" in names(guest, "#team")


def test_drop_by_owner_or_admin_only_and_audited(server: RunningServer) -> None:
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    add_account(server.settings, "vic", PW)
    vic = logged_in(server, "vic", "vic", PW).join("#team")
    assert "Only the owner" in cs(vic, "DROP #team")
    assert "Only the owner" in cs(vic, "SET #team OWNER vic")
    assert "now belongs to vic" in cs(olga, "SET #team OWNER vic")
    assert "Only the owner" in cs(olga, "DROP #team")  # no longer hers
    assert "no longer registered" in cs(vic, "DROP #team")
    olga.expect("NOTICE", "#team")  # the room is told
    assert stored(server, "#team") is None
    olga.send("PART #team")
    vic.send("PART #team")
    vic.expect("PART", "#team", where=lambda m: (m.source or "").startswith("vic!"))
    assert server.call(lambda: server.server.state.find_channel("#team")) is None
    with Store(server.settings.db_file, readonly=True) as store:
        actions = [(e.actor, e.action, e.target) for e in store.audit_since()]
    assert ("olga", "room-register", "#team") in actions
    assert ("olga", "room-owner", "#team vic") in actions
    assert ("vic", "room-drop", "#team") in actions


def test_the_default_room_belongs_to_the_admins(start_server: StartServer) -> None:
    server = start_server()
    add_account(server.settings, "boss", PW, admin=True)
    add_account(server.settings, "user", PW)
    record = stored(server, "#general")
    assert record is not None and record.owner == "@admins"
    user = logged_in(server, "user", "user", PW).join("#general")
    assert names(user, "#general") == {"user"}
    boss = logged_in(server, "boss", "boss", PW).join("#general")
    assert "@boss" in names(boss, "#general")
    assert "owned by the server's admins" in cs(user, "INFO #general")
    assert "Only the owner" in cs(user, "DROP #general")
    # A demoted admin is no owner: the record is read, not the login.
    with Store(server.settings.db_file) as store:
        store.set_role("boss", "user")
    boss.send("PART #general")
    boss.expect("PART")
    boss.send("JOIN #general")
    boss.expect("366", "boss", "#general")
    assert "boss" in names(boss, "#general")
    # Dropped, it stays dropped after a restart (registered once per database).
    with Store(server.settings.db_file) as store:
        store.set_role("boss", "admin")
    server.stop()
    server = start_server()
    boss = logged_in(server, "boss", "boss", PW)
    assert "no longer registered" in cs(boss, "DROP #general")
    server.stop()
    server = start_server()
    assert stored(server, "#general") is None


def test_chanserv_is_nobody_s_nickname_and_ignores_notices(server: RunningServer) -> None:
    c = server.client("someone")
    c.send("NICK ChanServ")
    c.expect("433")
    c.send("NICK cHaNsErV")
    c.expect("433")
    c.send("NOTICE ChanServ :REGISTER #x")  # never answered (no loops between bots)
    c.send("CS HELP")
    first = c.expect("NOTICE", "someone")
    assert (first.source or "").startswith("ChanServ!") and "ChanServ keeps" in first.params[-1]


def test_a_secret_room_is_not_confirmed_to_outsiders(server: RunningServer) -> None:
    olga = owner_in_room(server, "#leads")
    cs(olga, "REGISTER #leads")
    olga.send("MODE #leads +s")
    olga.expect("MODE", "#leads", "+s")
    outsider = server.client("outsider")
    assert "No such room" in cs(outsider, "INFO #leads")
    assert "No such room" in cs(outsider, "OP #leads")
    olga.send("PART #leads")
    olga.expect("PART")
    outsider.send("LIST")
    assert not [m for m in outsider.sync() if m.command == "322" and m.params[1] == "#leads"]


def test_registrations_per_account_are_limited(start_server: StartServer) -> None:
    server = start_server(rooms_registered_per_account=2)
    olga = owner_in_room(server, "#a")
    olga.join("#b")
    olga.join("#c")
    for room in ("#a", "#b"):
        assert "registered to olga" in cs(olga, f"REGISTER {room}")
    assert "already owns 2 rooms" in cs(olga, "REGISTER #c")


def test_a_registered_room_survives_kill9_right_after_the_acknowledgement(
    tmp_path: Path,
) -> None:
    """``chaton serve`` in a process of its own, killed with SIGKILL the moment the last
    change is acknowledged: everything acknowledged is there after the restart."""
    from bench.crash import Irc, ServeProcess

    serve = ServeProcess(tmp_path).start()
    try:
        made = serve.cli("account", "add", "olga", "--password-stdin", input=PW + "\n")
        assert made.returncode == 0, made.stderr
        olga = Irc(serve.port, serve.ca_file)
        olga.register("olga", "olga", PW)
        olga.send("JOIN #keep")
        olga.expect(lambda m: m.command == "366")
        olga.send("PRIVMSG ChanServ :REGISTER #keep")
        olga.expect(lambda m: m.command == "NOTICE" and "registered to" in m.params[-1])
        olga.send("TOPIC #keep :survives")
        olga.expect(lambda m: m.command == "TOPIC")
        olga.send("MODE #keep +mi")
        olga.expect(lambda m: m.command == "MODE" and m.params[0] == "#keep")
        olga.send("MODE #keep +b x!*@*")
        olga.expect(lambda m: m.command == "MODE" and m.params[1:] == ("+b", "x!*@*"))
        serve.kill9()
        olga.close()

        serve.start()
        again = Irc(serve.port, serve.ca_file)
        again.register("olga", "olga", PW)
        again.send("JOIN #keep")
        assert again.expect(lambda m: m.command == "332").params[-1] == "survives"
        assert again.expect(lambda m: m.command == "353").params[-1] == "@olga"
        again.send("MODE #keep")
        assert again.expect(lambda m: m.command == "324").params[2] == "+imnt"
        again.send("MODE #keep b")
        assert again.expect(lambda m: m.command in ("367", "368")).params[2] == "x!*@*"
        again.close()
    finally:
        serve.kill9()


def test_the_owner_is_never_shut_out_and_admin_overrides_are_audited(
    server: RunningServer,
) -> None:
    olga = owner_in_room(server)
    cs(olga, "REGISTER #team")
    filler = server.client("filler").join("#team")
    olga.send("MODE #team +iklb sesame 2 olga!*@*")  # invite-only, keyed, full, and banned
    olga.expect("MODE", "#team")
    olga.send("PART #team")
    olga.expect("PART")
    filler.send("MODE #team +l 1")  # filler is no operator: refused
    filler.expect("482")
    olga.send("JOIN #team")  # no key, no invitation, banned by mask, the room at its limit
    olga.expect("366", "olga", "#team")
    assert "@olga" in names(olga, "#team")
    stranger = server.client("stranger")
    stranger.send("JOIN #team sesame")
    stranger.expect(("471", "473", "474"))
    # An admin who does not own the room: its ChanServ actions there are audited.
    add_account(server.settings, "boss", PW, admin=True)
    boss = logged_in(server, "boss", "boss", PW)  # an admin account: admin powers at login
    boss.send("JOIN #team")
    boss.expect("366", "boss", "#team")
    assert cs(boss, "VOICE #team") == ""
    boss.expect("MODE", "#team", "+v", "boss")
    with Store(server.settings.db_file, readonly=True) as store:
        audit = [(e.actor, e.action, e.target, e.reason) for e in store.audit_since()]
    assert ("boss", "room-+v", "#team boss", "override") in audit


def test_parallel_registrations_cannot_pass_the_limit(start_server: StartServer) -> None:
    """Two sessions of one account register two rooms at the same moment with room for one:
    the count is taken inside the registering transaction, so exactly one wins."""
    server = start_server(rooms_registered_per_account=1)
    add_account(server.settings, "olga", PW)
    first = logged_in(server, "olga", "olga", PW).join("#one")
    second = logged_in(server, "olga2", "olga", PW).join("#two")
    first.send("PRIVMSG ChanServ :REGISTER #one")
    second.send("PRIVMSG ChanServ :REGISTER #two")
    replies = [c.expect("NOTICE", where=lambda m: (m.source or "").startswith("ChanServ!")
                        ).params[-1] for c in (first, second)]
    assert sum("registered to olga" in r for r in replies) == 1, replies
    assert sum("already owns 1 rooms" in r for r in replies) == 1, replies
    with Store(server.settings.db_file, readonly=True) as store:
        owned = [r.key for r in store.list_rooms() if r.owner == "olga"]
    assert len(owned) == 1
