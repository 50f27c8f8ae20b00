"""The offline admin CLI, run as a real process on a real database file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import chaton
from chaton.store import Store

REPO = Path(chaton.__file__).resolve().parent.parent
PASSWORD = "a-long-enough-password"
FAST_CONFIG = """\
argon2_time_cost = 1
argon2_memory_kib = 8192
argon2_parallelism = 1
"""


class Cli:
    """Runs ``python -m chaton.cli_admin`` against one data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "chaton.toml"
        self.config.write_text(FAST_CONFIG)
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "USER": "tester", "LOGNAME": "tester"}
        Store(self.data_dir / "chaton.db").close()  # as a server's first run leaves it

    def __call__(
        self, *argv: str, input: str | None = None, common: bool = True
    ) -> subprocess.CompletedProcess[str]:
        extra = ["--data-dir", str(self.data_dir), "--config", str(self.config)] if common else []
        return subprocess.run(
            [sys.executable, "-m", "chaton.cli_admin", *argv, *extra],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )

    def ok(self, *argv: str, input: str | None = None) -> str:
        proc = self(*argv, input=input)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        return proc.stdout

    def fails(self, *argv: str, input: str | None = None) -> str:
        proc = self(*argv, input=input)
        assert proc.returncode != 0, proc.stdout
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr  # one line
        return proc.stderr

    def store(self) -> Store:
        return Store(self.data_dir / "chaton.db")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_account_lifecycle(cli: Cli) -> None:
    assert "created (admin)" in cli.ok(
        "account", "add", "Alice", "--admin", "--password-stdin", input=PASSWORD + "\n"
    )
    cli.ok("account", "add", "bob", "--password-stdin", input=PASSWORD + "\n")
    listing = cli.ok("account", "list")
    assert "Alice" in listing and "admin" in listing and "bob" in listing

    with cli.store() as store:
        alice = store.get_account("alice")
        assert alice is not None and alice.is_admin
        assert alice.password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert "bob is now admin" in cli.ok("account", "role", "BOB", "admin")
    cli.ok("account", "passwd", "bob", "--password-stdin", input="another-password\n")
    assert "deleted" in cli.ok("account", "del", "alice")
    listing = cli.ok("account", "list")
    assert "Alice" not in listing and "bob" in listing

    with cli.store() as store:
        entries = store.audit_since()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("cli:tester", "account.add", "Alice"),
        ("cli:tester", "account.add", "bob"),
        ("cli:tester", "account.role", "bob"),
        ("cli:tester", "account.passwd", "bob"),
        ("cli:tester", "account.del", "Alice"),
    ]
    assert all(e.source_ip == "" for e in entries)


def test_password_never_in_output_or_database(cli: Cli) -> None:
    proc = cli("account", "add", "carol", "--password-stdin", input=PASSWORD + "\n")
    assert proc.returncode == 0
    assert PASSWORD not in proc.stdout + proc.stderr
    blob = b"".join(p.read_bytes() for p in cli.data_dir.iterdir())
    assert PASSWORD.encode() not in blob


def test_duplicate_account_is_a_clean_error(cli: Cli) -> None:
    cli.ok("account", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    err = cli.fails("account", "add", "ALICE", "--password-stdin", input=PASSWORD + "\n")
    assert "already exists" in err


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("account", "add", "dave", "--password-stdin"), "short\n", "at least 8"),
        (("account", "add", "dave", "--password-stdin"), "", "no password"),
        (("account", "add", "9lives", "--password-stdin"), PASSWORD + "\n", "not a valid"),
        (("account", "passwd", "nobody", "--password-stdin"), PASSWORD + "\n", "no account"),
        (("account", "del", "nobody"), None, "no account"),
        (("account", "role", "nobody", "admin"), None, "no account"),
        (("ban", "add", "a b"), None, "not a nickname"),
        (("ban", "add", "eve", "--duration", "forever"), None, "not a duration"),
        (("ban", "add", "eve", "--duration", "0m"), None, "longer than zero"),
        (("ban", "del", "eve"), None, "no ban on eve"),
        (("audit", "--since", "yesterday-ish"), None, "--since"),
    ],
)
def test_errors_are_one_line_without_traceback(
    cli: Cli, argv: tuple[str, ...], stdin: str | None, message: str
) -> None:
    assert message in cli.fails(*argv, input=stdin)
    with cli.store() as store:
        assert store.list_accounts() == []
        assert store.audit_since() == []


def test_bad_config_file_is_a_clean_error(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("argon2_time_cost = 'lots'\n")
    proc = cli("account", "list", "--config", str(bad), common=False)
    assert proc.returncode != 0
    assert "argon2_time_cost" in proc.stderr and "Traceback" not in proc.stderr


def test_ban_lifecycle(cli: Cli) -> None:
    out = cli.ok("ban", "add", "10.1.2.3/8", "--duration", "2h", "--reason", "spam bots")
    assert "10.0.0.0/8" in out and "2h" in out
    cli.ok("ban", "add", "account:Mallory")
    cli.ok("ban", "add", "2001:DB8::1")
    listing = cli.ok("ban", "list")
    assert "10.0.0.0/8" in listing and "spam bots" in listing and "in 1h 59m" in listing
    assert "account:mallory" in listing and "2001:db8::1" in listing

    with cli.store() as store:
        bans = {(b.kind, b.value): b for b in store.list_bans()}
        assert set(bans) == {("cidr", "10.0.0.0/8"), ("account", "mallory"), ("ip", "2001:db8::1")}
        assert bans[("account", "mallory")].expires is None
        assert bans[("cidr", "10.0.0.0/8")].actor == "cli:tester"
        seq = store.changes_since(0).latest

    assert "lifted" in cli.ok("ban", "del", "2001:db8:0::1/128")
    assert "2001:db8::1" not in cli.ok("ban", "list")
    with cli.store() as store:
        assert [c.key for c in store.changes_since(seq).items] == ["ip 2001:db8::1"]
        actions = [(e.action, e.target) for e in store.audit_since()]
    assert actions == [
        ("ban.add", "10.0.0.0/8"),
        ("ban.add", "account:mallory"),
        ("ban.add", "2001:db8::1"),
        ("ban.del", "2001:db8::1"),
    ]

    audit = cli.ok("audit")
    assert "ban.add" in audit and "ban.del" in audit and "cli:tester" in audit
    assert "spam bots" in audit
    assert "ban.del" in cli.ok("audit", "--since", "1h")
    assert "no audit entries" in cli.ok("audit", "--since", "2999-01-01")
    assert "ban.add" in cli.ok("audit", "--since", "2000-01-01T00:00:00")


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.0/8", "::1", "::ffff:127.0.0.2"])
def test_loopback_ban_needs_force(cli: Cli, target: str) -> None:
    assert "--force" in cli.fails("ban", "add", target)
    with cli.store() as store:
        assert store.list_bans() == []
    cli.ok("ban", "add", target, "--force")
    with cli.store() as store:
        assert len(store.list_bans()) == 1


def test_reason_with_control_characters_refused(cli: Cli) -> None:
    assert "control characters" in cli.fails("ban", "add", "eve", "--reason", "x\x1b[2Jy")


def test_options_before_the_action_and_help(cli: Cli) -> None:
    proc = cli("account", "--data-dir", str(cli.data_dir), "list", common=False)
    assert proc.returncode == 0 and "no accounts" in proc.stdout
    proc = cli("ban", "add", "--help", common=False)
    assert proc.returncode == 0 and "--duration" in proc.stdout


def test_account_set_creates_or_updates_in_one_call(cli: Cli, tmp_path: Path) -> None:
    """For scripts and test harnesses: idempotent provisioning, the password on stdin."""
    assert "no account" in cli.fails("account", "set", "bot", "--password-stdin",
                                      input="botpassword1\n")
    out = cli.ok("account", "set", "bot", "--create", "--password-stdin",
                 input="botpassword1\n")
    assert "created" in out
    with cli.store() as store:
        first = store.get_account("bot")
    assert first is not None and first.role == "user"
    out = cli.ok("account", "set", "bot", "--create", "--admin", "--password-stdin",
                 input="botpassword2\n")
    assert "updated" in out
    with cli.store() as store:
        second = store.get_account("bot")
    assert second is not None and second.role == "admin"
    assert second.password_hash != first.password_hash
    assert "too short" in cli.fails("account", "set", "bot", "--password-stdin",
                                     input="short\n")
    # The minimum length is a setting.
    lenient = tmp_path / "lenient.toml"
    lenient.write_text(cli.config.read_text() + "min_password_length = 4\n")
    done = cli("account", "set", "tiny", "--create", "--password-stdin", input="abcd\n",
               common=False)
    assert done.returncode != 0  # without the config: no data dir given either
    done = subprocess.run(
        [sys.executable, "-m", "chaton.cli_admin", "account", "set", "tiny", "--create",
         "--password-stdin", "--data-dir", str(cli.data_dir), "--config", str(lenient)],
        input="abcd\n", capture_output=True, text=True, env=cli.env, timeout=30)
    assert done.returncode == 0, done.stderr
