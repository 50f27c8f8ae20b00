"""The sans-IO protocol layer: parse/serialize round trips, framing, hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.protocol.message import (
    LINE_TOO_LONG,
    LineBuffer,
    Message,
    ProtocolError,
    parse,
    serialize,
    split_source,
)
from chaton.protocol.names import casefold, valid_channel, valid_nick


def test_parse_full_message_with_tags_source_and_trailing() -> None:
    msg = parse(
        "@time=2026-01-01T00:00:00.000Z;+draft/x=a\\sb\\:c :nick!u@h PRIVMSG #room :hi there"
    )
    assert msg.tags == {"time": "2026-01-01T00:00:00.000Z", "+draft/x": "a b;c"}
    assert msg.source == "nick!u@h"
    assert msg.command == "PRIVMSG"
    assert msg.params == ("#room", "hi there")


def test_parse_lowercase_command_empty_trailing_and_extra_spaces() -> None:
    msg = parse("privmsg  #room   :")
    assert msg.command == "PRIVMSG"
    assert msg.params == ("#room", "")
    assert parse("TOPIC #a ::colon").params == ("#a", ":colon")


def test_serialize_marks_trailing_only_when_needed() -> None:
    assert serialize(Message("JOIN", ("#room",))) == "JOIN #room"
    two = Message("PRIVMSG", ("#r", "two words"), "n!u@h")
    assert serialize(two) == ":n!u@h PRIVMSG #r :two words"
    assert serialize(Message("PRIVMSG", ("#r", ""))) == "PRIVMSG #r :"
    assert serialize(Message("X", ("a",), tags={"k": "a b", "flag": ""})) == "@k=a\\sb;flag X a"


def test_an_unknown_command_with_underscores_parses_so_it_can_get_421() -> None:
    assert parse("NO_SUCH_COMMAND x").command == "NO_SUCH_COMMAND"


@pytest.mark.parametrize(
    "line",
    ["", "   ", ":onlysource", "@tags-only", "PRIV!MSG", "12 x", ":a\x00b CMD", "CMD a\rb",
     "@bad key=1 CMD", ": CMD"],
)
def test_bad_lines_raise_protocol_error(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse(line)


@pytest.mark.parametrize(
    "msg",
    [Message("PRIVMSG", ("#a", "x\r\nQUIT")), Message("PRIVMSG", ("a b", "x")),
     Message("BAD CMD"), Message("X", (":a", "b")), Message("X", source="a b")],
)
def test_serialize_refuses_injection(msg: Message) -> None:
    with pytest.raises(ProtocolError):
        serialize(msg)


def test_split_source() -> None:
    assert split_source("nick!user@host") == ("nick", "user", "host")
    assert split_source("server.name") == ("server.name", None, None)


def test_line_buffer_handles_crlf_lf_cr_and_partial_lines() -> None:
    buf = LineBuffer(100)
    assert buf.feed(b"NICK a\r\nUSER") == [b"NICK a"]
    assert buf.pending == 4
    assert buf.feed(b" u 0 * :u\nPING x\rPONG") == [b"USER u 0 * :u", b"PING x"]
    assert buf.feed(b"\r\n\r\n") == [b"PONG"]


def test_line_buffer_drops_overlong_line_without_buffering_it() -> None:
    buf = LineBuffer(10)
    assert buf.feed(b"A" * 8) == []
    assert buf.feed(b"A" * 8) == [LINE_TOO_LONG]
    assert buf.pending == 0
    for _ in range(100):  # the rest of the same line is discarded, never held
        assert buf.feed(b"B" * 1000) == []
        assert buf.pending == 0
    assert buf.feed(b"tail\nOK\n") == [b"OK"]


names = st.text(st.sampled_from("abcXYZ[]\\^_-0123456789|{}`"), min_size=1, max_size=12)
middle = st.text(
    st.characters(blacklist_characters="\x00\r\n ", blacklist_categories=("Cs",)), min_size=1,
    max_size=20,
).filter(lambda s: not s.startswith(":"))
trailing = st.text(st.characters(blacklist_characters="\x00\r\n", blacklist_categories=("Cs",)),
                   max_size=60)
tag_keys = st.from_regex(r"\+?[a-z][a-z0-9-]{0,8}", fullmatch=True)
tag_values = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                     max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "001", "433", "MODE"]),
    params=st.lists(middle, max_size=5),
    last=st.none() | trailing,
    source=st.none() | names.map(lambda n: f"{n}!u@h"),
    tags=st.dictionaries(tag_keys, tag_values, max_size=3),
)
def test_round_trip(command: str, params: list[str], last: str | None, source: str | None,
                    tags: dict[str, str]) -> None:
    all_params = tuple(params + ([last] if last is not None else []))
    msg = Message(command, all_params, source, tags)
    assert parse(serialize(msg)) == msg


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_framer_and_parser_never_raise_anything_else(data: bytes) -> None:
    buf = LineBuffer(64)
    for line in buf.feed(data):
        assert buf.pending <= 64
        if line is LINE_TOO_LONG:
            continue
        assert isinstance(line, bytes) and 0 < len(line) <= 64
        assert b"\r" not in line and b"\n" not in line
        with contextlib.suppress(ProtocolError):
            parse(line.decode("utf-8", "replace"))


def test_nick_and_channel_rules() -> None:
    assert valid_nick("alice", 30) and valid_nick("[m]-_^|", 30)
    assert not valid_nick("9lives", 30)
    assert not valid_nick("al ice", 30)
    assert not valid_nick("аlice", 30)  # Cyrillic look-alike
    assert not valid_nick("a" * 31, 30)
    assert casefold("Nick[A]\\~") == casefold("nick{a}|^")
    assert valid_channel("#general", 50)
    assert not valid_channel("#a,b", 50) and not valid_channel("general", 50)
    assert not valid_channel("#", 50) and not valid_channel("#" + "x" * 50, 50)
