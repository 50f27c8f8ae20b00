"""Who a client is: regressions for the combinations an attacker with an account tried."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from conftest import (
    FAST_HASH,
    IrcClient,
    RunningServer,
    add_account,
    logged_in,
    run_chaton,
    sasl_login,
    sasl_payload,
)

StartServer = Callable[..., RunningServer]

PW = "a long password 1"


def test_pass_claim_plus_own_sasl_login_does_not_unlock_anothers_nick(
    server: RunningServer,
) -> None:
    """PASS admin:anything, then SASL as one's own account: not welcomed as admin."""
    add_account(server.settings, "admin", "the real admin password", admin=True)
    add_account(server.settings, "mallory", PW)
    c = server.client()
    c.send("PASS admin:anything")
    c.send("CAP LS 302")
    c.send("NICK admin")
    c.send("USER m 0 * :m")
    _sasl_plain(c, "mallory")
    c.send("CAP END")
    c.expect("FAIL", "NICK", "ACCOUNT_REQUIRED", "admin")
    c.expect("433")
    c.send("NICK mallory")
    welcome = c.expect("001")
    assert welcome.params[0] == "mallory"
    assert not any(m.command == "001" and m.params[0] == "admin" for m in c.log)
    c.send("UBAN LIST")
    c.expect("481")  # and no admin powers either


def test_guest_holding_a_nick_that_becomes_an_account_is_renamed(server: RunningServer) -> None:
    guest = server.client("carol")
    friend = server.client("friend")
    for c in (guest, friend):
        c.join("#team")
    config = server.settings.data_dir.parent / "cli.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in FAST_HASH.items()))
    made = run_chaton("account", "add", "carol", "--password-stdin", "--data-dir",
                      str(server.settings.data_dir), "--config", str(config), input=PW + "\n")
    assert made.returncode == 0, made.stderr
    renamed = guest.expect("NICK", timeout=2.0)
    new = renamed.params[0]
    assert new.startswith("Guest") and renamed.source is not None
    assert renamed.source.startswith("carol!")
    friend.expect("NICK", new)  # peers see the rename too
    told = guest.expect("NOTICE", where=lambda m: "belongs to the account carol" in m.params[-1])
    assert new in told.params[-1]
    logged_in(server, "carol", "carol", PW)  # the owner gets the name


# --- login limits under concurrency ---------------------------------------------------------


def _sasl_plain(c: IrcClient, account: str) -> None:
    """Request sasl, log in to ``account`` with PLAIN and wait for 903 (mid-registration or
    after it: the order around it is what the tests vary)."""
    c.send("CAP REQ :sasl")
    c.expect("CAP", where=lambda m: m.param(1) == "ACK")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for line in sasl_payload(account, PW):
        c.send(line)
    c.expect("903")


def _start_sasl(c: IrcClient, nick: str) -> None:
    c.send("CAP REQ :sasl")
    c.send(f"NICK {nick}")
    c.send("USER u 0 * :u")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")


def _guess_all_at_once(clients: list[IrcClient], account: str, password: str) -> list[str]:
    """Every client sends its SASL guess at the same moment; returns the 904/903 texts."""
    barrier = threading.Barrier(len(clients))

    def go(c: IrcClient) -> None:
        barrier.wait()
        for line in sasl_payload(account, password):
            c.send(line)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return [c.expect(("903", "904"), timeout=30).params[-1] for c in clients]


SLOW_HASH = {"argon2_time_cost": 2, "argon2_memory_kib": 32768, "hash_workers": 1}


def test_parallel_guesses_cannot_outrun_the_failure_limits(start_server: StartServer) -> None:
    server = start_server(login_failures_per_ip=5, login_failures_per_account=10,
                          hash_queue_per_ip=0, hash_queue_limit=100,
                          max_unregistered_per_ip=0, **SLOW_HASH)
    add_account(server.settings, "victim", PW)
    clients = []
    for i in range(58):
        c = server.client(bind=("127.0.0.2", "127.0.0.3")[i % 2])
        _start_sasl(c, f"g{i}")
        clients.append(c)
    replies = _guess_all_at_once(clients, "victim", "wrong guess")
    verified = [r for r in replies if r == "SASL authentication failed"]
    assert len(verified) <= 10, f"{len(verified)} guesses were hashed"
    assert all("Too many failed logins" in r for r in replies if r not in verified)
    late = server.client(bind="127.0.0.4")
    assert sasl_login(late, "victim", "victim", PW).command == "904"  # locked for strangers


def test_an_office_behind_one_address_logs_in_at_once(start_server: StartServer) -> None:
    """Ten people behind one NAT log in at the same moment, with the default limit of 5
    failures per address: attempts still in flight make the others wait, not fail."""
    server = start_server(login_failures_per_ip=5, hash_queue_per_ip=0,
                          max_unregistered_per_ip=0, **SLOW_HASH)
    clients = []
    for i in range(10):
        add_account(server.settings, f"worker{i}", PW)
        c = server.client(bind="127.0.0.5")
        _start_sasl(c, f"worker{i}")
        clients.append(c)
    barrier = threading.Barrier(len(clients))

    def go(i: int, c: IrcClient) -> None:
        barrier.wait()
        for line in sasl_payload(f"worker{i}", PW):
            c.send(line)

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    replies = [c.expect(("903", "904"), timeout=30) for c in clients]
    assert [r.command for r in replies] == ["903"] * 10, [r.params[-1] for r in replies]


def test_owner_from_a_known_address_is_not_locked_out_by_strangers(
    start_server: StartServer,
) -> None:
    server = start_server(login_failures_per_ip=100, login_failures_per_account=3)
    add_account(server.settings, "owner", PW)
    assert sasl_login(server.client(bind="127.0.0.5"), "owner", "owner", PW).command == "903"
    for ip in ("127.0.0.6", "127.0.0.7", "127.0.0.6", "127.0.0.7"):
        sasl_login(server.client(bind=ip), "x", "owner", "stranger's guess")
    stranger = server.client(bind="127.0.0.6")
    assert sasl_login(stranger, "owner", "owner", PW).command == "904"  # limit holds
    assert any("Too many failed logins" in m.params[-1] for m in stranger.log)
    owner = server.client(bind="127.0.0.5")
    assert sasl_login(owner, "owner", "owner", PW).command == "903"


def test_login_storm_from_a_few_addresses_cannot_starve_real_logins(
    start_server: StartServer,
) -> None:
    server = start_server(login_failures_per_ip=0, login_failures_per_account=0,
                          max_clients_per_ip=0, max_unregistered_per_ip=0, argon2_time_cost=3,
                          argon2_memory_kib=65536, hash_workers=1)
    storm = []
    for i in range(48):  # 8 addresses, 6 connections each: more than their share
        c = server.client(bind=f"127.0.1.{i % 8 + 1}")
        _start_sasl(c, f"s{i}")
        storm.append(c)
    real = []
    for i in range(8):
        add_account(server.settings, f"real{i}", PW)
        c = server.client(bind=f"127.0.2.{i + 1}")
        _start_sasl(c, f"real{i}")
        real.append(c)
    storm_replies: list[str] = []
    storming = threading.Thread(
        target=lambda: storm_replies.extend(_guess_all_at_once(storm, "nobody", "x"))
    )
    storming.start()
    deadline = time.monotonic() + 10
    pool = server.server.accounts.pool  # type: ignore[union-attr]
    while server.call(lambda: pool.in_flight) < 32:  # every storm address has its share
        assert time.monotonic() < deadline, "the storm never filled its share"
        time.sleep(0.01)
    for i, c in enumerate(real):
        for line in sasl_payload(f"real{i}", PW):
            c.send(line)
    results = [c.expect(("903", "904"), timeout=30).command for c in real]
    left = server.call(lambda: pool.in_flight)
    storming.join(60)
    assert results == ["903"] * 8
    assert left > 0, "the real logins waited for the whole storm (first come, first served)"
    busy = [r for r in storm_replies if "Server busy" in r]
    assert len(busy) == 16  # 2 per storm address, told distinctly, not "wrong password"


def test_admin_powers_are_checked_against_the_record_at_every_use(
    start_server: StartServer,
) -> None:
    """No poll in sight (an hour apart): a demotion written by another process still takes
    the powers away at the next admin command, because the command reads the record."""
    server = start_server(db_poll_interval=3600.0)
    add_account(server.settings, "boss", PW, admin=True)
    add_account(server.settings, "chief", PW, admin=True)
    boss = logged_in(server, "boss", "boss", PW)
    guest = server.client("guest")
    guest.send(f"OPER chief :{PW}")
    guest.expect("381")
    for c in (boss, guest):
        c.send("UBAN LIST")
        assert not any(m.command == "481" for m in c.sync())  # an admin now
    from chaton.store import Store

    with Store(server.settings.db_file) as store:  # as the CLI would, behind the server
        store.set_role("boss", "user")
        store.set_role("chief", "user")
    for c in (boss, guest):
        c.send("UBAN LIST")
        c.expect("MODE", where=lambda m: m.params[-1] == "-o")
        c.expect("481")
        c.send("KILL guest :bye")
        c.expect("481")
    assert server.call(lambda: len(server.server.admins)) == 0


def test_sasl_then_pass_for_another_account_unlocks_nothing(server: RunningServer) -> None:
    """The other order of the two login paths: SASL first, then a PASS claim for the admin."""
    add_account(server.settings, "admin", "the real admin password", admin=True)
    add_account(server.settings, "mallory", PW)
    c = server.client()
    c.send("CAP LS 302")
    _sasl_plain(c, "mallory")
    c.send("PASS admin:anything")
    c.send("NICK admin")
    c.send("USER m 0 * :m")
    c.send("CAP END")
    c.expect("433")
    c.send("NICK mallory")
    assert c.expect("001").params[0] == "mallory"
    c.send("UBAN LIST")
    c.expect("481")


def test_sasl_after_registration_logs_in_without_breaking_the_session(
    server: RunningServer,
) -> None:
    add_account(server.settings, "boss", PW, admin=True)
    c = server.client("visitor")
    _sasl_plain(c, "boss")
    assert any(m.command == "MODE" and m.params[-1] == "+o" for m in c.log)
    c.send("UBAN LIST")
    assert not any(m.command in ("481", "ERROR") for m in c.sync())
    c.send("AUTHENTICATE PLAIN")
    c.expect("907")  # one login per session
