"""Wildcard masks: the same answers as a regular expression, without its worst case."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.protocol.wildcards import wildcard_match


def _reference(mask: str, text: str) -> bool:
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in mask)
    return re.fullmatch(pattern, text, re.DOTALL) is not None


@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="ab", max_size=10))
def test_matches_like_the_regular_expression(mask: str, text: str) -> None:
    assert wildcard_match(mask, text) == _reference(mask, text)


@pytest.mark.timeout(10)
def test_a_pathological_mask_is_answered_quickly() -> None:
    """A backtracking regex takes exponential time here; the matcher is O(mask * text)."""
    mask = "*a" * 40 + "*b"
    assert not wildcard_match(mask, "a" * 2000)
    assert wildcard_match("*!*@user/alice", "bob!~u@user/alice")
