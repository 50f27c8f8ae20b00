"""Accounts over IRC: SASL, PASS, reserved nicknames, OPER, throttling, login storms."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from conftest import RunningServer, add_account, sasl_login, sasl_payload

StartServer = Callable[..., RunningServer]
PW = "correct horse battery"


def test_sasl_plain_logs_in_and_whois_shows_account(server: RunningServer) -> None:
    add_account(server.settings, "Alice", PW)
    c = server.client()
    reply = sasl_login(c, "alice", "alice", PW)
    assert reply.command == "903"
    logged = next(m for m in c.log if m.command == "900")
    assert logged.params[2] == "Alice"
    c.send("CAP END")
    c.expect("001", "alice")
    c.send("WHOIS alice")
    assert c.expect("330", "alice", "alice").params[2] == "Alice"


def test_sasl_long_password_is_sent_in_400_byte_chunks(server: RunningServer) -> None:
    password = "p" * 700  # base64 of the payload is over 900 bytes: three chunks
    add_account(server.settings, "bob", password)
    c = server.client()
    assert len(sasl_payload("bob", password)) == 3
    assert sasl_login(c, "bob", "bob", password).command == "903"


def test_only_an_argon2id_hash_is_stored(server: RunningServer) -> None:
    add_account(server.settings, "carol", PW)
    db = sqlite3.connect(server.settings.db_file)
    (stored,) = db.execute("SELECT password_hash FROM accounts").fetchone()
    db.close()
    assert stored.startswith("$argon2id$") and PW not in stored
    for path in server.settings.data_dir.iterdir():
        assert PW.encode() not in path.read_bytes()


def test_wrong_password_and_unknown_account_look_the_same(start_server: StartServer) -> None:
    server = start_server(login_failures_per_ip=0, login_failures_per_account=0)
    add_account(server.settings, "dave", PW)
    wrong = server.client()
    unknown = server.client()
    r1 = sasl_login(wrong, "dave", "dave", "not the password")
    r2 = sasl_login(unknown, "zed", "zed", "not the password")
    assert (r1.command, r1.params[1:]) == (r2.command, r2.params[1:]) == (
        "904", ("SASL authentication failed",)
    )
    # The same through PASS: a 464, then ERROR.
    for nick in ("dave", "nobody"):
        c = server.client()
        c.send(f"PASS {nick}:guess-again")
        c.send(f"NICK {nick}")
        c.send("USER u 0 * :u")
        assert c.expect("464").params[-1] == "Password incorrect"
        assert any(m.command == "ERROR" for m in c.wait_closed())


def test_failed_logins_are_throttled_per_ip(start_server: StartServer) -> None:
    server = start_server(login_failures_per_ip=3, login_failures_per_account=100)
    add_account(server.settings, "erin", PW)
    for _ in range(3):
        assert sasl_login(server.client(bind="127.0.0.2"), "x", "erin", "bad").command == "904"
    # Now even the right password is refused from that address...
    assert sasl_login(server.client(bind="127.0.0.2"), "erin", "erin", PW).command == "904"
    # ...while another address logs in fine.
    assert sasl_login(server.client(bind="127.0.0.3"), "erin", "erin", PW).command == "903"


def test_failed_logins_are_throttled_per_account(start_server: StartServer) -> None:
    server = start_server(login_failures_per_ip=100, login_failures_per_account=2)
    add_account(server.settings, "fred", PW)
    for ip in ("127.0.0.2", "127.0.0.3"):
        assert sasl_login(server.client(bind=ip), "x", "fred", "bad").command == "904"
    assert sasl_login(server.client(bind="127.0.0.4"), "fred", "fred", PW).command == "904"
    add_account(server.settings, "gina", PW)
    assert sasl_login(server.client(bind="127.0.0.4"), "gina", "gina", PW).command == "903"


def test_registered_nick_needs_its_account_in_any_case(server: RunningServer) -> None:
    add_account(server.settings, "Alice", PW)
    impostor = server.client()
    for attempt in ("alice", "ALICE", "Alice"):
        impostor.send(f"NICK {attempt}")
        fail = impostor.expect("FAIL", "NICK", "ACCOUNT_REQUIRED")
        assert "SASL" in fail.params[-1] and "PASS" in fail.params[-1]
        impostor.expect("433")
    impostor.send("NICK alice_")
    impostor.send("USER u 0 * :u")
    impostor.expect("001", "alice_")
    impostor.send("NICK Alice")
    impostor.expect("433")
    # The owner gets the nick with PASS...
    owner = server.client()
    owner.send(f"PASS alice:{PW}")  # spaces in the password, no ':' prefix: still whole
    owner.send("NICK alice")
    owner.send("USER u 0 * :u")
    owner.expect("001", "alice")


def test_pipelined_sasl_keeps_the_reserved_nick(server: RunningServer) -> None:
    """CAP LS, CAP REQ sasl, NICK and USER sent together, then SASL: no refusal on the way."""
    add_account(server.settings, "hank", PW)
    c = server.client()
    c.send("CAP LS 302")
    c.send("CAP REQ :sasl")
    c.send("NICK hank")
    c.send("USER u 0 * :u")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for line in sasl_payload("hank", PW):
        c.send(line)
    c.expect("903")
    c.send("CAP END")
    c.expect("001", "hank")
    assert not [m for m in c.log if m.command in ("433", "FAIL")]


def test_reserved_nick_refused_at_cap_end_then_login_finishes_registration(
    server: RunningServer,
) -> None:
    """The chaton client's flow: refused when registration ends, log in, registration goes on."""
    add_account(server.settings, "ida", PW)
    c = server.client()
    c.send("CAP LS 302")
    c.send("CAP REQ :sasl")
    c.send("NICK ida")
    c.send("USER u 0 * :u")
    c.expect("CAP", where=lambda m: m.param(1) == "ACK")
    c.send("CAP END")
    c.expect("FAIL", "NICK", "ACCOUNT_REQUIRED")
    c.expect("433")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for line in sasl_payload("ida", PW):
        c.send(line)
    c.expect("903")
    c.expect("001", "ida")  # the refused nickname is taken up after the login


def test_require_account_refuses_guests(start_server: StartServer) -> None:
    server = start_server(require_account=True)
    add_account(server.settings, "ivy", PW)
    guest = server.client()
    guest.send("NICK guest")
    guest.send("USER u 0 * :u")
    lines = guest.wait_closed()
    assert any(m.command == "ERROR" and "account is required" in m.params[0] for m in lines)
    member = server.client()
    assert sasl_login(member, "ivy", "ivy", PW).command == "903"
    member.send("CAP END")
    member.expect("001")


def test_oper_gives_admin_powers_with_one_generic_failure(server: RunningServer) -> None:
    add_account(server.settings, "root", PW, admin=True)
    add_account(server.settings, "user1", PW)
    c = server.client("someone")
    for name, password in (("root", "wrong"), ("nosuch", PW), ("user1", PW)):
        c.send(f"OPER {name} :{password}")
        assert c.expect("464").params[-1] == "Password incorrect"
    c.send("KILL nobody :x")
    c.expect("481")
    c.send(f"OPER root :{PW}")
    c.expect("381")
    c.send("KILL nobody :x")
    c.expect("401")


def test_login_storm_does_not_stall_room_messages(start_server: StartServer) -> None:
    # Hashes that cost real time, so the storm lasts while chat goes on.
    server = start_server(
        argon2_time_cost=2, argon2_memory_kib=32768, argon2_parallelism=1, hash_workers=2,
        login_failures_per_ip=0, login_failures_per_account=0, hash_queue_per_ip=0,
        max_unregistered_per_ip=0,  # the storm's 30 logins from one address at once
        flood_rate=0,  # the talker's 20 lines must not wait for flood-control tokens
    )
    add_account(server.settings, "storm", PW)
    talker = server.client("talker").join("#r")
    listener = server.client("listener").join("#r")
    stormers = [server.client() for _ in range(24)]
    for i, c in enumerate(stormers):
        c.send("CAP REQ :sasl")
        c.send(f"NICK s{i}")
        c.send("USER u 0 * :u")
        c.send("AUTHENTICATE PLAIN")
    for c in stormers:
        c.expect("AUTHENTICATE", "+")
    for c in stormers:  # every login now queues on the two hashing threads
        c.send(sasl_payload("storm", PW)[0])
    for i in range(20):
        talker.send(f"PRIVMSG #r :during storm {i}")
    got = [listener.expect("PRIVMSG", "#r").params[1] for _ in range(20)]
    assert got == [f"during storm {i}" for i in range(20)]
    busy = server.call(lambda: server.server.accounts.pool.in_flight)
    assert busy > 0, "the storm should still be hashing while chat flows"
    results = [c.expect(("903", "904"), timeout=30).command for c in stormers]
    assert results.count("903") == len(stormers)


def test_hash_pool_limit_answers_busy(start_server: StartServer) -> None:
    server = start_server(hash_workers=1, hash_queue_limit=1, argon2_time_cost=3,
                          argon2_memory_kib=65536, login_failures_per_ip=0)
    add_account(server.settings, "jo", PW)
    clients = [server.client() for _ in range(6)]
    barrier = threading.Barrier(len(clients))

    def go(c) -> None:  # type: ignore[no-untyped-def]
        c.send("CAP REQ :sasl")
        c.send("NICK j")
        c.send("AUTHENTICATE PLAIN")
        c.expect("AUTHENTICATE", "+")
        barrier.wait()
        c.send(sasl_payload("jo", PW)[0])

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    results = [c.expect(("903", "904"), timeout=30) for c in clients]
    assert "903" in [r.command for r in results]
    assert any(
        m.command == "NOTICE" and "busy" in m.params[-1] for c in clients for m in c.log
    )
