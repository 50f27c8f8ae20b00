"""MONITOR, WHOWAS, TIME, INFO, ADMIN, STATUSMSG, the bot mode and UTF8ONLY, over TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import RunningServer

StartServer = Callable[..., RunningServer]


def test_monitor_tells_online_and_offline(start_server: StartServer) -> None:
    server = start_server(monitor_limit=3)
    watcher = server.client("watcher")
    here = server.client("here")
    watcher.send("MONITOR + here,gone,Here")
    assert watcher.expect("730").params[-1].startswith("here!")
    assert watcher.expect("731").params[-1] == "gone"
    late = server.client("gone")  # comes online
    assert watcher.expect("730").params[-1].startswith("gone!")
    late.send("NICK GONE")  # a change of case is the same nickname: nothing to tell
    late.expect("NICK")
    assert not [m for m in watcher.sync() if m.command in ("730", "731")]
    late.send("NICK renamed")
    assert watcher.expect("731").params[-1] == "GONE"  # as it was written
    here.send("QUIT :bye")
    assert watcher.expect("731").params[-1] == "here"
    watcher.send("MONITOR L")
    assert sorted(watcher.expect("732").params[-1].split(",")) == ["gone", "here"]
    watcher.expect("733")
    watcher.send("MONITOR + a,b,c")
    full = watcher.expect("734")
    assert full.params[1:3] == ("3", "b,c")
    assert watcher.expect("731").params[-1] == "a"  # the one that fitted
    watcher.send("MONITOR - a,here")
    watcher.send("MONITOR S")
    assert watcher.expect("731").params[-1] == "gone"
    watcher.send("MONITOR C")
    watcher.send("MONITOR L")
    assert not [m for m in watcher.sync() if m.command == "732"]
    isupport = " ".join(" ".join(m.params) for m in watcher.log if m.command == "005")
    assert "MONITOR=3" in isupport


def test_whowas_remembers_who_left_and_who_renamed(start_server: StartServer) -> None:
    server = start_server(whowas_limit=2)
    asker = server.client("asker")
    server.client("alpha").send("QUIT")
    asker.send("WHOWAS nobody")
    asker.expect("406")
    asker.expect("369")
    beta = server.client("beta")
    beta.send("NICK beta2")
    beta.expect("NICK")
    asker.send("WHOWAS beta")
    entry = asker.expect("314")
    assert entry.params[1:3] == ("beta", "~u") and entry.params[3].startswith("guest.")
    asker.expect("369")
    server.client("gamma").send("QUIT")  # the history holds two: alpha is forgotten
    asker.send("WHOWAS gamma")
    asker.expect("314")
    asker.send("WHOWAS alpha")
    asker.expect("406")


def test_time_info_and_admin(server: RunningServer) -> None:
    c = server.client("c")
    c.send("TIME")
    assert c.expect("391").params[1] == server.settings.server_name
    c.send("INFO")
    c.expect("371")
    c.expect("374")
    c.send("ADMIN")
    c.expect("256")
    c.expect("259")


def test_statusmsg_reaches_only_operators_or_voiced(server: RunningServer) -> None:
    op = server.client("op").join("#room")
    voiced = server.client("voiced").join("#room")
    plain = server.client("plain").join("#room")
    op.send("MODE #room +v voiced")
    voiced.expect("MODE", "#room", "+v")
    voiced.send("PRIVMSG @#room :ops only")
    got = op.expect("PRIVMSG", "@#room")
    assert got.params[1] == "ops only"
    op.send("PRIVMSG +#room :voice and ops")
    assert voiced.expect("PRIVMSG", "+#room").params[1] == "voice and ops"
    assert not [m for m in plain.sync() if m.command == "PRIVMSG"]


def test_bot_mode_shows_in_who_whois_and_a_tag(server: RunningServer) -> None:
    bot = server.client("bot")
    bot.send("MODE bot +B")
    assert bot.expect("MODE", "bot").params[1] == "+B"
    tagged = server.client().register("tagged", caps=("message-tags",))
    human = server.client("human")
    human.send("WHOIS bot")
    human.expect("335")
    human.send("WHO bot")
    assert "B" in human.expect("352").params[6]
    bot.send("PRIVMSG tagged :beep")
    assert "bot" in tagged.expect("PRIVMSG", "tagged").tags
    bot.send("PRIVMSG human :beep")
    assert human.expect("PRIVMSG", "human").tags == {}


def test_invalid_utf8_is_refused_with_fail(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server()
    sender = server.client("sender")
    target = server.client("target")
    sender.send_raw(b"PRIVMSG target :bad \xff\xfe bytes\r\n")
    fail = sender.expect("FAIL")
    assert fail.params[:2] == ("PRIVMSG", "INVALID_UTF8")
    sender.send("PRIVMSG target :good")
    assert target.expect("PRIVMSG").params[1] == "good"  # the bad line never arrived
    isupport = " ".join(" ".join(m.params) for m in sender.log if m.command == "005")
    assert "UTF8ONLY" in isupport
    lenient = start_server(utf8_only=False, data_dir=tmp_path / "lenient")
    a = lenient.client("a")
    b = lenient.client("b")
    a.send_raw(b"PRIVMSG b :bad \xff bytes\r\n")
    assert b.expect("PRIVMSG").params[1] == "bad \ufffd bytes"


def test_names_of_several_rooms_ends_once(server: RunningServer) -> None:
    c = server.client("c").join("#one")
    c.join("#two")
    c.send("NAMES #one,#two,#none")
    got = [m for m in c.sync() if m.command in ("353", "366")]
    assert [(m.command, m.params[2] if m.command == "353" else m.params[1]) for m in got] == [
        ("353", "#one"), ("353", "#two"), ("366", "#one,#two,#none")]


def test_kick_takes_one_room_or_as_many_rooms_as_nicks(server: RunningServer) -> None:
    op = server.client("op").join("#a")
    op.join("#b")
    x = server.client("x").join("#a")
    y = server.client("y").join("#b")
    z = server.client("z").join("#a")
    op.send("KICK #a,#a x,z :both")  # one room, named twice
    assert {op.expect("KICK", "#a").params[1] for _ in range(2)} == {"x", "z"}
    x.join("#a")
    op.send("KICK #a,#b x,y :pairs")
    assert op.expect("KICK", "#a").params[1] == "x"
    assert op.expect("KICK", "#b").params[1] == "y"
    op.send("KICK #a,#b x")
    op.expect("461")
    del y, z


def test_extended_monitor_tells_watchers_what_room_peers_hear(server: RunningServer) -> None:
    """AWAY and SETNAME reach a watcher with extended-monitor (and the cap itself), once
    even when it also shares a room; a watcher without extended-monitor hears nothing."""
    caps = ("extended-monitor", "away-notify", "setname")
    far = server.client().register("far", caps=caps)
    near = server.client().register("near", caps=caps)
    plain = server.client().register("plain", caps=("away-notify", "setname"))
    target = server.client("target")
    for c in (far, near, plain):
        c.send("MONITOR + target")
        c.expect("730")
    near.join("#both")
    target.join("#both")
    target.send("AWAY :lunch")
    target.expect("306")
    target.send("SETNAME :New Name")
    target.sync()
    for c in (far, near):
        got = [m for m in c.sync() if m.command in ("AWAY", "SETNAME")]
        assert [(m.command, m.params[-1]) for m in got] == [
            ("AWAY", "lunch"), ("SETNAME", "New Name")]
        assert all((m.source or "").startswith("target!") for m in got)
    assert not [m for m in plain.sync() if m.command in ("AWAY", "SETNAME")]
