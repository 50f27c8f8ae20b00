"""The fast line encoder (protocol layer) never emits a second line or a forged parameter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaton.protocol.message import MAX_LINE_BYTES, encode_line, parse

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
_middle = st.text(alphabet="abcXYZ#@!*.-_", min_size=1, max_size=12)


@given(source=st.none() | _middle, middle=st.lists(_middle, max_size=3), last=_text)
def test_any_text_is_exactly_one_line(source: str | None, middle: list[str], last: str) -> None:
    line = encode_line(source, "PRIVMSG", [*middle, last])
    assert line.endswith(b"\r\n")
    body = line[:-2]
    assert b"\r" not in body and b"\n" not in body and b"\0" not in body
    assert len(body) <= (MAX_LINE_BYTES - 2)
    msg = parse(body.decode())
    assert msg.command == "PRIVMSG"
    assert list(msg.params[: len(middle)]) == middle


def test_injected_line_break_stays_in_its_parameter() -> None:
    line = encode_line("srv", "NOTICE", ["boss", "cannot write to /tmp/x\r\nKILL boss :gotcha"])
    assert line.count(b"\r\n") == 1
    assert parse(line[:-2].decode()).params[-1] == "cannot write to /tmp/x  KILL boss :gotcha"


def test_a_middle_parameter_that_could_forge_others_becomes_a_star() -> None:
    line = encode_line("srv", "401", ["bob", "x :KILL", "", ":y", "No such nick"])
    assert parse(line[:-2].decode()).params == ("bob", "*", "*", "*", "No such nick")
