"""``chaton room ...`` as an admin runs it, next to a running server."""

from __future__ import annotations

from chaton.store import Store

from conftest import RunningServer, add_account, logged_in, run_chaton

PW = "cli rooms password 1"


def room(server: RunningServer, *args: str) -> tuple[int, str, str]:
    done = run_chaton("room", *args, "--data-dir", str(server.settings.data_dir))
    return done.returncode, done.stdout, done.stderr


def test_register_list_info_and_drop(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    code, out, err = room(server, "register", "#Ops", "--owner", "olga")
    assert code == 0, err
    assert "#Ops registered, owned by olga" in out
    code, out, _ = room(server, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ROOM", "OWNER", "MODES"]
    assert any(line.split()[:3] == ["#Ops", "olga", "+nt"] for line in lines)
    assert any(line.split()[:2] == ["#general", "admins"] for line in lines)
    code, out, _ = room(server, "info", "#ops")  # any case finds it
    assert "owner              olga" in out and "modes              +nt" in out
    # The running server has it, empty, and its owner is operator on joining.
    olga = logged_in(server, "olga", "olga", PW)
    olga.join("#Ops")  # as registered
    olga.send("NAMES #ops")
    assert olga.expect("353").params[-1] == "@olga"
    code, out, _ = room(server, "drop", "#ops")
    assert code == 0 and "no longer registered" in out
    notice = olga.expect("NOTICE", "#Ops")
    assert (notice.source or "").startswith("ChanServ!")
    with Store(server.settings.db_file, readonly=True) as store:
        actions = [(e.action, e.target) for e in store.audit_since()]
    assert ("room-register", "#Ops") in actions and ("room-drop", "#Ops") in actions


def test_set_reaches_the_members_from_chanserv(server: RunningServer) -> None:
    add_account(server.settings, "olga", PW)
    add_account(server.settings, "vic", PW)
    room(server, "register", "#ops", "--owner", "olga")
    vic = logged_in(server, "vic", "vic", PW).join("#ops")
    code, _, err = room(server, "set", "#ops", "--modes", "+m", "--topic", "quiet please",
                        "--grant", "vic=v")
    assert code == 0, err
    mode = vic.expect("MODE", "#ops", "+m")
    assert (mode.source or "").startswith("ChanServ!")
    assert vic.expect("TOPIC", "#ops").params[1] == "quiet please"
    code, _, err = room(server, "set", "#ops", "--modes=-m", "--owner", "vic")
    assert code == 0, err
    vic.expect("MODE", "#ops", "-m")
    code, out, _ = room(server, "info", "#ops")
    assert "owner              vic" in out and "vic(+v)" in out
    # vic now owns it: rejoining makes vic operator.
    vic.send("PART #ops")
    vic.expect("PART")
    vic.join("#ops")
    vic.send("NAMES #ops")
    assert vic.expect("353").params[-1] == "@vic"


def test_mistakes_are_one_line_errors(server: RunningServer) -> None:
    code, _, err = room(server, "register", "#x", "--owner", "nobody")
    assert code == 1 and err.startswith("chaton: error: there is no account")
    code, _, err = room(server, "register", "no-hash", "--owner", "admins")
    assert code == 1 and "not a valid room name" in err
    code, _, err = room(server, "drop", "#never")
    assert code == 1 and "not registered" in err
    code, _, err = room(server, "set", "#general")
    assert code == 1 and "nothing to set" in err
    code, _, err = room(server, "set", "#general", "--modes", "+o bob")
    assert code == 1 and "not o or v" in err
    code, _, err = room(server, "register", "#general", "--owner", "admins")
    assert code == 1 and "already registered" in err
    for text in (err,):
        assert "Traceback" not in text
    done = run_chaton("room", "set", "--help")
    assert done.returncode == 0 and "--grant" in done.stdout and "--modes" in done.stdout
