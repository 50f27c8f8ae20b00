"""A widely used IRC library (``irc`` from PyPI) talks to chaton over verified TLS."""

from __future__ import annotations

import functools
import time

import irc.client
import irc.connection

from chaton import tls

from conftest import RunningServer


def test_irc_library_registers_joins_and_exchanges_messages(server: RunningServer) -> None:
    ctx = tls.client_context(server.ca_file)
    wrapper = functools.partial(ctx.wrap_socket, server_hostname="localhost")
    reactor = irc.client.Reactor()
    conn = reactor.server()
    events: dict[str, list[irc.client.Event]] = {}

    def record(_c: irc.client.ServerConnection, event: irc.client.Event) -> None:
        events.setdefault(event.type, []).append(event)

    for kind in ("welcome", "join", "pubmsg", "privmsg", "endofnames", "nicknameinuse"):
        reactor.add_global_handler(kind, record)
    conn.connect(
        server.host, server.port, "libbot", connect_factory=irc.connection.Factory(wrapper=wrapper)
    )

    def pump(until: str, count: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(events.get(until, [])) < count:
            assert time.monotonic() < deadline, f"no {until}; saw {sorted(events)}"
            reactor.process_once(0.05)

    pump("welcome")
    conn.join("#general")
    pump("endofnames")

    human = server.client("human").join("#general")
    pump("join", 2)  # its own JOIN, then human's
    human.send("PRIVMSG #general :hello library")
    pump("pubmsg")
    msg = events["pubmsg"][0]
    assert msg.source.nick == "human"
    assert msg.target == "#general"
    assert msg.arguments == ["hello library"]

    conn.privmsg("#general", "hello human")
    got = human.expect("PRIVMSG", "#general")
    assert got.params[1] == "hello human" and (got.source or "").startswith("libbot!")

    conn.privmsg("human", "psst")
    assert human.expect("PRIVMSG", "human").params[1] == "psst"
    human.send("PRIVMSG libbot :psst back")
    pump("privmsg")
    assert events["privmsg"][0].arguments == ["psst back"]
    assert "nicknameinuse" not in events
    conn.disconnect("bye")
