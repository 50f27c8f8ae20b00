"""Reload without restart, on a real ``chaton serve`` process: SIGHUP (and ``chaton
reload``) with a renewed certificate, a broken certificate and a broken config."""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.crash import ADMIN, ADMIN_PASSWORD, Irc, ServeProcess
from chaton import tls

from conftest import RunningServer, add_account, logged_in, run_chaton


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path, extra='motd = "first motd"\n')
    made = server.cli("account", "add", ADMIN, "--admin", "--password-stdin",
                      input=ADMIN_PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    server.start()
    yield server
    server.kill9()


def fingerprint(server: ServeProcess) -> str:
    """The SHA-256 of the certificate a new connection is shown."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with tls.client_context(server.ca_file).wrap_socket(raw, server_hostname="localhost") as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def logged(server: ServeProcess, text: str, after: int, timeout: float = 10.0) -> str:
    """Wait for the server's log to say ``text`` (after line ``after``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log[after:]:
            if text in line:
                return line
        time.sleep(0.05)  # the log is read by a thread: poll it until the line comes
    raise AssertionError(f"the server never logged {text!r}: {server.log[after:]}")


def motd(server: ServeProcess) -> str:
    """The message of the day a new client is shown (its last line)."""
    c = Irc(server.port, server.ca_file)
    c.register(f"m{time.monotonic_ns() % 10**6}")
    c.send("MOTD")
    text = c.expect(lambda m: m.command == "372").params[-1]
    c.close()
    return text


def hup(server: ServeProcess) -> int:
    mark = len(server.log)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    return mark


def test_sighup_takes_a_renewed_certificate_and_new_settings_and_keeps_everyone(
        serve: ServeProcess) -> None:
    before = fingerprint(serve)
    stayer = Irc(serve.port, serve.ca_file)
    stayer.register("stayer")
    admin = Irc(serve.port, serve.ca_file)
    admin.register("boss", ADMIN, ADMIN_PASSWORD)
    assert motd(serve).endswith("first motd")

    renewed = run_chaton("certs", "--renew", "--certs-dir", str(serve.certs_dir))
    assert renewed.returncode == 0, renewed.stderr
    assert "chaton reload" in renewed.stdout
    config = serve.config.read_text()
    serve.config.write_text(config.replace('"first motd"', '"second motd"')
                            .replace("port = 0", "port = 1"))
    mark = len(serve.log)
    asked = serve.cli("reload")  # chaton reload: finds the server by its data dir
    assert asked.returncode == 0 and str(serve.pid) in asked.stdout, asked.stderr
    line = logged(serve, "reloaded:", mark)
    assert "motd" in line and "certificate loaded" in line
    assert "port" in logged(serve, "not applied until a restart", mark)
    after = fingerprint(serve)
    assert after != before  # a new connection gets the new certificate
    assert motd(serve).endswith("second motd")
    stayer.send("PING :still here")  # the old connection is still up
    stayer.expect(lambda m: m.command == "PONG" and m.params[-1] == "still here")

    # a broken certificate: the renewed one stays, the admins are told
    serve.certs_dir.joinpath("server.pem").write_text("not a certificate\n")
    mark = hup(serve)
    assert "certificate was not reloaded" in logged(serve, "reload-failed", mark)
    told = admin.expect(lambda m: m.command == "NOTICE" and "Reload" in m.params[-1])
    assert "certificate" in told.params[-1]
    assert fingerprint(serve) == after

    # a broken config: the running settings stay
    serve.config.write_text(config + "motd = [\n")
    mark = hup(serve)
    assert "configuration was not reloaded" in logged(serve, "reload-failed", mark)
    assert motd(serve).endswith("second motd")
    admin.expect(lambda m: m.command == "NOTICE" and "configuration" in m.params[-1])
    assert serve.stop() == 0


def test_reload_without_a_server_says_so(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path)
    server.data_dir.mkdir(parents=True)
    done = server.cli("reload")
    assert done.returncode == 1 and "no server is running" in done.stderr


def test_admins_are_warned_30_and_7_days_before_the_certificate_expires(
        start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    add_account(server.settings, "root", "root password 1", admin=True)
    admin = logged_in(server, "root", "root", "root password 1")
    watch = server.server.cert_watch
    assert watch.expires is not None
    day = 86400.0

    def at(days_left: float) -> str | None:
        def check() -> str | None:
            watch.clock = lambda: watch.expires - days_left * day  # type: ignore[operator]
            watch._next = 0.0  # look now (the sweep looks once an hour)
            return watch.tick()
        return server.call(check)

    assert at(45) is None
    warned = at(29.5)
    assert warned is not None and "expires in 30 days" in warned
    assert "chaton certs --renew" in admin.expect("NOTICE", where=lambda m: "Certificate"
                                                  in m.params[-1]).params[-1]
    assert at(20) is None  # once per threshold
    six = at(6)
    assert six is not None and "expires in 6 days" in six
    assert at(3) is None
    expired = at(-1)
    assert expired is None  # both thresholds already told; a reload starts afresh
    server.call(watch.loaded)
    assert "has expired" in (at(-1) or "")


def test_renewal_needs_the_ca_clients_trust(tmp_path: Path) -> None:
    done = run_chaton("certs", "--renew", "--certs-dir", str(tmp_path / "nothing-here"))
    assert done.returncode == 2 and "renewal needs the CA" in done.stderr


class JsonServe(ServeProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--log-format", "json"]


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    import json

    server = JsonServe(tmp_path).start()
    try:
        c = Irc(server.port, server.ca_file)
        c.send("NICK evil\x1bnick")  # refused (432): whatever is logged stays one line
        c.expect(lambda m: m.command == "432")
        c.close()
        mark = hup(server)
        logged(server, "reloaded:", mark)
    finally:
        assert server.stop() == 0
    entries = [json.loads(line) for line in server.log if line.strip()]
    assert entries and all({"time", "level", "message"} <= set(e) for e in entries)
    assert any("listening on" in e["message"] for e in entries)
