"""The registration state machine on its own: no sockets, no server, the clock passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.server.registration_state import (
    PassClaim,
    Phase,
    Registration,
    RegistrationError,
)


def fresh(now: float = 100.0, timeout: float = 60.0) -> Registration:
    return Registration(now, timeout)


def test_nick_and_user_make_it_ready_and_complete_is_the_only_way_in() -> None:
    reg = fresh()
    assert not reg.ready()
    reg.nick_given("alice")
    assert not reg.ready()
    reg.user_given("~u", "Alice")
    assert reg.ready() and reg.phase is Phase.CONNECTED
    with pytest.raises(RegistrationError):
        reg.complete()  # not without the checks
    reg.begin_checks()
    assert reg.phase is Phase.CHECKING
    reg.complete()
    assert reg.registered and reg.nick == "alice" and reg.realname == "Alice"


def test_cap_negotiation_suspends_registration_until_cap_end() -> None:
    reg = fresh()
    reg.cap_started()
    reg.nick_given("alice")
    reg.user_given("~u", "")
    assert reg.negotiating and not reg.ready()
    with pytest.raises(RegistrationError):
        reg.begin_checks()
    reg.cap_ended()
    assert reg.ready()


def test_cap_after_registration_does_not_suspend_anything() -> None:
    reg = fresh()
    reg.nick_given("a")
    reg.user_given("~u", "")
    reg.begin_checks()
    reg.complete()
    reg.cap_started()
    assert reg.registered
    reg.cap_ended()
    assert reg.registered


def test_a_sasl_login_discards_a_pass_claim_whatever_the_order() -> None:
    reg = fresh()
    reg.pass_given(PassClaim("admin", "anything"))
    reg.logged_in("mallory")
    reg.pass_given(PassClaim("admin", "again"))  # after the login: nothing to claim
    reg.nick_given("admin")
    reg.user_given("~u", "")
    reg.begin_checks()
    assert reg.take_pass_claim() is None
    assert reg.account == "mallory"


def test_a_pass_claim_is_taken_once_and_only_in_checking() -> None:
    reg = fresh()
    reg.pass_given(PassClaim("", "secret"))
    with pytest.raises(RegistrationError):
        reg.take_pass_claim()
    reg.nick_given("bob")
    reg.user_given("~u", "")
    reg.begin_checks()
    assert reg.take_pass_claim() == PassClaim("", "secret")
    assert reg.take_pass_claim() is None
    assert reg.account is None  # a claim is not a login


def test_a_refused_nick_goes_back_to_waiting_for_another() -> None:
    reg = fresh()
    reg.nick_given("carol")
    reg.user_given("~u", "")
    reg.begin_checks()
    reg.nick_refused()
    assert reg.phase is Phase.CONNECTED and reg.nick is None and not reg.ready()
    reg.nick_given("carol_")
    assert reg.ready()


def test_one_login_per_session() -> None:
    reg = fresh()
    reg.logged_in("alice")
    with pytest.raises(RegistrationError):
        reg.logged_in("root")


def test_registration_facts_cannot_change_after_registration() -> None:
    reg = fresh()
    reg.nick_given("a")
    reg.user_given("~u", "")
    reg.begin_checks()
    reg.complete()
    for event in (lambda: reg.user_given("~x", ""), lambda: reg.pass_given(PassClaim("", "p")),
                  lambda: reg.nick_given("b"), reg.begin_checks):
        with pytest.raises(RegistrationError):
            event()


def test_the_deadline_comes_from_the_injected_clock() -> None:
    reg = fresh(now=1000.0, timeout=30.0)
    assert not reg.expired(1030.0)
    assert reg.expired(1030.5)
    reg.nick_given("a")
    reg.user_given("~u", "")
    reg.begin_checks()
    assert reg.expired(1031.0)  # a login stuck in CHECKING still times out
    reg.complete()
    assert not reg.expired(10_000.0)


def test_close_reports_the_phase_it_left() -> None:
    reg = fresh()
    assert reg.close() is Phase.CONNECTED
    assert reg.closing and reg.close() is Phase.CLOSED


EVENTS = st.lists(
    st.sampled_from([
        "cap_started", "cap_ended", "nick", "user", "pass", "login", "begin", "take",
        "refuse", "complete",
    ]),
    max_size=30,
)


@settings(max_examples=300, derandomize=True)
@given(EVENTS)
def test_any_event_order_keeps_the_invariants(events: list[str]) -> None:
    """Whatever clients send and in whatever order, the machine either refuses the event
    with RegistrationError or keeps every rule of its invariant block."""
    reg = fresh()
    actions = {
        "cap_started": reg.cap_started, "cap_ended": reg.cap_ended,
        "nick": lambda: reg.nick_given("n"), "user": lambda: reg.user_given("~u", ""),
        "pass": lambda: reg.pass_given(PassClaim("x", "p")), "login": lambda: reg.logged_in("a"),
        "begin": reg.begin_checks, "take": reg.take_pass_claim, "refuse": reg.nick_refused,
        "complete": reg.complete,
    }
    taken_claims = 0
    for event in events:
        before = reg.phase
        try:
            result = actions[event]()
        except RegistrationError:
            assert reg.phase is before  # a refused event changes nothing
            continue
        if event == "take" and result is not None:
            taken_claims += 1
            assert reg.account is None  # only an unverified claim is handed out
        if reg.phase is Phase.REGISTERED:
            assert before in (Phase.CHECKING, Phase.REGISTERED)
            assert reg.nick is not None and reg.user is not None
            assert reg.pass_claim is None
        if reg.account is not None:
            assert reg.pass_claim is None
        if reg.phase is Phase.CHECKING:
            assert reg.nick is not None and reg.user is not None
    assert taken_claims <= events.count("pass")
