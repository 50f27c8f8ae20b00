"""MARKREAD over real TLS: one account's read markers on all its devices, kept."""

from __future__ import annotations

from test_chathistory import HISTORY_CAPS, PW

from conftest import RunningServer, add_account, logged_in

CAPS = HISTORY_CAPS


def test_read_markers_follow_the_account_to_its_other_devices(server: RunningServer) -> None:
    add_account(server.settings, "alice", PW)
    caps = (*CAPS, "draft/read-marker")
    laptop = logged_in(server, "alice", "alice", PW, caps=caps)
    laptop.join("#team")
    laptop.send("MARKREAD #team")
    assert laptop.expect("MARKREAD").params == ("#team", "*")
    phone = logged_in(server, "alice2", "alice", PW, caps=caps)
    phone.join("#team")
    assert phone.expect("MARKREAD").params == ("#team", "*")  # told on JOIN
    laptop.send("MARKREAD #team timestamp=2026-12-03T10:00:00.000Z")
    for device in (laptop, phone):
        assert device.expect("MARKREAD").params == ("#team", "timestamp=2026-12-03T10:00:00.000Z")
    # it never moves back: an older time is answered with the newer one
    phone.send("MARKREAD #team timestamp=2026-12-03T09:00:00.000Z")
    for device in (laptop, phone):
        assert device.expect("MARKREAD").params == ("#team", "timestamp=2026-12-03T10:00:00.000Z")
    guest = server.client().register("guest", caps=caps).join("#team")
    guest.send("MARKREAD #team timestamp=2026-12-03T10:00:00.000Z")
    assert guest.expect("FAIL", "MARKREAD").params[1] == "ACCOUNT_REQUIRED"
    laptop.send("MARKREAD #elsewhere timestamp=2026-12-03T10:00:00.000Z")
    assert laptop.expect("FAIL", "MARKREAD").params[1] == "INVALID_PARAMS"
    laptop.send("MARKREAD #team yesterday")
    assert laptop.expect("FAIL", "MARKREAD").params[1] == "INVALID_PARAMS"
    # after a restart of the device (a new session), still there
    laptop.send("QUIT")
    laptop.wait_closed()
    again = logged_in(server, "alice", "alice", PW, caps=caps)
    again.join("#team")
    assert again.expect("MARKREAD").params == ("#team", "timestamp=2026-12-03T10:00:00.000Z")
