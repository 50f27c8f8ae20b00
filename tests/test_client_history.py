"""The client's team memory: history on join, /history, gap fill, /search and showing each
message once -- the pure parts (history.py, the formats) and the session against a server
played line by line over loopback (as in test_client_session.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_client_session import ALL_CAPS, FakeUI, Peer, connected, run_async

from chaton.client.commands import Context, interpret
from chaton.client.history import (
    MAX_BATCH_LINES,
    Memory,
    Purpose,
    Recall,
    SearchQuery,
    search_attributes,
    utc_stamp,
)
from chaton.client.ui import format_history
from chaton.protocol.message import Message, parse

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = "2024-05-01T09:14:00.000Z"
T2 = "2024-05-01T09:20:30.250Z"
T3 = "2024-05-01T11:59:00.000Z"


def line(stamp: str, msgid: str, text: str, *, who: str = "bob", target: str = "#general",
         batch: str = "h1", command: str = "PRIVMSG") -> str:
    return f"@batch={batch};time={stamp};msgid={msgid} :{who}!u@h {command} {target} :{text}"


def recall(*, chathistory: bool = True, search: bool = True) -> Recall:
    r = Recall(Memory())
    r.chathistory = chathistory
    r.search = search
    return r


def feed(r: Recall, *raw: str, me: str = "alice") -> list[str]:
    """Give ``r`` server lines as the session would; return what it says to show."""
    shown: list[str] = []
    for text in raw:
        msg = parse(text)
        if r.take(msg):
            continue
        if msg.command == "BATCH":
            out = r.on_batch(msg, me, tz=UTC, now=NOW)
            assert out is not None, text
            shown += out.show
        elif r.live(msg, me):
            shown.append(f"live {msg.param(1)}")
    return shown


# --- /search: one parameter, escaped like a tag value ----------------------------------------
def test_search_attributes_escape_what_would_start_another_key_or_param() -> None:
    query = SearchQuery("a;b c\\d\r\ne=f", "#ops", "bob", 20)
    attrs = search_attributes(query)
    assert attrs == "text=a\\:b\\sc\\\\d\\r\\ne=f;in=#ops;from=bob;limit=20"
    assert " " not in attrs
    # What a server's tag parser makes of each value is exactly what was typed.
    values = dict(pair.split("=", 1) for pair in attrs.split(";"))
    assert parse(f"@x={values['text']} PING").tags["x"] == "a;b c\\d\r\ne=f"


def test_search_command_takes_trailing_filters_and_defaults() -> None:
    ctx = Context("alice", "#general", ("#general",))
    assert interpret("/search deploy plan in #ops from bob", ctx).search == SearchQuery(
        "deploy plan", "#ops", "bob")
    assert interpret("/search from bob in #ops", ctx).search == SearchQuery("from bob", "#ops")
    assert interpret("/search x from bob", ctx).search == SearchQuery("x", None, "bob")
    assert interpret("/search in progress", ctx).search == SearchQuery("in progress")
    assert "usage: /search" in interpret("/search", ctx).show[0]
    assert interpret("/search x", ctx).send == ()  # the session sends it, if it can


def test_search_message_and_results_are_shown_as_a_list() -> None:
    r = recall()
    msg = r.find(SearchQuery("deploy at noon", "#ops"))
    assert msg == Message("SEARCH", ("text=deploy\\sat\\snoon;in=#ops;limit=50",))
    shown = feed(
        r,
        ":srv BATCH +s1 draft/search",
        line("2024-04-30T08:00:00.000Z", "m1", "deploy at noon?", target="#ops", batch="s1"),
        line(T1, "m2", "deploy at noon, ok", who="alice", target="bob", batch="s1"),
        ":srv BATCH -s1",
    )
    assert shown == [
        '-!- search "deploy at noon" in #ops: 2 results',
        "[found 2024-04-30 08:00] #ops <bob> deploy at noon?",
        "[found 09:14] -> *bob* deploy at noon, ok",
    ]
    # Results are answers, not the conversation: they may be found again, and still shown.
    r.find(SearchQuery("noon"))
    again = feed(r, ":srv BATCH +s2 draft/search",
                 line(T1, "m2", "deploy at noon, ok", who="alice", target="bob", batch="s2"),
                 ":srv BATCH -s2")
    assert again[1] == "[found 09:14] -> *bob* deploy at noon, ok"
    r.find(SearchQuery("nothing"))
    assert feed(r, ":srv BATCH +s3 draft/search", ":srv BATCH -s3") == [
        '-!- search "nothing": nothing found']


# --- history lines --------------------------------------------------------------------------
def test_history_lines_say_so_and_carry_their_own_time() -> None:
    today = parse(f"@time={T1} :bob!u@h PRIVMSG #general :morning")
    other_day = parse("@time=2024-04-29T17:03:00.000Z :bob!u@h PRIVMSG alice :psst")
    untimed = parse(":bob!u@h NOTICE #general :no clock")
    assert format_history(today, "alice", tz=UTC, now=NOW) == (
        "[history 09:14] #general <bob> morning")
    assert format_history(other_day, "alice", tz=UTC, now=NOW) == (
        "[history 2024-04-29 17:03] *bob* psst")
    assert format_history(untimed, "alice", tz=UTC, now=NOW) == (
        "[history] #general -bob- no clock")


def test_join_history_is_latest_capped_by_isupport_and_shown_when_the_batch_ends() -> None:
    r = recall()
    assert r.join_history("#general", gap=False) == Message(
        "CHATHISTORY", ("LATEST", "#general", "*", "50"))
    r.max_limit = 20
    assert r.join_history("#dev", gap=False) == Message(
        "CHATHISTORY", ("LATEST", "#dev", "*", "20"))
    shown = feed(
        r,
        ":srv BATCH +h1 chathistory #general",
        line(T1, "m1", "morning"),
        line(T2, "m2", "alice: are you there?"),  # names us: no highlight, not live
        ":srv BATCH -h1",
    )
    assert shown == [
        "[history 09:14] #general <bob> morning",
        "[history 09:20] #general <bob> alice: are you there?",
    ]
    # The same message arriving live (or in another batch) is not shown again.
    assert feed(r, f"@time={T2};msgid=m2 :bob!u@h PRIVMSG #general :alice: are you there?") == []
    assert feed(r, f"@time={T3};msgid=m3 :bob!u@h PRIVMSG #general :new") == ["live new"]
    assert r.memory.newest("#general") == T3
    assert r.memory.oldest("#GENERAL") == T1


def test_a_replay_nobody_asked_for_is_shown_as_history_too() -> None:
    r = recall(chathistory=False)  # a server that replays on JOIN without the capability
    shown = feed(r, ":srv BATCH +x chathistory #general", line(T1, "m1", "hi", batch="x"),
                 ":srv BATCH -x")
    assert shown == ["[history 09:14] #general <bob> hi"]


def test_other_batches_are_not_taken() -> None:
    r = recall()
    assert r.on_batch(parse(":srv BATCH +l1 labeled-response"), "alice") is None
    assert not r.take(parse("@batch=l1 :srv 401 alice bob :No such nick"))
    # a search answer nobody asked for is left alone as well
    assert r.on_batch(parse(":srv BATCH +s9 draft/search"), "alice") is None


def test_history_more_goes_before_the_oldest_shown_message() -> None:
    r = recall()
    assert r.more("#general", 10) == Message("CHATHISTORY", ("LATEST", "#general", "*", "10"))
    feed(r, ":srv BATCH +a chathistory #general", line(T2, "m2", "two", batch="a"),
         ":srv BATCH -a")
    # by msgid: exact even when several messages share a millisecond
    assert r.more("#general", 10) == Message(
        "CHATHISTORY", ("BEFORE", "#general", "msgid=m2", "10"))
    assert feed(r, ":srv BATCH +b chathistory #general", ":srv BATCH -b") == [
        "-!- #general: no earlier messages"]
    # a private conversation: the target is the peer
    assert r.more("bob", 5) == Message("CHATHISTORY", ("LATEST", "bob", "*", "5"))


def test_gap_after_a_reconnect_counts_the_new_messages_only() -> None:
    r = recall()
    feed(r, f"@time={T1};msgid=m1 :bob!u@h PRIVMSG #general :before")
    # from a millisecond before the newest seen: what shares its millisecond is not lost
    assert r.join_history("#general", gap=True) == Message(
        "CHATHISTORY", ("AFTER", "#general", "timestamp=2024-05-01T09:13:59.999Z", "100"))
    shown = feed(
        r,
        ":srv BATCH +g chathistory #general",
        line(T1, "m1", "before", batch="g"),  # already seen: neither shown nor counted
        line(T2, "m2", "while away", batch="g"),
        line(T2, "m3", "also", batch="g", command="NOTICE"),
        f"@batch=g;time={T2};msgid=j1 :carol!u@h JOIN #general",
        ":srv BATCH -g",
    )
    assert shown == [
        "-!- #general: \u2014 2 messages while you were away \u2014",
        "[history 09:20] #general <bob> while away",
        "[history 09:20] #general -bob- also",
        "[history 09:20] #general -- carol joined",
    ]
    r.join_history("#general", gap=True)
    assert feed(r, ":srv BATCH +g2 chathistory #general", ":srv BATCH -g2") == [
        "-!- #general: \u2014 no new messages while you were away \u2014"]


def test_targets_fill_private_conversations_that_started_while_away() -> None:
    r = recall()
    feed(r, f"@time={T1};msgid=m1 :bob!u@h PRIVMSG alice :old chat")
    ask = r.targets(NOW)
    assert ask == Message("CHATHISTORY", (
        "TARGETS", f"timestamp={T1}", f"timestamp={utc_stamp(NOW)}", "50"))
    batch = [
        ":srv BATCH +t draft/chathistory-targets",
        f"@batch=t :srv CHATHISTORY TARGETS #general {T2}",
        f"@batch=t :srv CHATHISTORY TARGETS bob {T2}",  # known: filled on its own
        f"@batch=t :srv CHATHISTORY TARGETS dave {T2}",
        ":srv BATCH -t",
    ]
    out = None
    for raw in batch:
        msg = parse(raw)
        if not r.take(msg):
            out = r.on_batch(msg, "alice", tz=UTC, now=NOW)
    assert out is not None
    assert out.send == [Message(
        "CHATHISTORY", ("AFTER", "dave", "timestamp=2024-05-01T09:13:59.999Z", "100"))]


def test_refusals_answer_the_oldest_request_of_their_kind() -> None:
    r = recall()
    r.join_history("#a", gap=False)
    r.find(SearchQuery("x"))
    refused = r.on_refusal("CHATHISTORY")
    assert refused is not None and refused.purpose is Purpose.JOIN
    assert r.on_refusal("CHATHISTORY") is None
    assert r.on_refusal("search") is not None


def test_hostile_timestamps_and_targets_are_never_sent_back() -> None:
    r = recall()
    feed(r, "@time=2024-05-01T09:14:00Z\\sEVIL;msgid=m1 :bob!u@h PRIVMSG #general :x")
    assert r.memory.newest("#general") is None
    assert r.gap("#general", "2024 EVIL") is None
    assert r.more(":evil", 5) is None
    assert r.join_history("#a b", gap=False) is None


def test_batches_are_bounded() -> None:
    r = recall()
    r.join_history("#general", gap=False)
    lines = [line(T1, f"m{i}", "flood") for i in range(MAX_BATCH_LINES + 50)]
    shown = feed(r, ":srv BATCH +h1 chathistory #general", *lines, ":srv BATCH -h1")
    assert len(shown) == MAX_BATCH_LINES


def test_memory_forgets_the_oldest_ids_first() -> None:
    memory = Memory(max_seen=2)
    assert memory.first_sight("a") and memory.first_sight("b")
    assert not memory.first_sight("a")
    assert memory.first_sight("c")  # "b" is forgotten now, "a" was refreshed
    assert memory.first_sight("b") and not memory.first_sight("c")


def test_history_command() -> None:
    ctx = Context("alice", "#general", ("#general", "#Dev"))
    assert interpret("/history", ctx).history == ("#general", 50)
    assert interpret("/history 10", ctx).history == ("#general", 10)
    assert interpret("/history bob 5", ctx).history == ("bob", 5)
    assert interpret("/history #dev", ctx).history == ("#Dev", 50)
    assert "usage: /history" in interpret("/history 0", ctx).show[0]
    assert "not in a room" in interpret("/history", Context("alice")).show[0]


# --- the session, against a server played line by line ----------------------------------------
HISTORY_CAPS = ALL_CAPS + " batch draft/chathistory draft/search"
HISTORY_REQ = (
    "CAP REQ :server-time message-tags echo-message sasl batch draft/chathistory draft/search")
HISTORY_ACK = (
    ":srv CAP alice ACK :server-time message-tags echo-message sasl batch draft/chathistory "
    "draft/search")


async def history_session(peer: Peer) -> None:
    await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
    peer.send(HISTORY_CAPS)
    await peer.expect(HISTORY_REQ)
    peer.send(HISTORY_ACK)
    await peer.expect("CAP END")
    peer.send(":srv 001 alice :Welcome", ":srv 005 alice CHATHISTORY=30 :are supported",
              ":srv 376 alice :End of MOTD")
    await peer.expect("JOIN #general")
    peer.send(f"@time={T1} :alice!u@h JOIN #general")
    await peer.expect("CHATHISTORY LATEST #general * 30")


async def sync(peer: Peer, token: str = "sync") -> None:
    """Everything sent before has been handled once the client answers this PING."""
    peer.send(f"PING :{token}")
    await peer.expect(f"PONG {token}")


@run_async
async def test_session_shows_join_history_marked_and_never_as_live() -> None:
    ui = FakeUI()
    async with connected(ui) as (session, peer, _task):
        await history_session(peer)
        peer.send(
            ":srv BATCH +h1 chathistory #general",
            line(T1, "m1", "morning"),
            line(T2, "m2", "x", who="eve", target="#general", command="PRIVMSG"),
            # a line that would change state if it were live: it must not
            f"@batch=h1;time={T2};msgid=n1 :alice!u@h NICK mallory",
            ":srv BATCH -h1",
            "PING :after",
        )
        await peer.expect("PONG after")
        # (shown in this machine's zone and date, so only the shape is checked)
        history = [s for s in ui.shown if s.startswith("[history ")]
        assert [s.split("] ", 1)[1] for s in history] == [
            "#general <bob> morning", "#general <eve> x", "-- you are now known as mallory"]
        assert session.nick == "alice"  # shown as history, never acted on
        assert sum("<bob> morning" in s for s in ui.shown) == 1


@run_async
async def test_session_history_command_and_failure_are_readable() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await history_session(peer)
        peer.send(":srv BATCH +h1 chathistory #general", line(T2, "m2", "two"),
                  ":srv BATCH -h1")
        await sync(peer)
        ui.type("/history 100")  # capped by CHATHISTORY=30
        await peer.expect("CHATHISTORY BEFORE #general msgid=m2 30")
        peer.send(":srv FAIL CHATHISTORY INVALID_TARGET BEFORE #general :No such room")
        await sync(peer)
        assert ui.shown[-1].endswith(
            "-!- history request failed (INVALID_TARGET BEFORE #general): No such room")
        ui.type("/search where in #general")
        await peer.expect("SEARCH text=where;in=#general;limit=50")
        peer.send(":srv FAIL SEARCH INVALID_PARAMS :Bad query")
        await sync(peer)
        assert ui.shown[-1].endswith("-!- search failed (INVALID_PARAMS): Bad query")


@run_async
async def test_without_chathistory_history_and_search_say_so() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await peer.expect("CAP LS 302", "NICK alice", "USER alice 0 * alice")
        peer.send(ALL_CAPS)
        await peer.expect("CAP REQ :server-time message-tags echo-message sasl")
        peer.send(":srv CAP alice ACK :server-time message-tags echo-message sasl")
        await peer.expect("CAP END")
        peer.send(":srv 001 alice :Welcome")
        await peer.expect("JOIN #general")
        peer.send(":alice!u@h JOIN #general")
        ui.type("/history", "/search x", "after")
        await peer.expect("PRIVMSG #general after")  # nothing was sent for the two
        assert any("keeps no history" in s for s in ui.shown)
        assert any("cannot search" in s for s in ui.shown)


@run_async
async def test_own_message_is_shown_once_as_the_server_echoes_it() -> None:
    ui = FakeUI()
    async with connected(ui) as (_, peer, _task):
        await history_session(peer)
        ui.type("only once", "/msg alice note to self")
        await peer.expect("PRIVMSG #general :only once", "PRIVMSG alice :note to self")
        assert not any("only once" in s for s in ui.shown)  # not before the echo
        peer.send(
            f"@time={T3};msgid=e1 :alice!u@h PRIVMSG #general :only once",
            # a message to oneself arrives twice (delivered, echoed) with one msgid
            f"@time={T3};msgid=e2 :alice!u@h PRIVMSG alice :note to self",
            f"@time={T3};msgid=e2 :alice!u@h PRIVMSG alice :note to self",
            "PING :done",
        )
        await peer.expect("PONG done")
        assert sum("only once" in s for s in ui.shown) == 1
        assert sum("note to self" in s for s in ui.shown) == 1


@pytest.mark.parametrize("cmd", ["CHATHISTORY", "SEARCH"])
def test_unknown_command_reply_frees_the_request(cmd: str) -> None:
    r = recall()
    r.join_history("#a", gap=False)
    r.find(SearchQuery("x"))
    assert r.on_refusal(cmd) is not None


def test_gap_fill_covers_the_most_recent_private_conversations_first() -> None:
    memory = Memory()
    for n in range(5):
        memory.touch(f"peer{n}", f"2024-05-01T09:0{n}:00.000Z")
    memory.touch("#room", "2024-05-01T10:00:00.000Z")
    assert memory.private_targets(limit=3) == ["peer4", "peer3", "peer2"]


def test_a_full_page_of_gap_asks_for_the_next_and_shows_all_with_one_count() -> None:
    r = recall()
    r.max_limit = 2
    feed(r, f"@time={T1};msgid=m0 :bob!u@h PRIVMSG #general :seen")
    r.join_history("#general", gap=True)
    first = [":srv BATCH +p1 chathistory #general",
             line(T1, "m0", "seen", batch="p1"), line(T2, "m1", "one", batch="p1"),
             ":srv BATCH -p1"]
    out = None
    for raw in first:
        msg = parse(raw)
        if not r.take(msg):
            out = r.on_batch(msg, "alice", tz=UTC, now=NOW)
    assert out is not None and out.show == []
    assert out.send == [Message(
        "CHATHISTORY", ("AFTER", "#general", "timestamp=2024-05-01T09:20:30.249Z", "2"))]
    shown = feed(r, ":srv BATCH +p2 chathistory #general",  # not full: the last page
                 line(T3, "m2", "two", batch="p2"), ":srv BATCH -p2")
    assert shown[0] == "-!- #general: \u2014 2 messages while you were away \u2014"
    assert [s.split("] ")[1] for s in shown[1:]] == ["#general <bob> one", "#general <bob> two"]
