"""The README's limits table must match the defaults in the code."""

from __future__ import annotations

import re

from chaton.config import Settings

from conftest import REPO


def test_readme_limits_table_matches_settings() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, flags=re.MULTILINE))
    documented = {name: str(default) for name, default, _ in Settings.field_docs()}
    documented.pop("motd")
    assert rows == documented


def test_readme_gives_the_two_setup_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "./dev serve" in text and "./dev test" in text
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "./dev test" in ci  # CI runs the README's test command


def test_readme_names_every_capability_the_server_offers() -> None:
    """The capability table is what CAP LS offers: nothing missing, nothing invented."""
    from chaton.server.registration import HISTORY_CAPS, SUPPORTED_CAPS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("### What IRC clients and bots get", 1)[1].split("\nAlso:", 1)[0]
    named = set(re.findall(r"^\| (`[^|]*`) \|", table, flags=re.MULTILINE))
    caps = {c for cell in named for c in re.findall(r"`([a-z0-9/-]+)`", cell)}
    assert caps == set(SUPPORTED_CAPS + HISTORY_CAPS)
