"""SEARCH over real TLS: words found only where the asker may read them."""

from __future__ import annotations

from test_chathistory import HISTORY_CAPS, PW, ask, texts

from conftest import IrcClient, RunningServer, add_account, logged_in

CAPS = (*HISTORY_CAPS, "draft/search")


def found(client: IrcClient, attrs: str) -> list[str]:
    head, lines = ask(client, "SEARCH " + attrs)
    assert head == ["draft/search"]
    return texts(lines)


def test_search_finds_words_only_where_the_asker_may_read(server: RunningServer) -> None:
    for name in ("alice", "bob", "eve"):
        add_account(server.settings, name, PW)
    alice = logged_in(server, "alice", "alice", PW, caps=CAPS)
    bob = logged_in(server, "bob", "bob", PW, caps=CAPS)
    eve = logged_in(server, "eve", "eve", PW, caps=CAPS)
    alice.join("#plans")
    alice.send("MODE #plans +s")
    alice.send("PRIVMSG #plans :the budget is final")
    alice.expect("PRIVMSG", "#plans")
    alice.join("#lobby")
    bob.join("#lobby")
    eve.join("#lobby")
    alice.send("PRIVMSG #lobby :budget meeting at noon")
    bob.expect("PRIVMSG", "#lobby")
    bob.send("PRIVMSG #lobby :noon works, budget ready")
    alice.expect("PRIVMSG", "#lobby")
    alice.send("PRIVMSG bob :secret budget numbers")
    bob.expect("PRIVMSG", "bob")

    assert found(alice, "text=budget") == [
        "the budget is final", "budget meeting at noon", "noon works, budget ready",
        "secret budget numbers"]
    assert found(bob, "text=budget") == [
        "budget meeting at noon", "noon works, budget ready", "secret budget numbers"]
    assert found(eve, "text=budget") == ["budget meeting at noon", "noon works, budget ready"]
    assert found(eve, "text=budget;in=bob") == []  # eve and bob never talked
    eve.send("SEARCH text=budget;in=#plans")
    assert eve.expect("FAIL", "SEARCH").params[1] == "INVALID_PARAMS"
    assert found(alice, "text=budget;in=#lobby;from=bob") == ["noon works, budget ready"]
    assert found(alice, r"text=budget\snoon") == [
        "budget meeting at noon", "noon works, budget ready"]
    assert found(alice, "text=budget;in=#lobby;limit=1") == ["noon works, budget ready"]
    # FTS5 syntax from a client is only words
    assert found(alice, r'text=budget"\sOR\s"x*') == []
    assert found(alice, "text=NEAR(budget)") == []
    alice.send("SEARCH in=#lobby")
    assert alice.expect("FAIL", "SEARCH").params[1] == "INVALID_PARAMS"
    alice.send("SEARCH text=x;sort=desc")
    assert alice.expect("FAIL", "SEARCH").params[1] == "INVALID_PARAMS"
    # leaving a room takes its words out of reach
    eve.send("PART #lobby")
    assert found(eve, "text=budget") == []

