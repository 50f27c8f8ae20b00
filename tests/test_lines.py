"""The fast line encoder (protocol layer) never emits a second line or a forged parameter."""

from __future__ import annotations

from hypothesis import given, settings
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


@settings(max_examples=300, deadline=None)
@given(
    # Keys as the parser lets them in (the only way a client tag reaches Outgoing).
    tags=st.dictionaries(
        st.from_regex(r"\+([A-Za-z0-9.-]{1,8}/)?[A-Za-z0-9-]{1,8}", fullmatch=True),
        st.text(max_size=60), max_size=5,
    ),
    params=st.lists(st.text(max_size=40), min_size=1, max_size=6),
    account=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    mode=st.integers(min_value=0, max_value=7),
)
def test_every_tag_variant_is_one_clean_line(
    tags: dict[str, str], params: list[str], account: str | None, mode: int
) -> None:
    """Random client tags, parameters and accounts, in every tag variant: one line, ended
    by CR LF, with no CR, LF or NUL inside; the tag values read back as sent."""
    from types import SimpleNamespace

    from chaton.protocol.message import parse
    from chaton.server.lines import Outgoing, new_msgid

    out = Outgoing("nick!u@host", "PRIVMSG", params, tags, msgid=new_msgid(), account=account,
                   bot=True)
    line = out.line_for(SimpleNamespace(tag_mode=mode))  # type: ignore[arg-type]
    assert line.endswith(b"\r\n")
    body = line[:-2]
    assert b"\r" not in body and b"\n" not in body and b"\0" not in body
    parsed = parse(body.decode("utf-8", "replace"))
    if mode & 2:
        for key, value in tags.items():
            assert parsed.tags[key] == value.replace("\0", " ")


@settings(max_examples=300, deadline=None)
@given(
    label=st.text(min_size=1, max_size=64),
    params=st.lists(st.text(max_size=40), min_size=1, max_size=4),
    mode=st.integers(min_value=0, max_value=7),
)
def test_a_label_added_to_any_encoded_line_reads_back_and_changes_nothing_else(
    label: str, params: list[str], mode: int
) -> None:
    """labeled-response adds its tag to lines already encoded, tagged or not."""
    from types import SimpleNamespace

    from chaton.protocol.message import escape_tag_value
    from chaton.server.labels import with_tag
    from chaton.server.lines import Outgoing, new_msgid

    out = Outgoing("nick!u@host", "PRIVMSG", params, {"+x": "y"}, msgid=new_msgid())
    line = out.line_for(SimpleNamespace(tag_mode=mode))  # type: ignore[arg-type]
    labeled = with_tag(line, ("label=" + escape_tag_value(label)).encode())
    assert labeled.endswith(b"\r\n") and labeled.count(b"\n") == 1
    before, after = parse(line[:-2].decode()), parse(labeled[:-2].decode())
    assert after.tags.pop("label") == label.replace("\0", " ")
    assert after == before
