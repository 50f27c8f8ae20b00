"""Forgetting: retention with an injected clock in a running server, a room's own
retention set through ChanServ, and ``chaton history export|purge`` beside the server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from test_chathistory import HISTORY_CAPS, PW, ask, texts

from chaton.store import Store

from conftest import RunningServer, add_account, logged_in, run_chaton

DAY = 86400.0
CAPS = (*HISTORY_CAPS, "draft/search")


def test_messages_leave_at_their_retention_and_a_room_may_set_its_own(
        start_server: Callable[..., RunningServer]) -> None:
    server = start_server(history_retention="30d", history_purge_chunk=2)
    add_account(server.settings, "alice", PW)
    alice = logged_in(server, "alice", "alice", PW, caps=CAPS)
    alice.join("#short")
    alice.send("PRIVMSG ChanServ :REGISTER #short")
    alice.expect("NOTICE", where=lambda m: "registered" in m.params[-1])
    alice.send("PRIVMSG ChanServ :SET #short RETENTION 1d")
    assert "for 1d" in alice.expect("NOTICE", where=lambda m: "keeps" in m.params[-1]).params[1]
    alice.join("#long")
    for room, text in (("#short", "short-lived"), ("#long", "kept a month")):
        for i in range(3):
            alice.send(f"PRIVMSG {room} :{text} {i}")
            alice.expect("PRIVMSG", room)
    retention = server.server.retention
    assert retention is not None

    def purge_at(offset: float) -> int:
        retention.clock = lambda: time.time() + offset
        return int(server.run(retention.purge_once()))

    assert purge_at(0) == 0  # nothing is old yet
    assert purge_at(2 * DAY) >= 3  # #short's messages (and its JOIN) go; chunks of 2
    assert texts(ask(alice, "CHATHISTORY LATEST #short * 10")[1]) == []
    assert texts(ask(alice, "CHATHISTORY LATEST #long * 10")[1]) == [
        f"kept a month {i}" for i in range(3)]
    assert ask(alice, "SEARCH text=short")[1] == []  # gone from the index too
    assert purge_at(31 * DAY) >= 3
    assert texts(ask(alice, "CHATHISTORY LATEST #long * 10")[1]) == []
    # 0 keeps a room's history forever, whatever the server's setting
    alice.send("PRIVMSG ChanServ :SET #short RETENTION 0")
    alice.expect("NOTICE", where=lambda m: "forever" in m.params[-1])
    alice.send("PRIVMSG #short :forever")
    alice.expect("PRIVMSG", "#short")
    purge_at(3650 * DAY)
    assert texts(ask(alice, "CHATHISTORY LATEST #short * 10")[1]) == ["forever"]
    alice.send("PRIVMSG ChanServ :SET #short RETENTION soon")
    assert "not a duration" in alice.expect("NOTICE").params[1]


def test_export_and_purge_from_the_cli_while_the_server_runs(server: RunningServer) -> None:
    ann = server.client().register("ann", caps=HISTORY_CAPS)
    ann.join("#general")
    for i in range(3):
        ann.send(f"PRIVMSG #general :line {i}")
        ann.expect("PRIVMSG", "#general")
    data = ["--data-dir", str(server.settings.data_dir)]
    done = run_chaton("history", "export", "--room", "#general", *data)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    said = [r for r in rows if r["command"] == "PRIVMSG"]
    assert [r["params"] for r in said] == [[f"line {i}"] for i in range(3)]
    assert all(r["conversation"] == "#general" and r["from"].startswith("ann!") for r in said)
    assert "exported" in done.stderr

    refused = run_chaton("history", "purge", "--before", "2262-01-01", *data)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    bad = run_chaton("history", "purge", "--before", "someday", "--yes", *data)
    assert bad.returncode != 0 and "neither a duration" in bad.stderr
    done = run_chaton("history", "purge", "--before", "2262-01-01", "--room", "#general",
                      "--yes", *data)
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout
    assert ask(ann, "CHATHISTORY LATEST #general * 10")[1] == []
    ann.send("PRIVMSG #general :after the purge")  # the server writes on as before
    ann.expect("PRIVMSG", "#general")
    assert texts(ask(ann, "CHATHISTORY LATEST #general * 10")[1]) == ["after the purge"]
    with Store(server.settings.db_file) as store:
        assert [e.action for e in store.audit_since() if e.action == "history-purge"] == [
            "history-purge"]
