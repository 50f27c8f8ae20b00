"""Pure tests of the client: slash commands, line safety, SASL payloads, display lines."""

from __future__ import annotations

import base64
import ssl
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.client.commands import (
    MAX_LINE_BYTES,
    Context,
    interpret,
    split_text,
    text_messages,
)
from chaton.client.connection import (
    CertificateInfo,
    Endpoint,
    explain_fingerprint_mismatch,
    explain_verify_error,
    parse_endpoint,
)
from chaton.client.sasl import (
    CHUNK,
    SaslOutcome,
    authenticate_lines,
    outcome_of,
    plain_payload,
)
from chaton.client.ui import event_time, format_event, sanitize
from chaton.protocol.message import Message, parse, serialize

CTX = Context(nick="alice", room="#general", rooms=("#general", "#Dev"))
NOROOM = Context(nick="alice")


def lines(text: str, ctx: Context = CTX) -> list[str]:
    """The wire lines a typed line produces."""
    return [serialize(m) for m in interpret(text, ctx).send]


def notes(text: str, ctx: Context = CTX) -> str:
    action = interpret(text, ctx)
    assert action.send == ()
    return " ".join(action.show)


# --- slash commands ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "wire"),
    [
        ("hello", ["PRIVMSG #general hello"]),
        ("hello world", ["PRIVMSG #general :hello world"]),
        (":colon first", ["PRIVMSG #general ::colon first"]),
        ("//etc/passwd is a path", ["PRIVMSG #general :/etc/passwd is a path"]),
        ("/msg bob hi there", ["PRIVMSG bob :hi there"]),
        ("/MSG bob hi", ["PRIVMSG bob hi"]),
        ("/query bob hi", ["PRIVMSG bob hi"]),
        ("/msg #dev hi all", ["PRIVMSG #dev :hi all"]),
        ("/notice bob ping", ["NOTICE bob ping"]),
        ("/me waves", ["PRIVMSG #general :\x01ACTION waves\x01"]),
        ("/nick alicia", ["NICK alicia"]),
        ("/join #ops", ["JOIN #ops"]),
        ("/join ops", ["JOIN #ops"]),
        ("/join #a,b", ["JOIN #a,#b"]),
        ("/join #secret k3y", ["JOIN #secret k3y"]),
        ("/part", ["PART #general"]),
        ("/part see you", ["PART #general :see you"]),
        ("/part #dev", ["PART #dev"]),
        ("/part #dev bye all", ["PART #dev :bye all"]),
        ("/who", ["WHO #general"]),
        ("/who #dev", ["WHO #dev"]),
        ("/names", ["NAMES #general"]),
        ("/whois bob", ["WHOIS bob"]),
        ("/list", ["LIST"]),
        ("/topic", ["TOPIC #general"]),
        ("/topic Release on Friday", ["TOPIC #general :Release on Friday"]),
        ("/away", ["AWAY"]),
        ("/away lunch", ["AWAY lunch"]),
        ("/quit", ["QUIT"]),
        ("/quit gone home", ["QUIT :gone home"]),
        ("/quote MODE alice +i", ["MODE alice +i"]),
        ("/raw PRIVMSG bob :hi you", ["PRIVMSG bob :hi you"]),
        ("/kick bob", ["KICK #general bob"]),
        ("/op bob", ["MODE #general +o bob"]),
        ("/deop bob carol", ["MODE #general -oo bob carol"]),
        ("/voice a b c d e", ["MODE #general +vvvv a b c d", "MODE #general +v e"]),
        ("/devoice bob", ["MODE #general -v bob"]),
        ("/invite bob", ["INVITE bob #general"]),
        ("/invite bob #dev", ["INVITE bob #dev"]),
        ("/register", ["PRIVMSG ChanServ :REGISTER #general"]),
        ("/register #dev", ["PRIVMSG ChanServ :REGISTER #dev"]),
        ("/cs amode #dev +o bob", ["PRIVMSG ChanServ :amode #dev +o bob"]),
        ("/mode +i", ["MODE #general +i"]),
        ("/mode #dev +k s3cret", ["MODE #dev +k s3cret"]),
        ("/mode +b *!*@user/eve", ["MODE #general +b *!*@user/eve"]),
        ("/mode", ["MODE #general"]),
        ("/kick bob stop spamming", ["KICK #general bob :stop spamming"]),
        ("/kill bob", ["KILL bob :no reason given"]),
        ("/kill bob flooding", ["KILL bob flooding"]),
        ("/ban bob", ["UBAN ADD bob"]),
        ("/ban bob spam links", ["UBAN ADD bob :spam links"]),
        ("/ban 203.0.113.7 2h", ["UBAN ADD 203.0.113.7 DURATION 2h"]),
        ("/ban 203.0.113.0/24 7d spam", ["UBAN ADD 203.0.113.0/24 DURATION 7d spam"]),
        ("/ban bob 1h30m stop it", ["UBAN ADD bob DURATION 1h30m :stop it"]),
        ("/ban bob 1w", ["UBAN ADD bob DURATION 1w"]),
        ("/ban bob 1h 30m stop it", ["UBAN ADD bob DURATION 1h30m :stop it"]),  # one grammar
        ("/ban bob 30m", ["UBAN ADD bob DURATION 30m"]),
        ("/ban bob 30minutes", ["UBAN ADD bob 30minutes"]),
        ("/ban 2001:db8::/32 1d", ["UBAN ADD 2001:db8::/32 DURATION 1d"]),
        ("/unban bob", ["UBAN DEL bob"]),
        ("/bans", ["UBAN LIST"]),
        ("/baninfo bob", ["UBAN INFO bob"]),
    ],
)
def test_command_lines(typed: str, wire: list[str]) -> None:
    assert lines(typed) == wire


def test_quit_marks_the_end() -> None:
    action = interpret("/quit bye", CTX)
    assert action.quit
    assert [m.command for m in action.send] == ["QUIT"]
    assert not interpret("hello", CTX).quit


def test_join_of_a_joined_room_switches_locally() -> None:
    action = interpret("/join dev", CTX)  # #Dev under casefolding
    assert action.send == ()
    assert action.switch_room == "#Dev"


@pytest.mark.parametrize(
    ("typed", "expect"),
    [
        ("/frobnicate now", "unknown command /frobnicate"),
        ("/", "unknown command /"),
        ("/msg bob", "usage: /msg"),
        ("/msg", "usage: /msg"),
        ("/me", "usage: /me"),
        ("/nick", "usage: /nick"),
        ("/nick two words", "usage: /nick"),
        ("/join", "usage: /join"),
        ("/kick", "usage: /kick"),
        ("/kill", "usage: /kill"),
        ("/ban", "usage: /ban"),
        ("/unban", "usage: /unban"),
        ("/whois", "usage: /whois"),
        ("/quote", "usage: /quote"),
        ("/quote :nocommand", "not a valid IRC line"),
        ("/quote PRIVMSG bob :" + "x" * 600, "longer than"),
        ("/kick :evil because", "cannot send that"),
        ("/help", "/msg NICK TEXT"),
    ],
)
def test_local_answers_send_nothing(typed: str, expect: str) -> None:
    assert expect in notes(typed)


@pytest.mark.parametrize(
    "typed", ["hi", "/me waves", "/part", "/topic x", "/who", "/kick bob", "/register"]
)
def test_room_commands_without_a_room(typed: str) -> None:
    assert "not in a room" in notes(typed, NOROOM)


def test_msg_works_without_a_room() -> None:
    assert lines("/msg bob hi", NOROOM) == ["PRIVMSG bob hi"]


def test_blank_lines_do_nothing() -> None:
    for typed in ("", "   ", "\t"):
        assert interpret(typed, CTX) == interpret("", CTX)
        assert interpret(typed, CTX).send == ()


def test_oper_never_takes_the_password_from_the_line() -> None:
    action = interpret("/oper boss", CTX)
    assert action.oper == "boss"
    assert action.send == ()
    typed_password = interpret("/oper boss hunter2", CTX)
    assert typed_password.oper is None
    assert typed_password.send == ()
    assert "hunter2" not in " ".join(typed_password.show)
    assert "prompt" in " ".join(typed_password.show)


def test_rooms_lists_with_current_marked() -> None:
    assert notes("/rooms") == "your rooms: [#general] #Dev"
    assert "no room" in notes("/rooms", NOROOM)


# --- injection safety -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "hi\r\nKILL bob :owned",
        "hi\nQUIT",
        "hi\rJOIN #evil",
        "/msg bob hi\r\nKILL bob",
        "/me waves\nMODE #general +o alice",
    ],
)
def test_line_breaks_in_text_become_more_messages_of_the_same_kind(typed: str) -> None:
    sent = interpret(typed, CTX).send
    assert len(sent) == 2
    first = sent[0].command
    for msg in sent:
        wire = serialize(msg)
        assert "\r" not in wire and "\n" not in wire
        assert parse(wire).command == first == "PRIVMSG"


@pytest.mark.parametrize(
    "typed",
    [
        "/topic new\r\nKILL bob",
        "/nick a\nQUIT",
        "/quote PRIVMSG bob hi\r\nKILL bob",
        "/kick bob\nKILL bob",
        "/ban bob 1h\r\nUBAN DEL carol",
        "/part #dev\nQUIT",
    ],
)
def test_line_breaks_in_other_commands_are_refused(typed: str) -> None:
    action = interpret(typed, CTX)
    assert action.send == ()
    assert "line breaks" in " ".join(action.show)


def test_nul_is_dropped() -> None:
    assert lines("a\x00b") == ["PRIVMSG #general ab"]


def test_long_text_is_split_on_spaces_and_fits_when_relayed() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    sent = interpret(words, CTX).send
    assert len(sent) > 1
    assert "".join(m.params[1] for m in sent) == words
    prefix = CTX.relay_prefix_len()
    for msg in sent:
        assert prefix + len(serialize(msg).encode()) <= MAX_LINE_BYTES
        assert msg.params[1].endswith(" ") or msg is sent[-1]


def test_long_action_keeps_the_ctcp_frame_on_every_piece() -> None:
    sent = interpret("/me " + "é" * 800, CTX).send
    assert len(sent) > 1
    for msg in sent:
        body = msg.params[1]
        assert body.startswith("\x01ACTION ") and body.endswith("\x01")


def test_known_source_length_allows_more_text() -> None:
    text = "x" * 2000
    guessed = text_messages("PRIVMSG", "#r", text, Context("n", "#r"))
    known = text_messages("PRIVMSG", "#r", text, Context("n", "#r", source_len=12))
    assert len(known) <= len(guessed)
    # 14 = ":" + 12-byte source + " "; the text fills the line up to the ":" it did not need.
    assert len(serialize(known[0]).encode()) + 14 == MAX_LINE_BYTES - 1


def test_long_parameters_of_other_commands_are_truncated_to_fit() -> None:
    sent = interpret("/topic " + "ü" * 600, CTX).send
    assert len(sent) == 1
    wire = serialize(sent[0]).encode()
    assert len(wire) <= MAX_LINE_BYTES
    wire.decode("utf-8")  # not cut inside a character


def test_absurd_target_is_refused() -> None:
    assert "too long" in notes("/msg " + "b" * 480 + " hi")


_typed = st.text(max_size=1200) | st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["/msg bob ", "/me ", "/topic ", "/kick bob ", "/ban bob 2h ", "/quote "]),
    st.text(max_size=800),
)


@settings(max_examples=400, deadline=None)
@given(_typed)
def test_nothing_typed_can_make_two_commands_or_an_overlong_line(typed: str) -> None:
    action = interpret(typed, CTX)
    for msg in action.send:
        wire = serialize(msg)
        assert not set(wire) & {"\r", "\n", "\x00"}
        assert len(wire.encode("utf-8")) <= MAX_LINE_BYTES
        assert parse(wire).command == msg.command
    if action.send and not typed.startswith("/"):
        assert {m.command for m in action.send} == {"PRIVMSG"}
        assert {m.params[0] for m in action.send} == {"#general"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000), st.integers(min_value=4, max_value=500))
def test_split_text_round_trips_within_budget(text: str, budget: int) -> None:
    pieces = split_text(text, budget)
    assert "".join(pieces) == text
    assert all(pieces)
    assert all(len(p.encode("utf-8", "surrogatepass")) <= budget for p in pieces)


# --- SASL -------------------------------------------------------------------------------------
def test_plain_payload_layout() -> None:
    assert plain_payload("alice", "s3cret") == b"\x00alice\x00s3cret"
    with pytest.raises(ValueError):
        plain_payload("al\x00ice", "x")


def test_short_payload_is_one_line() -> None:
    msgs = authenticate_lines(b"\x00alice\x00s3cret")
    assert [serialize(m) for m in msgs] == ["AUTHENTICATE AGFsaWNlAHMzY3JldA=="]


def test_empty_payload_is_a_plus() -> None:
    assert [m.params for m in authenticate_lines(b"")] == [("+",)]


def test_exactly_400_bytes_is_followed_by_a_plus() -> None:
    payload = b"x" * 300  # base64: exactly 400 characters
    msgs = authenticate_lines(payload)
    assert [len(m.params[0]) for m in msgs] == [400, 1]
    assert msgs[-1].params == ("+",)


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_chunks_reassemble_to_the_payload(payload: bytes) -> None:
    msgs = authenticate_lines(payload)
    chunks = [m.params[0] for m in msgs]
    assert all(m.command == "AUTHENTICATE" for m in msgs)
    assert all(0 < len(c) <= CHUNK for c in chunks)
    assert all(len(c) == CHUNK for c in chunks[:-1])
    data = "".join(c for c in chunks if c != "+")
    assert base64.b64decode(data) == payload
    assert chunks[-1] == "+" or len(chunks[-1]) < CHUNK
    for m in msgs:
        assert len(serialize(m)) <= MAX_LINE_BYTES


@pytest.mark.parametrize(
    ("line", "outcome"),
    [
        (":srv 903 alice :SASL authentication successful", SaslOutcome.SUCCESS),
        (":srv 907 alice :You have already authenticated", SaslOutcome.SUCCESS),
        (":srv 904 alice :SASL authentication failed", SaslOutcome.FAILED),
        (":srv 902 alice :You must use a nick assigned to you", SaslOutcome.FAILED),
        (":srv 905 alice :SASL message too long", SaslOutcome.FAILED),
        (":srv 906 alice :SASL authentication aborted", SaslOutcome.FAILED),
        (":srv 462 alice :You may not reregister", SaslOutcome.REFUSED),
        (":srv 421 alice AUTHENTICATE :Unknown command", SaslOutcome.REFUSED),
        (":srv FAIL AUTHENTICATE TOO_LATE :Registration is complete", SaslOutcome.REFUSED),
        (":srv 421 alice FOO :Unknown command", None),
        (":srv NOTICE alice :hello", None),
    ],
)
def test_sasl_outcomes(line: str, outcome: SaslOutcome | None) -> None:
    assert outcome_of(parse(line)) is outcome


def test_904_after_908_without_plain_means_unsupported() -> None:
    fail = parse(":srv 904 alice :SASL authentication failed")
    assert outcome_of(fail, {"EXTERNAL"}) is SaslOutcome.UNSUPPORTED
    assert outcome_of(fail, {"PLAIN", "EXTERNAL"}) is SaslOutcome.FAILED


# --- display lines ----------------------------------------------------------------------------
UTC_NOW = datetime(2024, 5, 1, 9, 15, tzinfo=UTC)


def show(line: str, me: str = "alice") -> str | None:
    return format_event(parse(line), me, tz=UTC, now=UTC_NOW)


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (":bob!b@h PRIVMSG #general :hi all", "09:15 #general <bob> hi all"),
        (":alice!a@h PRIVMSG #general :mine", "09:15 #general <alice> mine"),
        (":bob!b@h PRIVMSG alice :psst", "09:15 *bob* psst"),
        (":alice!a@h PRIVMSG bob :psst", "09:15 -> *bob* psst"),
        (":alice!a@h PRIVMSG Bob :\x01ACTION nods\x01", "09:15 -> *Bob* * alice nods"),
        (":bob!b@h PRIVMSG #general :\x01ACTION waves\x01", "09:15 #general * bob waves"),
        (":bob!b@h PRIVMSG alice :\x01ACTION winks\x01", "09:15 *bob* * bob winks"),
        (":bob!b@h PRIVMSG alice :\x01VERSION\x01", "09:15 [CTCP VERSION] from bob"),
        (":bob!b@h NOTICE #general :heads up", "09:15 #general -bob- heads up"),
        (":bob!b@h NOTICE alice :fyi", "09:15 -bob- fyi"),
        (":alice!a@h NOTICE bob :fyi", "09:15 -> -bob- fyi"),
        (":chaton.local NOTICE alice :Server restarting", "09:15 -!- Server restarting"),
        (":chaton.local NOTICE * :*** Looking up", "09:15 -!- *** Looking up"),
        (":bob!b@h JOIN #general", "09:15 #general -- bob joined"),
        (":bob!b@h PART #general", "09:15 #general -- bob left"),
        (":bob!b@h PART #general :lunch", "09:15 #general -- bob left (lunch)"),
        (":bob!b@h QUIT :Quit: bye", "09:15 -- bob quit (Quit: bye)"),
        (":bob!b@h QUIT", "09:15 -- bob quit"),
        (":bob!b@h NICK robert", "09:15 -- bob is now known as robert"),
        (":alice!a@h NICK alicia", "09:15 -- you are now known as alicia"),
        (":op!o@h KICK #general bob :spam", "09:15 #general -- bob was kicked by op (spam)"),
        (":op!o@h KICK #general alice", "09:15 #general -- you were kicked by op"),
        (":bob!b@h TOPIC #general :Ship it", "09:15 #general -- bob changed the topic to: Ship it"),
        (":bob!b@h TOPIC #general :", "09:15 #general -- bob cleared the topic"),
        (":srv 332 alice #general :Ship it", "09:15 #general -- topic: Ship it"),
        (":srv 331 alice #general :No topic is set", "09:15 #general -- no topic is set"),
        (":srv 353 alice = #general :alice @bob", "09:15 #general -- here: alice @bob"),
        (":srv 366 alice #general :End of /NAMES list.", None),
        (":srv 001 alice :Welcome to chaton, alice", "09:15 -!- Welcome to chaton, alice"),
        (":srv 005 alice CASEMAPPING=rfc1459 :are supported", None),
        (":srv 372 alice :- be nice", "09:15 -!- - be nice"),
        (":srv 401 alice bob :No such nick/channel", "09:15 -!- bob: No such nick/channel"),
        (":srv 481 alice :Permission Denied", "09:15 -!- Permission Denied"),
        (":srv 301 alice bob :at lunch", "09:15 -!- bob is away: at lunch"),
        (":srv 322 alice #dev 3 :code", "09:15 -!- #dev (3 here): code"),
        (":srv 254 alice 3 :channels formed", "09:15 -!- 3 channels formed"),
        (
            ":srv 352 alice #general bob 10.0.0.2 srv bob G* :0 Bob B",
            "09:15 #general -- bob (bob@10.0.0.2) [away, admin] Bob B",
        ),
        (":srv WARN UBAN X :careful", "09:15 -!- warning (UBAN): careful"),
        ("ERROR :Closing link (Killed)", "09:15 -!- ERROR: Closing link (Killed)"),
        ("PING :x", None),
        (":srv CAP alice ACK :sasl", None),
        (":srv FOO a b :c d", "09:15 -!- :srv FOO a b :c d"),
    ],
)
def test_event_lines(line: str, shown: str | None) -> None:
    assert show(line) == shown


def test_login_and_fail_lines_are_readable() -> None:
    assert show(":s 900 alice a!a@h alice :You are now logged in as alice") == (
        "09:15 -!- You are now logged in as alice"
    )
    assert show(":s FAIL NICK ACCOUNT_REQUIRED bob :Nick bob is registered") == (
        "09:15 -!- NICK failed: Nick bob is registered"
    )


def test_server_time_tag_wins_and_is_shown_in_the_local_zone() -> None:
    msg = parse("@time=2024-05-01T22:05:09.123Z :bob!b@h PRIVMSG #general :late")
    assert format_event(msg, "alice", tz=UTC, now=UTC_NOW) == "22:05 #general <bob> late"
    plus2 = timezone(timedelta(hours=2))
    assert event_time(msg, plus2) == "00:05"


def test_bad_time_tag_falls_back_to_the_clock() -> None:
    msg = parse("@time=yesterday :bob!b@h PRIVMSG #general :x")
    assert event_time(msg, UTC, UTC_NOW) == "09:15"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("\x02bold\x02 \x0304,01red\x03 \x1funder\x0f", "bold red under"),
        ("\x1b[2J\x1b[Hcleared?", "^[[2J^[[Hcleared?"),
        ("bell\x07", "bell^G"),
        ("del\x7f", "del^?"),
        ("tab\there", "tab here"),
        ("csi\x9b2J", "csi<U+009B>2J"),
        ("evil\u202edesrever", "evil<U+202E>desrever"),
        ("emoji 👍🏽 ok, café", "emoji 👍🏽 ok, café"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


def test_hostile_text_cannot_reach_the_terminal() -> None:
    line = show(":evil\x1b!e@h PRIVMSG #general :\x1b]0;pwned\x07\x1b[31mred\x0b\x0c\x08fake")
    assert line is not None
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line)


# --- addresses and TLS explanations -----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 5555),
        ("127.0.0.1:6697", "127.0.0.1", 6697),
        ("chat.example.org", "chat.example.org", 5555),
        ("chat.example.org:7000", "chat.example.org", 7000),
        ("[::1]:5555", "::1", 5555),
        ("[::1]", "::1", 5555),
        ("::1", "::1", 5555),
        ("fe80::1%lo", "fe80::1%lo", 5555),
    ],
)
def test_parse_endpoint(text: str, host: str, port: int) -> None:
    ep = parse_endpoint(text)
    assert (ep.host, ep.port) == (host, port)
    assert ep.tls_name == host


@pytest.mark.parametrize("text", ["", "host:", "host:0", "host:70000", "host:ab", "[::1", "[::1]x"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_server_name_override() -> None:
    ep = parse_endpoint("10.0.0.5:5555", "chaton.local")
    assert ep.tls_name == "chaton.local"
    assert str(parse_endpoint("[::1]:7")) == "[::1]:7"


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, message)
    exc.verify_code = code
    exc.verify_message = message
    return exc


INFO = CertificateInfo(
    fingerprint="AB:" * 31 + "CD",
    names=("chaton.local", "localhost"),
    not_after=datetime(2023, 1, 1, tzinfo=UTC),
)


def test_explain_unknown_ca() -> None:
    text = explain_verify_error(
        _verify_error(20, "unable to get local issuer certificate"),
        Endpoint("127.0.0.1"),
        None,
        INFO,
    )
    assert "--cafile certs/ca.pem" in text and "--fingerprint" in text
    assert INFO.fingerprint in text
    assert "system's trusted CAs" in text


def test_explain_name_mismatch() -> None:
    text = explain_verify_error(
        _verify_error(64, "IP address mismatch"), Endpoint("127.0.0.1", 5555), None, INFO
    )
    assert "not valid for the name '127.0.0.1'" in text
    assert "chaton.local, localhost" in text
    assert "chaton connect chaton.local:5555" in text
    assert "--server-name chaton.local" in text


def test_explain_expired() -> None:
    text = explain_verify_error(
        _verify_error(10, "certificate has expired"), Endpoint("h"), None, INFO
    )
    assert "expired on 2023-01-01" in text and "clock" in text


def test_explain_fingerprint_mismatch_shows_both() -> None:
    text = explain_fingerprint_mismatch("ab" * 32, "CD:" * 31 + "CD")
    assert "expected (--fingerprint): " + ":".join(["AB"] * 32) in text
    assert "actual (server):          " + ":".join(["CD"] * 32) in text


def test_message_roundtrip_helper_sanity() -> None:
    # The interpreter's messages are ordinary protocol messages.
    assert interpret("/msg bob hi", CTX).send == (Message("PRIVMSG", ("bob", "hi")),)


def test_quote_keeps_tags_drops_source_and_counts_tags_in_the_limit() -> None:
    assert lines("/quote @+draft/react=x :fake!u@h TAGMSG #general") == [
        "@+draft/react=x TAGMSG #general"
    ]
    assert "longer than" in notes("/quote @+t=" + "x" * 600 + " PING x")
