"""IRCv3 ``labeled-response`` and ``batch`` over real TLS.

Each labeled command must get exactly one answer (``ACK``, one labeled line, or one
``labeled-response`` batch), and nothing that was not its reply may carry its label or
sit in its batch, even when another client's message arrives while the command awaits a
database commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.protocol.message import Message

from conftest import IrcClient, RunningServer, add_account, logged_in

StartServer = Callable[..., RunningServer]
CAPS = ("batch", "labeled-response", "echo-message", "message-tags", "server-time")
PW = "labeled response pw 1"


def answers(msgs: list[Message]) -> dict[str, list[Message]]:
    """Group what arrived by label: a batch's whole contents under its label, a lone
    labeled line or ACK under its own. Fails on a batch that is left open or reused."""
    out: dict[str, list[Message]] = {}
    open_batches: dict[str, str] = {}  # batch id -> label
    others: set[str] = set()  # batches of another kind (a history replay on JOIN)
    for m in msgs:
        if m.command == "BATCH" and m.params[0].startswith("+"):
            ref = m.params[0][1:]
            assert ref not in open_batches and ref not in others, f"batch {ref} opened twice"
            if m.param(1) == "labeled-response":
                label = m.tags["label"]
                assert label not in out, f"label {label} answered twice"
                out[label] = []
                open_batches[ref] = label
            else:
                others.add(ref)
            continue
        if m.command == "BATCH" and m.params[0].startswith("-"):
            ref = m.params[0][1:]
            if ref in others:
                others.discard(ref)
            else:
                open_batches.pop(ref)
            continue
        ref = m.tags.get("batch")
        if ref in others:
            continue
        if ref in open_batches:
            assert "label" not in m.tags
            out[open_batches[ref]].append(m)
        elif "label" in m.tags:
            label = m.tags["label"]
            assert label not in out, f"label {label} answered twice"
            out[label] = [m]
    assert not open_batches, f"batches never closed: {open_batches}"
    return out


def exchange(c: IrcClient, line: str) -> dict[str, list[Message]]:
    """Send ``line``, wait for everything it caused, and group it with :func:`answers`."""
    start = len(c.log)
    c.send(line)
    c.sync()
    return answers(c.log[start:])


def labeled(server: RunningServer, nick: str, caps: tuple[str, ...] = CAPS) -> IrcClient:
    return server.client().register(nick, caps=caps)


def test_a_lone_reply_carries_the_label_and_no_reply_gets_ack(server: RunningServer) -> None:
    alice = labeled(server, "alice")
    bob = labeled(server, "bob", caps=("batch", "labeled-response", "message-tags"))
    alice.send("@label=p1 PING token")
    pong = alice.expect("PONG")
    assert pong.tags.get("label") == "p1" and "batch" not in pong.tags
    # echo-message: the echo is the reply; the recipient never sees the label.
    alice.send("@label=m1 PRIVMSG bob :hi")
    assert alice.expect("PRIVMSG", "bob").tags["label"] == "m1"
    got = bob.expect("PRIVMSG", "bob")
    assert "label" not in got.tags and got.tags["msgid"]
    # Without echo-message a message has no reply at all: ACK.
    bob.send("@label=m2 PRIVMSG alice :back")
    ack = bob.expect("ACK")
    assert ack.tags == {"label": "m2"} and ack.source == server.settings.server_name
    assert alice.expect("PRIVMSG", "alice").tags.get("label") is None
    # An error is a reply too, even for a command name the grammar does not allow.
    alice.send("@label=e1 NO_SUCH_COMMAND")
    unknown = alice.expect("421")
    assert unknown.tags["label"] == "e1" and unknown.params[1] == "NO_SUCH_COMMAND"


def test_a_message_to_oneself_is_delivered_and_echoed_only_the_echo_labeled(
    server: RunningServer,
) -> None:
    alice = labeled(server, "alice")
    start = len(alice.log)
    alice.send("@label=s1 PRIVMSG alice :note to self")
    alice.sync()
    got = [m for m in alice.log[start:] if m.command != "PONG"]
    assert [m.command for m in got] == ["PRIVMSG", "PRIVMSG"]
    assert [m.tags.get("label") for m in got].count("s1") == 1
    assert not [m for m in got if "batch" in m.tags]
    # Without echo-message it arrives once, and the command itself is ACKed.
    quiet = labeled(server, "quiet", caps=("batch", "labeled-response"))
    start = len(quiet.log)
    quiet.send("@label=s2 PRIVMSG quiet :to me")
    quiet.sync()
    got = [m for m in quiet.log[start:] if m.command != "PONG"]
    assert sorted(m.command for m in got) == ["ACK", "PRIVMSG"]
    assert next(m for m in got if m.command == "PRIVMSG").tags == {}


def test_a_multi_line_reply_is_one_labeled_response_batch(server: RunningServer) -> None:
    alice = labeled(server, "alice")
    got = exchange(alice, "@label=j1 JOIN #room")["j1"]
    assert [m.command for m in got] == ["JOIN", "353", "366"]
    assert "time" in got[0].tags  # the reply's own tags are kept
    got = exchange(alice, "@label=w1 WHO #room")["w1"]
    assert [m.command for m in got] == ["352", "315"]


def test_without_batch_or_the_cap_labels_are_ignored(server: RunningServer) -> None:
    no_batch = labeled(server, "nobatch", caps=("labeled-response", "echo-message"))
    plain = server.client("plain")
    for c in (no_batch, plain):
        c.send("@label=x PING one")
        assert c.expect("PONG").tags == {}
        c.send("@label=y PRIVMSG plain :hello")
        assert not [m for m in c.sync() if m.command == "ACK" or "label" in m.tags]


def test_an_over_long_label_is_ignored(server: RunningServer) -> None:
    alice = labeled(server, "alice")
    alice.send(f"@label={'a' * 65} PING long")
    assert "label" not in alice.expect("PONG").tags
    alice.send(f"@label={'a' * 64} PING fits")
    assert alice.expect("PONG").tags["label"] == "a" * 64


def test_traffic_arriving_while_a_labeled_command_awaits_its_commit_is_not_labeled(
    start_server: Callable[..., RunningServer],
) -> None:
    """The combination: alice's TOPIC on a registered room waits for the database (held
    locked by another writer, as the admin CLI would); meanwhile bob talks to her. Bob's
    message must reach her as it is, and only the TOPIC may carry her label. (Without the
    message store: with it, bob's message would wait for the same lock.)"""
    server = start_server(history=False)
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW)
    olga.send("CAP REQ :" + " ".join(CAPS))
    olga.expect("CAP", where=lambda m: m.param(1) == "ACK")
    olga.join("#team")
    olga.send("PRIVMSG ChanServ :REGISTER #team")
    olga.expect("NOTICE", "olga", where=lambda m: "registered" in m.params[-1])
    bob = server.client("bob").join("#team")
    olga.sync()
    blocker = sqlite3.connect(server.settings.db_file, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the server's write now waits for this lock
        olga.send("@label=t1 TOPIC #team :Awaited topic")
        bob.send("PRIVMSG olga :while you wait")
        during = olga.expect("PRIVMSG", "olga")
        assert "label" not in during.tags and "batch" not in during.tags
        bob.send("PRIVMSG #team :in the room too")
        during = olga.expect("PRIVMSG", "#team")
        assert "label" not in during.tags and "batch" not in during.tags
        assert not [m for m in olga.pending if m.command in ("TOPIC", "ACK", "BATCH")]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    topic = olga.expect("TOPIC", "#team")
    assert topic.tags["label"] == "t1" and topic.params[-1] == "Awaited topic"
    assert bob.expect("TOPIC", "#team").tags == {}
    # The next command is answered normally: the label did not stay attached to her.
    olga.send("PRIVMSG bob :after")
    assert "label" not in olga.expect("PRIVMSG", "bob").tags


COMMANDS = [
    "PING x", "PRIVMSG #lab :hi", "PRIVMSG nobody :hi", "NOTICE #lab :hi", "JOIN #lab",
    "PART #lab", "NAMES #lab", "WHO #lab", "MODE #lab", "TOPIC #lab", "TOPIC #lab :t",
    "LIST", "WHOIS prop", "AWAY :gone", "AWAY", "MOTD", "LUSERS", "NICK prop", "FROB",
    "TAGMSG #lab", "PRIVMSG prop :self", "MONITOR + someone", "ISON prop",
]


def test_pipelined_labeled_commands_each_get_exactly_one_answer_in_order(
    server: RunningServer,
) -> None:
    """Any sequence, sent at once: every label is answered exactly once, in the order
    sent, every batch is closed, and no unlabeled line sits inside a labeled batch."""
    server.client("keeper").join("#lab")  # keeps the room, so no example creates it

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=12))
    def run(commands: list[str]) -> None:
        c = labeled(server, "prop")
        try:
            c.join("#lab")
            start = len(c.log)
            for i, line in enumerate(commands):
                c.send(f"@label=L{i} {line}")
            c.send("@label=end PING end")
            c.expect("PONG", where=lambda m: m.tags.get("label") == "end")
            got = c.log[start:]
            answered = answers(got)
            order = [m.tags["label"] for m in got if "label" in m.tags]
            assert order == [f"L{i}" for i in range(len(commands))] + ["end"]
            assert set(answered) == set(order)
        finally:
            c.send("QUIT")
            c.wait_closed()

    run()
