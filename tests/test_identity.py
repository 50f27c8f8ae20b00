"""Who a client is: regressions for the combinations an attacker with an account tried."""

from __future__ import annotations

from conftest import FAST_HASH, RunningServer, add_account, run_chaton, sasl_payload

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
    c.send("CAP REQ :sasl")
    c.expect("CAP", where=lambda m: m.param(1) == "ACK")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE", "+")
    for line in sasl_payload("mallory", PW):
        c.send(line)
    c.expect("903")
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
    real = server.client()
    real.send("CAP REQ :sasl")
    real.send("NICK carol")
    real.send("USER c 0 * :c")
    real.send("AUTHENTICATE PLAIN")
    real.expect("AUTHENTICATE", "+")
    for line in sasl_payload("carol", PW):
        real.send(line)
    real.expect("903")
    real.send("CAP END")
    assert real.expect("001").params[0] == "carol"
