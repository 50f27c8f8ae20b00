"""REDACT over real TLS: who may take a message back, and that it is gone everywhere."""

from __future__ import annotations

from test_chathistory import HISTORY_CAPS, PW, ask, texts

from chaton.store import Store

from conftest import IrcClient, RunningServer, add_account, logged_in

CAPS = (*HISTORY_CAPS, "draft/search", "draft/message-redaction")


def say(client: IrcClient, target: str, text: str) -> str:
    client.send(f"PRIVMSG {target} :{text}")
    echo = client.expect("PRIVMSG", target, where=lambda m: m.params[-1] == text)
    return echo.tags["msgid"]


def refused(client: IrcClient, line: str) -> str:
    client.send(line)
    return client.expect("FAIL", "REDACT").params[1]


def test_redaction_rules_and_what_is_left_afterwards(server: RunningServer) -> None:
    for name in ("alice", "bob"):
        add_account(server.settings, name, PW)
    alice = logged_in(server, "alice", "alice", PW, caps=CAPS)  # first in: the operator
    alice.join("#room")
    bob = logged_in(server, "bob", "bob", PW, caps=CAPS)
    bob.join("#room")
    old = server.client().register("oldclient").join("#room")  # no capability
    guest = server.client().register("guest", caps=CAPS).join("#room")
    mine = say(bob, "#room", "oops, the wifi password is hunter2")
    alice.expect("PRIVMSG", "#room")
    theirs = say(alice, "#room", "operator words")
    by_guest = say(guest, "#room", "guest words")

    assert refused(bob, f"REDACT #room {theirs}") == "REDACT_FORBIDDEN"
    assert refused(guest, f"REDACT #room {by_guest}") == "REDACT_FORBIDDEN"  # no account
    assert refused(bob, "REDACT #room nosuchmsgid") == "UNKNOWN_MSGID"
    assert refused(bob, f"REDACT #elsewhere {mine}") == "INVALID_TARGET"

    bob.send(f"REDACT #room {mine} :pasted a secret")
    for member in (alice, bob, guest):
        got = member.expect("REDACT")
        assert got.params == ("#room", mine, "pasted a secret")
    assert not [m for m in old.sync() if m.command == "REDACT"]
    # an operator may take back anyone's
    alice.send(f"REDACT #room {by_guest}")
    assert alice.expect(("REDACT", "FAIL")).params == ("#room", by_guest)
    assert bob.expect("REDACT").params == ("#room", by_guest)

    left = texts(ask(alice, "CHATHISTORY LATEST #room * 10")[1])
    assert left == ["operator words"]
    _, found = ask(alice, "SEARCH text=hunter2")
    assert found == []
    with Store(server.settings.db_file) as store:
        lines = [e for e in store.audit_since() if e.action == "redact"]
    assert [(e.actor, e.target, e.reason) for e in lines] == [
        ("bob", f"#room {mine}", "pasted a secret"), ("alice", f"#room {by_guest}", "")]
    assert all("hunter2" not in f"{e.target} {e.reason}" for e in lines)


def test_a_private_message_can_be_taken_back_by_its_author_only(server: RunningServer) -> None:
    for name in ("alice", "bob"):
        add_account(server.settings, name, PW)
    alice = logged_in(server, "alice", "alice", PW, caps=CAPS)
    bob = logged_in(server, "bob", "bob", PW, caps=CAPS)
    sent = say(alice, "bob", "wrong window")
    bob.expect("PRIVMSG", "bob")
    assert refused(bob, f"REDACT alice {sent}") == "REDACT_FORBIDDEN"
    alice.send(f"REDACT bob {sent}")
    assert alice.expect("REDACT").params == ("bob", sent)
    assert bob.expect("REDACT").params == ("alice", sent)
    assert ask(bob, "CHATHISTORY LATEST alice * 10")[1] == []
