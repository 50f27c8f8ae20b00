"""One duration grammar for the server, the admin CLI and the client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.protocol.durations import DurationError, format_duration, parse_duration, take_duration


@given(st.integers(min_value=1, max_value=10**9))
def test_format_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["1h", "30m", "spam"], ("1h 30m", ["spam"])),
        (["1h30m", "spam", "5m"], ("1h30m", ["spam", "5m"])),
        (["spam"], ("", ["spam"])),
        (["30minutes"], ("", ["30minutes"])),
        ([], ("", [])),
    ],
)
def test_take_duration(words: list[str], expected: tuple[str, list[str]]) -> None:
    assert take_duration(words) == expected


@pytest.mark.parametrize("text", ["", "0m", "1x", "h", "1h-30m", "9" * 70 + "s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)
