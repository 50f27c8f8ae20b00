"""Two writers meet on one registered room: its operator over IRC and the admin CLI.

Hypothesis interleaves MODE/TOPIC from the operator with edits of the same record by
another database connection (what ``chaton room set`` does), and polls of the change feed.
After every step, three views must agree: the database, the server's live room, and what
the operator was *told* (the MODE and TOPIC lines it received, applied in order) — and
all three equal the model, every change applied in the order made: no write is lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from chaton.protocol.message import Message
from chaton.store import RoomRecord, Store

from conftest import IrcClient, RunningServer, add_account, logged_in

PW = "stateful rooms password 1"
FLAGS = "imnst"
MASKS = [f"m{i}!*@*" for i in range(4)]
TOPICS = ["", "alpha", "beta"]
_rooms = itertools.count()


class Told:
    """What the operator was told: flags, bans and topic, from MODE and TOPIC lines."""

    def __init__(self) -> None:
        self.flags = set("nt")
        self.bans: set[str] = set()
        self.topic = ""

    def hear(self, room: str, lines: list[Message]) -> None:
        for msg in lines:
            if msg.command == "TOPIC" and msg.params[0] == room:
                self.topic = msg.params[1]
            elif msg.command == "MODE" and msg.params[0] == room:
                args = list(msg.params[2:])
                adding = True
                for letter in msg.params[1]:
                    if letter in "+-":
                        adding = letter == "+"
                    elif letter in "bovk" or (letter == "l" and adding):
                        arg = args.pop(0)
                        if letter == "b":
                            (self.bans.add if adding else self.bans.discard)(arg)
                    elif letter in FLAGS:
                        (self.flags.add if adding else self.flags.discard)(letter)


class TwoWriters(RuleBasedStateMachine):
    def __init__(self, server: RunningServer, olga: IrcClient) -> None:
        super().__init__()
        self.server = server
        self.olga = olga
        self.room = f"#sm{next(_rooms)}"
        self.told = Told()
        self.model = Told()  # every change in the order made, whoever made it
        olga.join(self.room)
        olga.send(f"PRIVMSG ChanServ :REGISTER {self.room}")
        self.listen()
        self.cli = Store(server.settings.db_file)

    def listen(self) -> None:
        self.told.hear(self.room, self.olga.sync())

    def teardown(self) -> None:
        try:
            self.views_agree()
        finally:
            self.cli.close()
            self.olga.send(f"PRIVMSG ChanServ :DROP {self.room}")
            self.olga.send(f"PART {self.room}")
            self.olga.sync()

    def edit(self, change: object) -> None:
        assert callable(change)
        self.cli.update_room(self.room, change)

    # --- the operator, over IRC --------------------------------------------------------------
    @rule(letter=st.sampled_from(FLAGS), adding=st.booleans())
    def irc_flag(self, letter: str, adding: bool) -> None:
        self.olga.send(f"MODE {self.room} {'+' if adding else '-'}{letter}")
        self.listen()
        self.set_flag(letter, adding)

    def set_flag(self, letter: str, adding: bool) -> None:
        (self.model.flags.add if adding else self.model.flags.discard)(letter)

    def set_ban(self, mask: str, adding: bool) -> None:
        (self.model.bans.add if adding else self.model.bans.discard)(mask)

    @rule(mask=st.sampled_from(MASKS), adding=st.booleans(), letter=st.sampled_from(FLAGS))
    def irc_ban_and_flag(self, mask: str, adding: bool, letter: str) -> None:
        sign = "+" if adding else "-"
        self.olga.send(f"MODE {self.room} {sign}b{letter} {mask}")
        self.listen()
        self.set_ban(mask, adding)
        self.set_flag(letter, adding)

    @rule(topic=st.sampled_from(TOPICS))
    def irc_topic(self, topic: str) -> None:
        self.olga.send(f"TOPIC {self.room} :{topic}")
        self.listen()
        self.model.topic = topic

    # --- the CLI, on its own connection -----------------------------------------------------
    @rule(letter=st.sampled_from(FLAGS), adding=st.booleans())
    def cli_flag(self, letter: str, adding: bool) -> None:
        def change(r: RoomRecord) -> RoomRecord:
            flags = set(r.flags) | {letter} if adding else set(r.flags) - {letter}
            return replace(r, flags="".join(sorted(flags)))

        self.edit(change)
        self.set_flag(letter, adding)

    @rule(mask=st.sampled_from(MASKS), adding=st.booleans())
    def cli_ban(self, mask: str, adding: bool) -> None:
        def change(r: RoomRecord) -> RoomRecord:
            bans = [e for e in r.lists.get("b", []) if e[0] != mask]
            if adding:
                bans.append((mask, "cli", 1.0))
            return replace(r, lists={**r.lists, "b": bans})

        self.edit(change)
        self.set_ban(mask, adding)

    @rule(topic=st.sampled_from(TOPICS))
    def cli_topic(self, topic: str) -> None:
        self.edit(lambda r: replace(r, topic=topic, topic_by="ChanServ", topic_at=2.0))
        self.model.topic = topic

    @rule()
    def poll(self) -> None:
        assert self.server.server.authority is not None
        self.server.call(self.server.server.authority.apply_changes)
        self.listen()

    # --- the three views agree, once the feed is read ------------------------------------------
    # A rule, not an invariant: between two checks, CLI edits wait unread in the feed while
    # the operator's writes land on top of them (the server's own poll is switched off).
    @rule()
    def views_agree(self) -> None:
        self.poll()
        record = self.cli.get_room(self.room)
        assert record is not None
        stored = (set(record.flags), {m for m, _, _ in record.lists.get("b", [])}, record.topic)

        def live() -> tuple[set[str], set[str], str]:
            room = self.server.server.state.find_channel(self.room)
            assert room is not None
            return set(room.flags), {e.mask for e in room.bans.values()}, room.topic

        assert (self.model.flags, self.model.bans, self.model.topic) == stored
        assert self.server.call(live) == stored
        assert (self.told.flags, self.told.bans, self.told.topic) == stored


@pytest.mark.timeout(120)
def test_irc_and_cli_writers_never_disagree(start_server: Callable[..., RunningServer]) -> None:
    # Hundreds of commands; the feed is read only when the test says so.
    server = start_server(flood_rate=0, rooms_created_per_ip=0, db_poll_interval=3600.0,
                          rooms_registered_per_account=0)
    add_account(server.settings, "olga", PW)
    olga = logged_in(server, "olga", "olga", PW)
    run_state_machine_as_test(
        lambda: TwoWriters(server, olga),
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
