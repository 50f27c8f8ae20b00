"""The client's one neutralizer for untrusted text (chaton.client.safe_text).

Properties over any string: nothing that can steer a terminal survives (C0/C1 controls, ESC,
DEL, bidi controls, separators, lone surrogates), nothing safe is lost or reordered, the
result always encodes, and neutralizing twice changes nothing. The client's exit paths that
use it are driven for real in test_client_session.py, test_client_e2e.py and
test_client_tls.py.
"""

from __future__ import annotations

import argparse
import io
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.client import add_arguments, run
from chaton.client.safe_text import printable, printable_lines, sanitize, strip_formatting
from chaton.client.ui import PipeUI

BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u202eevil\u2066\x00\x7f\r\n\t\x85\u2028\ud800"

# Any code point at all (surrogates included), with the dangerous ones drawn often.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(sorted(BIDI) + [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]),
        st.sampled_from(["\u2028", "\u2029", "\ud800", "\udfff", "^", "<", "U", "+"]),
    )
)


def unsafe(ch: str) -> bool:
    """What must never reach a terminal: controls, surrogates, separators and bidi controls."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in BIDI


def is_subsequence(part: str, whole: str) -> bool:
    it = iter(whole)
    return all(ch in it for ch in part)


@given(ANY_TEXT)
def test_printable_leaves_nothing_that_steers_a_terminal(text: str) -> None:
    out = printable(text)
    assert not any(unsafe(ch) for ch in out), ascii(out)
    assert "\x1b" not in out and "\x9b" not in out
    out.encode("utf-8")  # strict: no lone surrogate left to fail at print time


@given(ANY_TEXT)
def test_printable_drops_nothing_and_is_idempotent(text: str) -> None:
    out = printable(text)
    assert len(out) >= len(text)  # every unsafe character becomes at least one visible one
    assert is_subsequence("".join(ch for ch in text if not unsafe(ch)), out)
    assert printable(out) == out
    if not any(unsafe(ch) for ch in text):
        assert out == text


@given(ANY_TEXT)
def test_printable_lines_keeps_only_line_breaks(text: str) -> None:
    out = printable_lines(text)
    assert out.count("\n") == text.count("\n")
    assert all(printable(line) == line for line in out.split("\n"))


@given(ANY_TEXT)
def test_sanitize_is_printable_without_formatting(text: str) -> None:
    out = sanitize(text)
    assert not any(unsafe(ch) for ch in out)
    assert out == printable(strip_formatting(text))
    assert sanitize(out) == out


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07\x1b[2J", "^[]0;pwned^G^[[2J"),
        ("\x00nul \x7fdel \x0d", "^@nul ^?del ^M"),
        ("a\tb", "a b"),
        ("\x80 \x9b2J \x9f", "<U+0080> <U+009B>2J <U+009F>"),
        (
            "\u202aLRE \u202eRLO \u2066LRI \u2069PDI",
            "<U+202A>LRE <U+202E>RLO <U+2066>LRI <U+2069>PDI",
        ),
        ("\u200e\u200f\u061c", "<U+200E><U+200F><U+061C>"),
        ("line\u2028sep", "line<U+2028>sep"),
        ("lone \ud83d surrogate", "lone <U+D83D> surrogate"),
        (
            "emoji 👍🏽 ok, café, zero\u200dwidth joiner",
            "emoji 👍🏽 ok, café, zero\u200dwidth joiner",
        ),
    ],
)
def test_rendering(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_formatting_codes_are_markup_not_text() -> None:
    # printable shows them (they are C0 controls); sanitize, for IRC text, removes them.
    assert printable("\x02bold\x02") == "^Bbold^B"
    assert sanitize("\x02bold\x02 \x0304,01red\x03") == "bold red"


def test_multi_line_message() -> None:
    assert printable_lines(f"first {HOSTILE}\n  second\x1b[H") == (
        "first ^[]0;pwned^G^[[2J<U+009B>2J<U+202E>evil<U+2066>^@^?^M\n"
        " <U+0085><U+2028><U+D800>\n  second^[[H"
    )


# --- the places the client writes ---------------------------------------------------------------
def test_pipe_front_end_writes_only_printable_lines() -> None:
    out = io.StringIO()
    PipeUI(stdin_fd=0, stdout=out).show(f"-!- {HOSTILE}")  # a line built without sanitize
    assert out.getvalue() == printable(f"-!- {HOSTILE}") + "\n"
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_exit_message_on_stderr_is_printable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ca\x1b]0;pwned\x07\x1b[2J.pem"
    assert run(parse("127.0.0.1:1", "--nick", "x", "--cafile", str(missing))) == 2
    err = capsys.readouterr().err
    assert "ca^[]0;pwned^G^[[2J.pem does not exist" in err
    assert "\x1b" not in err and "\x07" not in err


class _Hostile(str):
    """A server address whose parsing fails with hostile text, like a bug quoting the server."""

    __slots__ = ()

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("bug quoting \x1b]0;pwned\x07\x1b[2J")


def test_unexpected_error_is_reported_printable(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--nick", "x")
    args.server = _Hostile("127.0.0.1")
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: bug quoting ^[]0;pwned^G^[[2J" in err
    assert "chaton: internal error: " in err
    assert "\x1b" not in err and "\x07" not in err
