"""The WebSocket framing in memory: chaton's frames against wsproto's client parser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import Opcode

from chaton.web.http_peer import looks_like_http
from chaton.web.origins import normalize_origin, origin_allowed, own_origins
from chaton.web.websocket import WebSocketLink, frame_lines

from web_clients import raw_frame

#: What the codec may put in a line: anything but CR, LF and NUL.
line_text = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]),
                    min_size=1, max_size=70_000 // 4)


def _client_reads(data: bytes) -> list[TextMessage | BytesMessage]:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    out: list[TextMessage | BytesMessage] = []
    for event in client.events():
        assert isinstance(event, TextMessage | BytesMessage), event
        out.append(event)
    return out


@given(st.lists(line_text, min_size=1, max_size=5), st.booleans())
def test_every_line_is_one_frame_without_its_terminator(lines: list[str], binary: bool) -> None:
    encoded = [line.encode() + b"\r\n" for line in lines]
    got = _client_reads(frame_lines(encoded, binary))
    assert all(m.message_finished for m in got)
    kind = BytesMessage if binary else TextMessage
    assert all(isinstance(m, kind) for m in got)
    texts = [m.data.decode() if isinstance(m, BytesMessage) else m.data for m in got]
    assert texts == lines


def test_blanked_lines_vanish_and_blocks_split() -> None:
    block = b":s 001 a :hi\r\n:s 002 a :there\r\n"
    got = _client_reads(frame_lines([b"", block, b"PING x\r\n", b""]))
    assert [m.data for m in got] == [":s 001 a :hi", ":s 002 a :there", "PING x"]


def test_invalid_utf8_never_reaches_a_text_frame() -> None:
    got = _client_reads(frame_lines([b"PRIVMSG a :\xff\xfeok\r\n"]))
    assert got[0].data == "PRIVMSG a :\ufffd\ufffdok"


@given(st.lists(line_text, min_size=1, max_size=4), st.integers(1, 50))
def test_inbound_lines_survive_any_chunking(lines: list[str], chunk: int) -> None:
    link = WebSocketLink("text.ircv3.net", 100_000)
    wire = b"".join(raw_frame(Opcode.TEXT, line.encode()) for line in lines)
    got: list[bytes] = []
    for i in range(0, len(wire), chunk):
        got += [x for x in link.receive(wire[i : i + chunk]) if isinstance(x, bytes)]
    assert got == [line.encode() for line in lines]


def test_close_handshake_is_answered() -> None:
    link = WebSocketLink(None, 1000)
    client = Connection(ConnectionType.CLIENT)
    assert link.receive(client.send(CloseConnection(code=1000, reason="bye"))) == []
    assert link.closed_by_peer == (1000, "bye")
    client.receive_data(b"".join(link.control))
    assert [type(e) for e in client.events()] == [CloseConnection]
    assert link.close_frame() == b""  # the handshake is over: nothing more to send


def test_sniffing_http_from_irc() -> None:
    assert looks_like_http(b"GET / HTTP/1.1\r\n") is True
    assert looks_like_http(b"GE") is None
    assert looks_like_http(b"NICK alice\r\n") is False
    assert looks_like_http(b"CAP LS 302\r\n") is False
    assert looks_like_http(b"P") is None and looks_like_http(b"PASS x\r\n") is False


def test_origin_rules() -> None:
    allowed = own_origins(["localhost", "::1", "chat.example.com"], [5555, 443])
    assert origin_allowed("https://localhost:5555", allowed)
    assert origin_allowed("https://[::1]:5555", allowed)
    assert origin_allowed("https://chat.example.com", allowed)  # :443 is the default
    assert not origin_allowed("http://localhost:5555", allowed)
    assert not origin_allowed("https://localhost:5556", allowed)
    assert not origin_allowed("null", allowed)
    assert origin_allowed(None, allowed)
    assert normalize_origin("HTTPS://Chat.Example.com:443/") == "https://chat.example.com"
