"""Admin powers over real TLS: KICK, KILL, UBAN (each ban kind), persistence, audit log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chaton.store import BanRecord, Store

from conftest import (
    FAST_HASH,
    REPO,
    CertFiles,
    IrcClient,
    RunningServer,
    add_account,
    logged_in,
    run_chaton,
    sasl_login,
)

StartServer = Callable[..., RunningServer]
PW = "admin password 1"


def admin_client(server: RunningServer, nick: str = "boss", **kw: str) -> IrcClient:
    add_account(server.settings, nick, PW, admin=True)
    return logged_in(server, nick, nick, PW, **kw)


def refused(c: IrcClient) -> list[str]:
    """The ERROR texts a client got before being closed."""
    return [m.params[0] for m in c.wait_closed() + c.log if m.command == "ERROR"]


def audit_actions(server: RunningServer) -> list[tuple[str, str, str]]:
    with Store(server.settings.db_file) as store:
        return [(e.actor, e.action, e.target) for e in store.audit_since()]


def test_non_admin_gets_481_for_kill_uban_and_482_for_kick(server: RunningServer) -> None:
    server.client("other").join("#r")  # the room's operator
    c = server.client("pleb").join("#r")
    c.send("KICK #r other")
    c.expect("482")
    for line in ("KILL other :bye", "UBAN ADD other", "UBAN LIST"):
        c.send(line)
        c.expect("481")
    assert audit_actions(server) == []


def test_admin_kicks_and_kills(server: RunningServer) -> None:
    boss = admin_client(server).join("#r")
    victim = server.client("victim").join("#r")
    witness = server.client("witness").join("#r")
    boss.send("KICK #r victim :calm down")
    kick = witness.expect("KICK", "#r", "victim")
    assert kick.params[2] == "calm down"
    victim.expect("KICK", "#r", "victim")
    victim.send("PRIVMSG #r :still here?")
    victim.expect("404")
    boss.send("KILL victim :enough")
    assert any("Killed by boss: enough" in text for text in refused(victim))
    boss.expect("NOTICE", where=lambda m: "Killed victim" in m.params[-1])
    actions = audit_actions(server)
    assert ("boss", "kick", "#r victim") in actions
    assert ("boss", "kill", "victim") in actions


def test_ip_ban_blocks_that_address_only_and_disconnects_at_once(server: RunningServer) -> None:
    boss = admin_client(server)
    target = server.client("target", bind="127.0.0.2")
    bystander = server.client("bystander", bind="127.0.0.3")
    boss.send("UBAN ADD 127.0.0.2 :spamming")
    fail = boss.expect("FAIL", "UBAN", "NEEDS_FORCE")  # loopback needs the force word
    assert "FORCE" in fail.params[-1]
    boss.send("UBAN ADD 127.0.0.2 FORCE spamming")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned 127.0.0.2"))
    texts = refused(target)
    assert any("banned" in t and "spamming" in t for t in texts)
    again = server.client(bind="127.0.0.2")
    assert any("spamming" in t and "permanent" in t for t in refused(again))
    bystander.send("PING :alive")
    bystander.expect("PONG")
    server.client("newcomer", bind="127.0.0.3")


def test_cidr_ban_blocks_its_range(server: RunningServer) -> None:
    boss = admin_client(server)
    boss.send("UBAN ADD 127.0.9.0/24 FORCE :that lab")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned 127.0.9.0/24"))
    assert refused(server.client(bind="127.0.9.77"))
    server.client("outside", bind="127.0.10.1")


def test_ipv6_ban(start_server: StartServer) -> None:
    server = start_server(host="127.0.0.1,::1")
    boss = admin_client(server)
    boss.send("UBAN ADD 0::1 FORCE :v6 troll")  # '::1' would start IRC's trailing parameter
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned ::1"))
    six = IrcClient("::1", server.port, server.ca_file)
    server.clients.append(six)
    assert any("v6 troll" in t for t in refused(six))
    server.client("v4user")  # IPv4 loopback is another address


def test_nick_ban_with_duration_and_its_expiry(server: RunningServer) -> None:
    boss = admin_client(server)
    troll = server.client("troll", bind="127.0.0.5")
    boss.send("UBAN ADD troll DURATION 2s :cool off")
    note = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned troll"))
    assert "not banned" in note.params[-1]  # its loopback IP needs FORCE, so only the nick
    assert any("cool off" in t for t in refused(troll))
    c = server.client(bind="127.0.0.5")
    c.send("NICK TROLL")  # any case
    assert "cool off" in c.expect("465").params[-1]
    c.wait_closed()
    other = server.client("someone", bind="127.0.0.5")  # same IP, other nick: fine
    time.sleep(2.2)
    server.client("troll")  # the ban lapsed without a restart
    other.send("PING :x")
    other.expect("PONG")


def test_duration_with_spaces_reads_the_same_on_the_server(server: RunningServer) -> None:
    boss = admin_client(server)
    boss.send("UBAN ADD nick:later DURATION 1h 30m spam links")
    note = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned later"))
    assert "for 1h 30m" in note.params[-1]
    boss.send("UBAN INFO nick:later")
    info = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Ban: later"))
    assert "spam links" in info.params[-1] and "expires in 1h 29m" in info.params[-1]


def test_uban_and_the_cli_write_the_same_ban_and_audit_line(server: RunningServer) -> None:
    boss = admin_client(server)
    boss.send("UBAN ADD nick:viairc DURATION 2h :spam links")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned viairc"))
    config = server.settings.data_dir.parent / "cli.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    made = run_chaton("ban", "add", "nick:viacli", "--duration", "2h", "--reason", "spam links",
                      "--data-dir", str(server.settings.data_dir), "--config", str(config))
    assert made.returncode == 0, made.stderr
    with Store(server.settings.db_file) as store:
        entries = {e.target: e for e in store.audit_since() if e.action == "ban.add"}
        bans = {b.value: b for b in store.list_bans()}
    assert entries["viairc"].reason == entries["viacli"].reason == "spam links (for 2h)"
    for name in ("viairc", "viacli"):
        ban = bans[name]
        assert ban.expires is not None and ban.expires - ban.created == 7200
        assert ban.reason == "spam links"


def test_account_ban_refuses_login(server: RunningServer) -> None:
    boss = admin_client(server)
    add_account(server.settings, "mallory", "mallory password")
    boss.send("UBAN ADD account:mallory :stolen laptop")
    boss.expect("NOTICE", where=lambda m: "account:mallory" in m.params[-1])
    c = server.client()
    c.send("CAP REQ :sasl")
    c.send("NICK mal")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    import base64

    c.send("AUTHENTICATE " + base64.b64encode(b"\0mallory\0mallory password").decode())
    assert "stolen laptop" in c.expect("465").params[-1]
    assert refused(c)


def test_ban_of_own_connection_needs_force(server: RunningServer) -> None:
    boss = admin_client(server)
    boss.send("UBAN ADD boss :oops")
    boss.expect("FAIL", "UBAN", "NEEDS_FORCE")
    boss.send("UBAN ADD 10.0.0.0/8")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned 10.0.0.0/8"))
    boss.send("UBAN ADD not/a/target")
    boss.expect("FAIL", "UBAN", "INVALID_TARGET")
    boss.send("UBAN ADD 10.1.0.0/16 DURATION forever")
    boss.expect("FAIL", "UBAN", "INVALID_DURATION")


def test_uban_list_info_del(server: RunningServer) -> None:
    boss = admin_client(server)
    boss.send("UBAN ADD 198.51.100.0/24 DURATION 1h :spam net")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned"))
    boss.send("UBAN LIST")
    entry = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Ban: 198.51.100.0/24"))
    assert "spam net" in entry.params[-1] and "expires in" in entry.params[-1]
    boss.expect("NOTICE", where=lambda m: "End of ban list (1 in force)" in m.params[-1])
    boss.send("UBAN INFO 198.51.100.0/24")
    boss.expect("NOTICE", where=lambda m: "by boss" in m.params[-1])
    boss.send("UBAN DEL 198.51.100.0/24")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Removed the ban"))
    boss.send("UBAN DEL 198.51.100.0/24")
    boss.expect("FAIL", "UBAN", "NO_SUCH_BAN")
    actions = [a for _, a, _ in audit_actions(server)]
    assert actions.count("ban.add") == 1 and actions.count("ban.del") == 1


def test_audit_shows_the_newest_lines_to_admins_only(server: RunningServer) -> None:
    """What the web panel shows: the CLI's and the server's actions, newest last."""
    boss = admin_client(server)
    config = server.settings.data_dir.parent / "cli.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    result = run_chaton("ban", "add", "nick:cli-banned", "--reason", "from the shell",
                        "--data-dir", str(server.settings.data_dir), "--config", str(config))
    assert result.returncode == 0, result.stderr
    boss.send("UBAN ADD nick:irc-banned :from irc")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned"))
    boss.send("AUDIT 2")
    first = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Audit: "))
    second = boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Audit: "))
    assert " cli:" in first.params[-1]
    assert "ban.add cli-banned: from the shell" in first.params[-1]
    assert " boss ban.add irc-banned: from irc" in second.params[-1]
    boss.expect("NOTICE", where=lambda m: m.params[-1] == "End of audit log (2 shown)")
    boss.send("AUDIT lots")
    boss.expect("FAIL", "AUDIT", "INVALID_PARAMS")
    other = server.client("nosy")
    other.send("AUDIT")
    other.expect("481")


def test_a_long_ban_list_is_capped_not_a_sendq_drop(start_server: StartServer) -> None:
    server = start_server(sendq_bytes=65536)
    with Store(server.settings.db_file) as store:
        for i in range(2000):
            store.add_ban(BanRecord("nick", f"spammer{i}", "a reason of some length", "t",
                                    1000.0 + i))
    svc = server.server.accounts
    assert svc is not None
    server.call(svc.authority.apply_changes)
    boss = admin_client(server)
    boss.send("UBAN LIST")
    got = [m.params[-1] for m in boss.sync() if m.command == "NOTICE"]
    listed = [t for t in got if t.startswith("Ban: ")]
    assert len(listed) == server.settings.max_list_replies
    assert listed[-1].startswith("Ban: spammer1999 ")  # the newest are shown
    assert any("1800 older bans are not shown" in t for t in got)
    assert got[-1] == "End of ban list (2000 in force)"


def test_admins_online_are_told_of_admin_actions(server: RunningServer) -> None:
    boss = admin_client(server)
    other_admin = admin_client(server, "chief")
    server.client("victim")
    boss.send("KILL victim :rude")
    told = other_admin.expect("NOTICE", where=lambda m: "kill victim" in m.params[-1])
    assert "boss" in told.params[-1] and "rude" in told.params[-1]


def test_ban_survives_restart(start_server: StartServer) -> None:
    server = start_server()
    boss = admin_client(server)
    boss.send("UBAN ADD 127.0.0.6 FORCE :persistent")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned"))
    server.stop()
    again = start_server()  # same data dir
    assert any("persistent" in t for t in refused(again.client(bind="127.0.0.6")))


def test_ban_from_offline_cli_applies_to_running_server(server: RunningServer) -> None:
    victim = server.client("victim", bind="127.0.0.7")
    config = server.settings.data_dir.parent / "cli.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    result = run_chaton(
        "ban", "add", "127.0.0.7", "--force", "--reason", "from the cli",
        "--data-dir", str(server.settings.data_dir), "--config", str(config),
    )
    assert result.returncode == 0, result.stderr
    assert any("from the cli" in t for t in refused(victim))  # picked up within seconds


# --- durability across kill -9 ---------------------------------------------------------------


@pytest.fixture
def server_process(tmp_path: Path, certs: CertFiles) -> Iterator[Callable[[], tuple]]:
    procs: list[subprocess.Popen[str]] = []
    config = tmp_path / "chaton.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    data = tmp_path / "data"

    def start() -> tuple[subprocess.Popen[str], int, Path, Path]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chaton", "serve", "--port", "0", "--certs-dir",
             str(certs.certs_dir), "--data-dir", str(data), "--config", str(config)],
            cwd=REPO, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        procs.append(proc)
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"listening on \S+ port (\d+)", line)
            if found:
                return proc, int(found.group(1)), data, config
        raise AssertionError("server did not start")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_acknowledged_ban_survives_kill_9(server_process, certs: CertFiles) -> None:  # type: ignore[no-untyped-def]
    proc, port, data, config = server_process()
    made = run_chaton("account", "add", "root", "--admin", "--password-stdin",
                      "--data-dir", str(data), "--config", str(config), input=PW + "\n")
    assert made.returncode == 0, made.stderr
    boss = IrcClient("127.0.0.1", port, certs.ca_file)
    assert sasl_login(boss, "root", "root", PW).command == "903"
    boss.send("CAP END")
    boss.expect("001")
    boss.send("UBAN ADD 127.0.0.8 FORCE :kill nine")
    boss.expect("NOTICE", where=lambda m: m.params[-1].startswith("Banned"))
    os.kill(proc.pid, signal.SIGKILL)  # the moment the admin was told
    proc.wait(10)
    boss.close()
    proc2, port2, _, _ = server_process()
    c = IrcClient("127.0.0.1", port2, certs.ca_file, bind="127.0.0.8")
    assert any("kill nine" in t for t in refused(c))
    proc2.send_signal(signal.SIGTERM)
    assert proc2.wait(15) == 0


def test_sigterm_tells_clients_and_exits_zero(server_process, certs: CertFiles) -> None:  # type: ignore[no-untyped-def]
    proc, port, _, _ = server_process()
    c = IrcClient("127.0.0.1", port, certs.ca_file)
    c.register("alice")
    proc.send_signal(signal.SIGINT)
    assert any("shutting down" in t for t in refused(c))
    assert proc.wait(15) == 0
