"""Room names as safe as nicknames: no controls, invisible or bidi characters, and names
that look alike are one room ("Fair under attack", item 8).

Unit tests of :mod:`chaton.protocol.names`, then the issue's look-alike JOINs against a real
server over TLS.
"""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.config import ConfigError, load_settings
from chaton.protocol.names import (
    BadRoomName,
    casefold,
    room_key,
    room_name,
    valid_channel,
)

from conftest import IrcClient, RunningServer

MAXLEN = 50
FORBIDDEN = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs"}

# The issue's examples, each next to the real #general.
CYRILLIC_E = "#g\u0435neral"
FULLWIDTH_G = "#\uff47eneral"
ZERO_WIDTH = "#general\u200b"
RTL_OVERRIDE = "#\u202elareneg"
C1_NEL = "#gen\u0085eral"
C1_CSI = "#gen\u009beral"
REFUSED = [CYRILLIC_E, ZERO_WIDTH, RTL_OVERRIDE, C1_NEL, C1_CSI]

# Characters an attacker reaches for, mixed into the generated strings.
TRICKY = (
    "\u0435\u0430\u043e\u0440\u0441\u03bf\u03b1\u03bd\u0391\u039d\u0405\u0456"  # look-alikes
    "\uff47\uff03\uff0c\uff1a\u2010\u2212\u201a\u2215"  # fullwidth, hyphens, quotes, slash
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u034f\ufe0f\u3164\u115f\u2800"  # invisible
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"  # bidi
    "\u0085\u009b\u0000\u0007\u007f\u00a0\u3000\u2028\u2029\ue000"  # controls and spaces
    "\u0301\u0308\u05d0\u05d1\u0627\u0644\u65e5\u672c\u30e9\u30fc\u00e9\u00df#,: 0a_-"
)
names_ish = st.text(st.one_of(st.sampled_from(TRICKY), st.characters()), max_size=20)


# Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt): drawn as nothing.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


def _invisible(ch: str) -> bool:
    return any(low <= ord(ch) <= high for low, high in _IGNORABLE)


# --- the rules ------------------------------------------------------------------------------


def test_the_issues_examples_are_refused_or_folded_into_general() -> None:
    for name in REFUSED:
        with pytest.raises(BadRoomName):
            room_name(name, MAXLEN)
        assert not valid_channel(name, MAXLEN)
    assert room_name(FULLWIDTH_G, MAXLEN) == "#general"  # folded: the same room
    assert room_key(FULLWIDTH_G) == room_key(CYRILLIC_E) == room_key("#General") == "#general"


def test_refusals_say_why_without_echoing_the_character() -> None:
    reasons = {}
    for name in REFUSED:
        with pytest.raises(BadRoomName) as caught:
            room_name(name, MAXLEN)
        reasons[name] = str(caught.value)
        assert all(ch.isprintable() for ch in reasons[name])
    assert "Cyrillic and Latin" in reasons[CYRILLIC_E]
    assert "U+200B ZERO WIDTH SPACE" in reasons[ZERO_WIDTH]
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in reasons[RTL_OVERRIDE]
    assert "U+0085 is a control character" in reasons[C1_NEL]
    assert "\u202e" not in reasons[RTL_OVERRIDE] and "\u009b" not in reasons[C1_CSI]


@pytest.mark.parametrize(
    "name",
    [
        "#general", "#café", "#Café", "#c++", "#@!*.-_", "#a[b]", "##x", "#команда",
        "#dev-разработка", "#日本語", "#ラーメン", "#Tシャツ", "#한국어", "#हिन्दी", "#עברית",
        "#עברית2", "#عربي", "#Ελλάδα", "#x\u0301",
    ],
)
def test_real_names_in_many_scripts_are_kept(name: str) -> None:
    assert room_name(name, MAXLEN) == name
    assert valid_channel(name, MAXLEN)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("general", "starts with #"),
        ("#", "empty"),
        ("#a,b", "','"),
        ("#a:b", "':'"),
        ("#a b", "space"),
        ("#a\u00a0b", "space"),  # no-break space
        ("#a\u3000b", "space"),  # ideographic space (NFKC: a space)
        ("#a\uff0cb", "','"),  # fullwidth comma folds to a comma
        ("#a\u00adb", "formatting"),  # soft hyphen
        ("#a\u2066b\u2069", "formatting"),  # bidi isolate
        ("#a\ufe0f", "invisible"),  # variation selector
        ("#a\u3164", "invisible"),  # Hangul filler
        ("#a\u2800", "not a letter"),  # blank Braille pattern
        ("#a\u2010b", "not a letter"),  # hyphen that is not '-'
        ("#don\u02bct", "script"),  # modifier letter apostrophe
        ("#\u13c0\u13ac", "script"),  # Cherokee: drawn like Latin capitals
        ("#\u0301a", "follows no letter"),
        ("#gen1\u0435", "mixes"),  # a digit does not cut the mixed word in two
        ("#gen\u0323\u0435", "mixes"),  # nor does a combining mark
        ("#1\u05e9\u05dc\u05d5\u05dd", "right-to-left"),  # displays like the name with the 1 last
        ("#abc\u05d0", "mixes"),
        ("#\u05d0-abc", "right-to-left"),
        ("#" + "x" * MAXLEN, "50 bytes"),
        ("#" + "\u00e9" * 25, "50 bytes"),  # bytes, not characters
    ],
)
def test_bad_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(BadRoomName, match=re.escape(why)):
        room_name(name, MAXLEN)


def test_look_alikes_share_a_key() -> None:
    same = [
        "#general", "#GENERAL", "#\uff27\uff25\uff2e\uff25\uff32\uff21\uff2c",  # fullwidth
        "#\U0001d420\U0001d41e\U0001d427\U0001d41e\U0001d42b\U0001d41a\U0001d425",  # math bold
        "#\u0261eneral",  # Latin script g
        "#g\u0435neral",  # Cyrillic e (refused at JOIN, but PRIVMSG to it finds #general)
    ]
    assert {room_key(n) for n in same} == {"#general"}
    # Whole words in another script that read as a Latin word are that room.
    assert room_key("#\u0422\u041e\u0420") == room_key("#\u03a4\u039f\u03a1") == "#top"
    assert room_key("#\u0440\u0430\u0443") == "#pay"
    # Case folds in every script, and rfc1459 folds as before.
    assert room_key("#Москва") == room_key("#москва") == room_key("#МОСКВА")
    assert room_key("#Μόσχα") == room_key("#μόσχα")
    assert room_key("#Stra\u00dfe") == room_key("#strasse")
    assert room_key("#A[B]\\~") == "#a{b}|^"


def test_case_never_separates_two_rooms() -> None:
    """Capital and small letter share a key for every cased letter of Unicode."""
    for code in range(0x110000):
        ch = chr(code)
        if unicodedata.category(ch) in ("Lu", "Ll", "Lt"):
            assert room_key("#a" + ch.lower()) == room_key("#a" + ch.upper()), hex(code)


def test_every_allowed_character_is_visible_and_assigned() -> None:
    """Exhaustive over code points: no control, format, space, private or unassigned
    character is ever part of a room name."""
    for code in range(0x110000):
        ch = chr(code)
        try:
            name = room_name("#a" + ch, MAXLEN)
        except BadRoomName:
            continue
        assert not any(unicodedata.category(c) in FORBIDDEN for c in name), hex(code)
        assert not any(_invisible(c) for c in name), hex(code)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_ascii_names_keep_their_old_rule_and_key(text: str) -> None:
    name = "#" + text
    old_rule = 1 < len(name) <= MAXLEN and re.fullmatch(r"#[^\x00-\x20\x7f,:]+", name)
    assert valid_channel(name, MAXLEN) == bool(old_rule)
    assert room_key(name) == casefold(name)


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40))
def test_fullwidth_spelling_is_the_same_room(text: str) -> None:
    name = "#" + text
    wide = "#" + "".join(chr(ord(c) + 0xFEE0) for c in text)
    assert room_key(wide) == room_key(name)
    if valid_channel(name, MAXLEN):
        assert room_name(wide, 4 * MAXLEN) == name


@given(names_ish)
def test_valid_names_hold_no_hidden_characters(text: str) -> None:
    for candidate in (text, "#" + text):
        try:
            name = room_name(candidate, MAXLEN)
        except BadRoomName:
            continue
        assert name[0] == "#" and len(name.encode()) <= MAXLEN
        assert not any(unicodedata.category(c) in FORBIDDEN for c in name)
        assert not any(_invisible(c) for c in name)
        assert unicodedata.is_normalized("NFKC", name)
        assert room_name(name, MAXLEN) == name and valid_channel(name, MAXLEN)


@given(names_ish)
def test_key_is_idempotent(text: str) -> None:
    for candidate in (text, "#" + text, text.upper()):
        key = room_key(candidate)
        assert room_key(key) == key


# --- over the wire --------------------------------------------------------------------------


def _members(client: IrcClient, room: str) -> set[str]:
    client.send(f"NAMES {room}")
    names = client.expect("353")
    client.expect("366")
    return {n.lstrip("@") for n in names.params[-1].split()}


def _rooms(server: RunningServer) -> list[str]:
    """The rooms that exist, but for the registered default room (always there)."""
    return server.call(lambda: [room.name for room in server.server.state.channels.values()
                                if room.owner is None])


def test_lookalike_joins_are_refused_or_land_in_the_real_room(server: RunningServer) -> None:
    alice = server.client("alice").join("#general")
    mallory = server.client("mallory")
    for name in REFUSED:
        mallory.send(f"JOIN {name}")
        reply = mallory.expect("476")
        assert reply.params[1] == name and reply.params[-1].startswith("Bad room name: ")
    mallory.send(f"JOIN {FULLWIDTH_G}")
    assert mallory.expect("JOIN").params[0] == "#general"
    mallory.expect("366", "mallory", "#general")
    assert (alice.expect("JOIN", "#general").source or "").startswith("mallory!")
    assert _members(alice, "#general") == _members(mallory, FULLWIDTH_G) == {"alice", "mallory"}
    mallory.send("LIST")
    listed = [m.params[1] for m in mallory.sync() if m.command == "322"]
    assert listed == ["#general"]
    assert server.call(lambda: list(server.server.state.channels)) == ["#general"]
    # Writing to a look-alike reaches the real room, under its real name.
    mallory.send(f"PRIVMSG {CYRILLIC_E} :psst")
    assert alice.expect("PRIVMSG").params == ("#general", "psst")
    # A normal client is still served.
    bob = server.client("bob").join("#general")
    bob.send("PRIVMSG #general :still here")
    assert alice.expect("PRIVMSG", "#general").params[1] == "still here"


def test_a_whole_word_lookalike_joins_the_latin_room(server: RunningServer) -> None:
    ops = server.client("ops").join("#top")
    eve = server.client("eve")
    eve.send("JOIN #\u0422\u041e\u0420")  # TOP in Cyrillic capitals
    assert eve.expect("JOIN").params[0] == "#top"
    assert (ops.expect("JOIN", "#top").source or "").startswith("eve!")
    assert _rooms(server) == ["#top"]


def test_rooms_in_other_scripts_work_and_fold_case(server: RunningServer) -> None:
    ana = server.client("ana").join("#café")
    ben = server.client("ben")
    ben.send("JOIN #CAF\u00c9,#\uff43\uff41\uff46\u00e9")  # capitals, then fullwidth: one room
    assert ben.expect("JOIN").params[0] == "#café"
    ben.expect("366", "ben", "#café")
    assert (ana.expect("JOIN", "#café").source or "").startswith("ben!")
    assert not [m for m in ben.sync() if m.command == "JOIN"]  # the second name: already in
    ben.send("PRIVMSG #CAFÉ :bonjour")
    assert ana.expect("PRIVMSG", "#café").params[1] == "bonjour"
    assert _rooms(server) == ["#café"]


def test_invalid_default_channel_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "chaton.toml"
    config.write_text('default_channel = "#gen\\u200beral"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="ZERO WIDTH SPACE"):
        load_settings(config)
    config.write_text('default_channel = "#team"\n', encoding="utf-8")
    assert load_settings(config).default_channel == "#team"


def test_hostile_join_flood_leaves_the_server_serving(server: RunningServer) -> None:
    mallory = server.client("mallory")
    mallory.send("JOIN " + ",".join([*REFUSED, FULLWIDTH_G, "#x\u2028y", "#\ue000"]))
    assert len([m for m in mallory.sync() if m.command == "476"]) == len(REFUSED) + 2
    a = server.client(f"ok{time.monotonic_ns() % 100000}").join("#check")
    b = server.client(f"ok{time.monotonic_ns() % 100000}b").join("#check")
    a.send("PRIVMSG #check :still here")
    assert b.expect("PRIVMSG", "#check").params[1] == "still here"
