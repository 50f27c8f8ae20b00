"""CHATHISTORY over real TLS: every subcommand and reference type, who may read what, the
replay on JOIN for clients that cannot ask, and history that survives a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import pytest

from chaton.protocol.message import Message

from conftest import IrcClient, RunningServer, add_account, logged_in

PW = "correct horse battery"
HISTORY_CAPS = ("batch", "message-tags", "server-time", "echo-message", "draft/chathistory")


def ask(client: IrcClient, line: str) -> tuple[list[str], list[Message]]:
    """Send a CHATHISTORY line; the batch's opening params and the lines inside it."""
    client.send(line)
    start = client.expect("BATCH", where=lambda m: m.params[0].startswith("+"))
    ref = start.params[0][1:]
    inside: list[Message] = []
    while True:
        msg = client.expect(("PRIVMSG", "NOTICE", "TAGMSG", "JOIN", "PART", "TOPIC", "KICK",
                             "MODE", "NICK", "QUIT", "CHATHISTORY", "BATCH"))
        if msg.command == "BATCH" and msg.params[0] == "-" + ref:
            return list(start.params[1:]), inside
        assert msg.tags.get("batch") == ref, msg
        inside.append(msg)


def texts(lines: list[Message]) -> list[str]:
    return [m.params[-1] for m in lines]


def fail(client: IrcClient, line: str) -> Message:
    client.send(line)
    return client.expect("FAIL", "CHATHISTORY")


@pytest.fixture
def talk(server: RunningServer) -> tuple[IrcClient, list[Message]]:
    """ann says m0..m9 in #talk; her echoes carry the msgid and time everyone saw."""
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    ann.join("#talk")
    echoes: list[Message] = []
    for i in range(10):
        while echoes and time.time() * 1000 < _ms(echoes[-1]) + 1:
            time.sleep(0.0005)  # not a wait for an event: each message its own millisecond
        ann.send(f"PRIVMSG #talk :m{i}")
        echoes.append(ann.expect("PRIVMSG", "#talk"))
    assert len({m.tags["time"] for m in echoes}) == 10
    return ann, echoes


def _ms(msg: Message) -> float:
    return datetime.fromisoformat(msg.tags["time"]).timestamp() * 1000


def test_every_subcommand_and_reference_type(talk: tuple[IrcClient, list[Message]]) -> None:
    ann, echo = talk
    mid = [m.tags["msgid"] for m in echo]
    at = [m.tags["time"] for m in echo]
    want = [f"m{i}" for i in range(10)]
    head, lines = ask(ann, "CHATHISTORY LATEST #talk * 100")
    assert head == ["chathistory", "#talk"] and texts(lines) == want
    assert [m.tags["msgid"] for m in lines] == mid and [m.tags["time"] for m in lines] == at
    assert all(m.source and m.source.startswith("ann!") for m in lines)
    assert texts(ask(ann, "CHATHISTORY LATEST #talk * 3")[1]) == want[-3:]
    for ref in (f"msgid={mid[4]}", f"timestamp={at[4]}"):
        assert texts(ask(ann, f"CHATHISTORY LATEST #talk {ref} 100")[1]) == want[5:]
        assert texts(ask(ann, f"CHATHISTORY AFTER #talk {ref} 2")[1]) == want[5:7]
    for ref in (f"msgid={mid[6]}", f"timestamp={at[6]}"):
        assert texts(ask(ann, f"CHATHISTORY BEFORE #talk {ref} 100")[1]) == want[:6]
        assert texts(ask(ann, f"CHATHISTORY BEFORE #talk {ref} 2")[1]) == want[4:6]
    assert texts(ask(ann, f"CHATHISTORY AROUND #talk msgid={mid[7]} 3")[1]) == want[6:9]
    assert texts(ask(ann, f"CHATHISTORY AROUND #talk msgid={mid[7]} 1")[1]) == ["m7"]
    for a, b in ((f"msgid={mid[0]}", f"msgid={mid[9]}"),
                 (f"timestamp={at[0]}", f"timestamp={at[9]}"),
                 (f"msgid={mid[0]}", f"timestamp={at[9]}")):
        assert texts(ask(ann, f"CHATHISTORY BETWEEN #talk {a} {b} 100")[1]) == want[1:9]
        assert texts(ask(ann, f"CHATHISTORY BETWEEN #talk {a} {b} 3")[1]) == want[1:4]
        assert texts(ask(ann, f"CHATHISTORY BETWEEN #talk {b} {a} 3")[1]) == want[6:9]


def test_bad_requests_get_standard_replies(talk: tuple[IrcClient, list[Message]]) -> None:
    ann, _ = talk
    assert fail(ann, "CHATHISTORY SOMETIME #talk * 10").params[1] == "UNKNOWN_COMMAND"
    assert fail(ann, "CHATHISTORY LATEST #talk").params[1] == "NEED_MORE_PARAMS"
    for bad in ("* 0", "* -1", "* ten", "yesterday 10", "timestamp=noon 10",
                "timestamp=2026-01-01T00:00:00 10", "msgid=nosuchid 10"):
        got = fail(ann, f"CHATHISTORY LATEST #talk {bad}")
        assert got.params[1] == "INVALID_PARAMS", bad
    assert fail(ann, "CHATHISTORY BEFORE #talk * 10").params[1] == "INVALID_PARAMS"
    # a huge limit is cut to the CHATHISTORY ISUPPORT value, not refused
    assert len(ask(ann, "CHATHISTORY LATEST #talk * 99999999")[1]) == 10
    assert not any(m.command == "ERROR" for m in ann.sync())


def test_a_room_s_history_is_for_its_members_only(server: RunningServer) -> None:
    """+s or not, a non-member reads nothing of a room, through any subcommand or TARGETS,
    and a member who left reads nothing more of it."""
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    eve = server.client().register("eve", caps=HISTORY_CAPS)
    ann.join("#secret")
    ann.send("MODE #secret +s")
    ann.send("PRIVMSG #secret :the plan")
    plan = ann.expect("PRIVMSG", "#secret")
    ann.join("#open")
    ann.send("PRIVMSG #open :hello all")
    ann.expect("PRIVMSG", "#open")
    for room in ("#secret", "#open", "#never-existed"):
        for sub in ("LATEST {r} * 10", f"BEFORE {{r}} msgid={plan.tags['msgid']} 10",
                    f"AROUND {{r}} timestamp={plan.tags['time']} 10"):
            got = fail(eve, "CHATHISTORY " + sub.format(r=room))
            assert list(got.params[1:4]) == ["INVALID_TARGET", sub.split()[0], room]
    _, listed = ask(eve, "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z "
                         "timestamp=2262-01-01T00:00:00.000Z 10")
    assert listed == []
    _, listed = ask(ann, "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z "
                         "timestamp=2262-01-01T00:00:00.000Z 10")
    assert [m.params[1] for m in listed] == ["#secret", "#open"]
    assert listed[0].params[2] == plan.tags["time"]
    ann.send("PART #secret")
    assert fail(ann, "CHATHISTORY LATEST #secret * 10").params[1] == "INVALID_TARGET"


def test_private_history_belongs_to_its_two_accounts(server: RunningServer) -> None:
    for name in ("alice", "bob", "carol"):
        add_account(server.settings, name, PW)
    alice = logged_in(server, "alice", "alice", PW, caps=HISTORY_CAPS)
    bob = logged_in(server, "bob", "bob", PW, caps=HISTORY_CAPS)
    alice.send("PRIVMSG bob :just between us")
    bob.expect("PRIVMSG", "bob")
    bob.send("PRIVMSG alice :indeed")
    alice.expect("PRIVMSG", "alice")
    pair = ["just between us", "indeed"]
    assert texts(ask(alice, "CHATHISTORY LATEST bob * 10")[1]) == pair
    assert texts(ask(bob, "CHATHISTORY LATEST ALICE * 10")[1]) == pair
    carol = logged_in(server, "carol", "carol", PW, caps=HISTORY_CAPS)
    assert ask(carol, "CHATHISTORY LATEST alice * 10")[1] == []
    assert ask(carol, "CHATHISTORY LATEST bob * 10")[1] == []
    # bob gone: alice still reads their conversation under his name
    bob.send("QUIT")
    bob.wait_closed()
    assert texts(ask(alice, "CHATHISTORY LATEST bob * 10")[1]) == pair
    # and bob, back on another connection, reads it too
    bob = logged_in(server, "bob", "bob", PW, caps=HISTORY_CAPS)
    assert texts(ask(bob, "CHATHISTORY LATEST alice * 10")[1]) == pair


def test_a_guest_s_private_history_ends_with_its_connection(server: RunningServer) -> None:
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    guest = server.client().register("gus", caps=HISTORY_CAPS)
    ann.send("PRIVMSG gus :for this gus only")
    guest.expect("PRIVMSG", "gus")
    assert texts(ask(guest, "CHATHISTORY LATEST ann * 10")[1]) == ["for this gus only"]
    guest.send("QUIT")
    guest.wait_closed()
    impostor = server.client().register("gus", caps=HISTORY_CAPS)
    assert ask(impostor, "CHATHISTORY LATEST ann * 10")[1] == []


def test_event_playback_only_for_clients_that_ask(server: RunningServer) -> None:
    ann = server.client().register("ann", caps=(*HISTORY_CAPS, "draft/event-playback"))
    ann.join("#ev")
    ann.send("TOPIC #ev :agenda")
    ann.expect("TOPIC")
    ann.send("PRIVMSG #ev :item one")
    ann.expect("PRIVMSG")
    ann.send("@+draft/react=ok TAGMSG #ev")
    ann.expect("TAGMSG")
    ann.send("@+typing=active TAGMSG #ev")  # delivered, but not worth keeping
    ann.expect("TAGMSG")
    _, lines = ask(ann, "CHATHISTORY LATEST #ev * 10")
    assert [m.command for m in lines] == ["JOIN", "TOPIC", "PRIVMSG", "TAGMSG"]
    assert lines[3].tags["+draft/react"] == "ok"
    bob = server.client().register("bob", caps=HISTORY_CAPS).join("#ev")
    assert [m.command for m in ask(bob, "CHATHISTORY LATEST #ev * 10")[1]] == ["PRIVMSG"]


def test_invite_only_rooms_show_members_only_what_came_after_they_joined(
        server: RunningServer) -> None:
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    ann.join("#inner")
    ann.send("MODE #inner +i")
    ann.send("PRIVMSG #inner :before bob")
    ann.expect("PRIVMSG", "#inner")
    bob = server.client().register("bob", caps=HISTORY_CAPS)
    ann.send("INVITE bob #inner")
    bob.expect("INVITE")
    bob.join("#inner")
    ann.send("PRIVMSG #inner :after bob")
    bob.expect("PRIVMSG", "#inner")
    assert texts(ask(bob, "CHATHISTORY LATEST #inner * 10")[1]) == ["after bob"]
    assert texts(ask(ann, "CHATHISTORY LATEST #inner * 10")[1]) == ["before bob", "after bob"]


def test_a_client_without_chathistory_gets_the_room_s_past_on_join(
        start_server: Callable[..., RunningServer]) -> None:
    server = start_server(history_replay_lines=3)
    ann = server.client().register("ann", caps=("echo-message",))
    ann.join("#replay")
    for i in range(5):
        ann.send(f"PRIVMSG #replay :old {i}")
        ann.expect("PRIVMSG")
    late = server.client().register("late", caps=("batch", "server-time"))
    late.send("JOIN #replay")
    late.expect("366")
    notice = late.expect("NOTICE", "#replay")
    assert "2 earlier messages not shown" in notice.params[1]
    start = late.expect("BATCH")
    assert list(start.params[1:]) == ["chathistory", "#replay"]
    got = [late.expect("PRIVMSG") for _ in range(3)]
    assert texts(got) == ["old 2", "old 3", "old 4"] and all("time" in m.tags for m in got)
    late.expect("BATCH", "-" + start.params[0][1:])
    # irssi-style: no batch, no tags; the lines still come, after the NAMES
    plain = server.client().register("plain")
    plain.join("#replay")
    assert texts([plain.expect("PRIVMSG") for _ in range(3)]) == ["old 2", "old 3", "old 4"]
    ann.send("PRIVMSG #replay :live")
    assert plain.expect("PRIVMSG").params[1] == "live"  # nothing replayed twice
    # a client with CHATHISTORY asks for itself: nothing is pushed to it
    asker = server.client().register("asker", caps=HISTORY_CAPS).join("#replay")
    # a replay would be read before this request (one reader, in order), so sent before it
    _, asked = ask(asker, "CHATHISTORY LATEST #replay * 1")
    assert texts(asked) == ["live"]
    assert [m for m in asker.log if m.command == "PRIVMSG"] == asked


def test_an_account_back_after_a_while_gets_what_it_missed(server: RunningServer) -> None:
    add_account(server.settings, "bob", PW)
    ann = server.client().register("ann", caps=("echo-message",))
    ann.join("#team")
    ann.send("PRIVMSG #team :seen by bob")
    ann.expect("PRIVMSG")
    bob = logged_in(server, "bob", "bob", PW)
    bob.join("#team")
    assert texts([bob.expect("PRIVMSG")]) == ["seen by bob"]
    bob.send("QUIT")
    bob.wait_closed()
    ann.send("PRIVMSG #team :while bob was away")
    ann.expect("PRIVMSG")
    bob = logged_in(server, "bob", "bob", PW)
    bob.join("#team")
    assert bob.expect("PRIVMSG").params[1] == "while bob was away"
    ann.send("PRIVMSG #team :welcome back")
    assert bob.expect("PRIVMSG").params[1] == "welcome back"  # nothing older came after


def test_history_survives_a_restart(start_server: Callable[..., RunningServer]) -> None:
    first = start_server()
    add_account(first.settings, "ann", PW)
    ann = logged_in(first, "ann", "ann", PW, caps=HISTORY_CAPS)
    ann.join("#general")  # registered (the default room): its history outlives the process
    ann.send("PRIVMSG #general :remember me")
    ann.expect("PRIVMSG", "#general")
    ann.send("PRIVMSG ann :a note to self")
    ann.expect("PRIVMSG", "ann")
    first.stop()
    second = start_server()
    ann = logged_in(second, "ann", "ann", PW, caps=HISTORY_CAPS)
    ann.join("#general")
    assert "remember me" in texts(ask(ann, "CHATHISTORY LATEST #general * 10")[1])
    assert texts(ask(ann, "CHATHISTORY LATEST ann * 10")[1]) == ["a note to self"]


def test_a_device_back_online_gets_the_private_messages_it_missed(
        server: RunningServer) -> None:
    """bob's laptop stayed on while his phone was off: the phone (no CHATHISTORY) is given
    the private conversation it missed when it connects again."""
    for name in ("alice", "bob"):
        add_account(server.settings, name, PW)
    phone = logged_in(server, "bobphone", "bob", PW)
    phone.send("QUIT")
    phone.wait_closed()
    laptop = logged_in(server, "bob", "bob", PW)
    alice = logged_in(server, "alice", "alice", PW)
    alice.send("PRIVMSG bob :are you there?")
    laptop.expect("PRIVMSG", "bob")
    laptop.send("PRIVMSG alice :on my laptop, yes")
    alice.expect("PRIVMSG", "alice")
    phone = logged_in(server, "bobphone", "bob", PW, caps=("batch", "server-time"))
    start = phone.expect("BATCH")
    assert list(start.params[1:]) == ["chathistory", "alice"]
    got = [phone.expect("PRIVMSG") for _ in range(2)]
    assert texts(got) == ["are you there?", "on my laptop, yes"]
    phone.expect("BATCH", "-" + start.params[0][1:])


def test_history_replies_are_charged_to_the_flood_budget_by_size(
        start_server: Callable[..., RunningServer]) -> None:
    """Nine messages back cost more than one line: eight requests for them are metered
    (fakelag) far longer than the same requests for a room with little history; waiting
    for the store meanwhile is the server's doing, so neither client is cut off."""
    server = start_server(flood_rate=4.0, flood_burst=10, flood_reply_lines=4,
                          flood_max_backlog=3)
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    ann.join("#busy")
    ann.join("#quiet")
    for i in range(9):  # within ann's own burst, one at a time
        ann.send(f"PRIVMSG #busy :n{i}")
        ann.expect("PRIVMSG")

    def eight_requests(nick: str, room: str) -> float:
        client = server.client().register(nick, caps=HISTORY_CAPS).join(room)
        started = time.monotonic()
        client.send_raw(f"CHATHISTORY LATEST {room} * 100\r\n".encode() * 8)
        for _ in range(8):
            client.expect("BATCH", where=lambda m: m.params[0].startswith("-"), timeout=30)
        elapsed = time.monotonic() - started
        assert not any(m.command == "ERROR" for m in client.sync())
        return elapsed

    quiet = eight_requests("quiet", "#quiet")  # 8 tokens (+6 to register): ~1 s
    busy = eight_requests("busy", "#busy")  # ~30 tokens (+6): ~6 s at 4 per second
    assert busy > quiet + 2.5, (quiet, busy)
