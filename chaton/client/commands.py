"""Slash commands and typed text -> IRC messages, with no I/O.

Invariants:
- :func:`interpret` never raises; a line it cannot send becomes a local notice and sends nothing.
- Every message it returns serializes to at most :data:`MAX_LINE_BYTES` bytes (tags excluded)
  and holds no CR, LF or NUL, so no typed or pasted text can smuggle a second IRC command in,
  and no server can be made to cut one line into two. Long chat text is split into several
  messages; other long parameters are truncated.
- Line breaks inside chat text start a new message of the same kind; in any other command they
  are refused.
- A password is never taken from the typed line: ``/oper NAME`` asks for it separately.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chaton.client.history import DEFAULT_LIMIT, SearchQuery
from chaton.protocol import message
from chaton.protocol.durations import take_duration
from chaton.protocol.message import Message, ProtocolError, parse, serialize
from chaton.protocol.names import is_channel, room_key

__all__ = [
    "HELP",
    "MAX_LINE_BYTES",
    "SOURCE_ALLOWANCE",
    "Action",
    "Context",
    "command_names",
    "interpret",
    "split_text",
    "text_messages",
]

#: Longest IRC line we send or expect a server to relay, CR LF excluded.
MAX_LINE_BYTES = message.MAX_LINE_BYTES - 2
#: Bytes we allow for ``!user@host`` when the server has not shown us our own full source yet.
SOURCE_ALLOWANCE = 80

_BREAKS = re.compile(r"\r\n|\r|\n")
_CTCP = "\x01"


@dataclass(frozen=True, slots=True)
class Context:
    """What the interpreter needs to know about the session right now."""

    nick: str
    room: str | None = None
    rooms: tuple[str, ...] = ()
    #: Length of our ``nick!user@host`` as the server shows it to others, when known.
    source_len: int | None = None

    def relay_prefix_len(self) -> int:
        """Bytes a server adds (``:source ``) when relaying our message to others."""
        source = self.source_len if self.source_len else len(self.nick) + SOURCE_ALLOWANCE
        return source + 2

    def joined(self, room: str) -> str | None:
        """The joined room that ``room`` names (same :func:`room_key`), as the server spelled it."""
        key = room_key(room)
        return next((r for r in self.rooms if room_key(r) == key), None)


@dataclass(frozen=True, slots=True)
class Action:
    """What to do for one typed line. An empty action means: nothing."""

    send: tuple[Message, ...] = ()
    #: Local feedback for the user (help, usage, errors); never sent to the server.
    show: tuple[str, ...] = ()
    #: Make this (already joined) room the current one.
    switch_room: str | None = None
    #: The client should end after sending ``send`` (which then holds the QUIT).
    quit: bool = False
    #: Ask for the operator password of this name (hidden), then send ``OPER <name> <password>``.
    oper: str | None = None
    #: ``/history``: (conversation, how many); the session knows what was shown already.
    history: tuple[str, int] | None = None
    #: ``/search``: the query; the session knows whether the server can search.
    search: SearchQuery | None = None


def _note(*lines: str) -> Action:
    return Action(show=tuple(lines))


HELP: tuple[str, ...] = (
    "Type text to talk in the current room. Commands:",
    "  /msg NICK TEXT          private message (also /query)",
    "  /me TEXT                action in the current room (* nick waves)",
    "  /notice TARGET TEXT     notice to a nick or room",
    "  /join ROOM [KEY]        join a room and make it current (or switch to a joined room)",
    "  /part [ROOM] [REASON]   leave the current room (or ROOM)",
    "  /rooms                  list your rooms",
    "  /nick NEW               change your nickname",
    "  /who [ROOM]             who is in the room      /names [ROOM]   nicknames in a room",
    "  /whois NICK             about a user            /list           all rooms",
    "  /topic [TEXT]           show or set the current room's topic",
    "  /away [TEXT]            mark yourself away (no text: back)",
    "  /history [N]            N earlier messages of the current room (default 50)",
    "  /history NICK|ROOM [N]  ... of a private conversation or another room",
    "  /search TEXT [in ROOM] [from NICK]   search the messages the server keeps",
    "  /quote RAW              send a raw IRC line (also /raw)",
    "  /quit [REASON]          leave chaton",
    "Room operator commands (in the current room):",
    "  /op NICK...  /deop NICK...  /voice NICK...  /devoice NICK...",
    "  /invite NICK [ROOM]     let NICK into an invite-only (+i) room",
    "  /mode [ROOM] MODES [ARGS]   e.g. /mode +i, /mode +k secret, /mode +b *!*@user.eve.*",
    "  /kick NICK [REASON]     remove a user from the current room",
    "  /register [ROOM]        keep the room (topic, modes, bans) across restarts; you own it",
    "  /cs COMMAND...          talk to ChanServ, the room service (/cs help)",
    "Admin commands:",
    "  /oper NAME              become an operator (the password is asked for, hidden)",
    "  /kill NICK [REASON]     disconnect a user from the server",
    "  /ban NICK|IP|CIDR [DURATION] [REASON]   e.g. /ban 203.0.113.0/24 7d spam",
    "                          DURATION looks like 30m, 2h, 7d, 1w, 1h30m (none: permanent)",
    "  /unban TARGET           lift a ban            /bans   list bans",
    "Start a line with // to send text that begins with a slash.",
)


# --- size limits -----------------------------------------------------------------------------
def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _clean(text: str) -> str:
    """Make ``text`` encodable and free of NUL; keep everything else the user typed."""
    text = text.replace("\x00", "")
    # Lone surrogates (from odd terminals or pipes) cannot be UTF-8 encoded.
    return text.encode("utf-8", "replace").decode("utf-8")


def split_text(text: str, budget: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``budget`` UTF-8 bytes; ``"".join`` gives it back.

    A cut falls after the last space of a piece when there is one in its second half, else
    between two characters (never inside one).
    """
    if budget < 4:
        raise ValueError("budget too small for one character")
    pieces: list[str] = []
    start = 0
    while start < len(text):
        used = 0
        end = start
        while end < len(text):
            size = _byte_len(text[end])
            if used + size > budget:
                break
            used += size
            end += 1
        if end < len(text):
            space = text.rfind(" ", start, end)
            if space >= 0 and space + 1 - start > (end - start) // 2:
                end = space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def text_messages(
    command: str, target: str, text: str, ctx: Context, *, action: bool = False
) -> tuple[Message, ...]:
    """PRIVMSG/NOTICE messages carrying ``text``: one per typed line, split to fit when relayed.

    Raises ``ValueError`` when the target leaves no room for text.
    """
    overhead = ctx.relay_prefix_len() + _byte_len(f"{command} {target} :")
    if action:
        overhead += _byte_len(f"{_CTCP}ACTION {_CTCP}")
    budget = MAX_LINE_BYTES - overhead
    if budget < 32:
        raise ValueError(f"the target {target[:40]!r} is too long")
    out: list[Message] = []
    for line in _BREAKS.split(_clean(text)):
        if not line:
            continue
        for piece in split_text(line, budget):
            body = f"{_CTCP}ACTION {piece}{_CTCP}" if action else piece
            out.append(Message(command, (target, body)))
    return tuple(out)


def _fit(msg: Message) -> Message:
    """Truncate the last parameter so the serialized line fits; raise if that cannot help."""
    line = serialize(msg)
    excess = _byte_len(line) - MAX_LINE_BYTES
    if excess <= 0:
        return msg
    if not msg.params:
        raise ValueError("the line is too long")
    last = msg.params[-1]
    keep = _byte_len(last) - excess
    if keep < 1:
        raise ValueError("the line is too long")
    cut = last.encode("utf-8")[:keep].decode("utf-8", "ignore")
    return _fit(Message(msg.command, (*msg.params[:-1], cut)))


# --- the commands ----------------------------------------------------------------------------
Handler = Callable[[str, Context], Action]


def _words(rest: str, count: int) -> list[str]:
    """Split off up to ``count - 1`` leading words; the last item is the remaining text."""
    parts = rest.split(None, count - 1)
    return parts + [""] * (count - len(parts))


def _room_name(name: str) -> str:
    return name if is_channel(name) else "#" + name


def _need_room(ctx: Context) -> str:
    if ctx.room is None:
        raise _Usage("you are not in a room; /join #room first")
    return ctx.room


class _Usage(Exception):
    """A typed command that cannot be sent; the message tells the user why."""


def _send(*msgs: Message, quit: bool = False) -> Action:
    return Action(send=tuple(_fit(m) for m in msgs), quit=quit)


def _cmd_msg(rest: str, ctx: Context) -> Action:
    target, text = _words(rest, 2)
    if not target or not text.strip():
        raise _Usage("usage: /msg NICK TEXT")
    return Action(send=text_messages("PRIVMSG", target, text, ctx))


def _cmd_notice(rest: str, ctx: Context) -> Action:
    target, text = _words(rest, 2)
    if not target or not text.strip():
        raise _Usage("usage: /notice TARGET TEXT")
    return Action(send=text_messages("NOTICE", target, text, ctx))


def _cmd_me(rest: str, ctx: Context) -> Action:
    room = _need_room(ctx)
    if not rest.strip():
        raise _Usage("usage: /me TEXT")
    return Action(send=text_messages("PRIVMSG", room, rest, ctx, action=True))


def _cmd_nick(rest: str, ctx: Context) -> Action:
    new, extra = _words(rest, 2)
    if not new or extra:
        raise _Usage("usage: /nick NEWNICK (one word)")
    return _send(Message("NICK", (new,)))


def _cmd_join(rest: str, ctx: Context) -> Action:
    rooms, key = _words(rest, 2)
    if not rooms:
        raise _Usage("usage: /join ROOM [KEY]")
    if " " in key.strip():
        raise _Usage("usage: /join ROOM [KEY] (the key is one word)")
    key = key.strip()
    names = [_room_name(r) for r in rooms.split(",") if r]
    if len(names) == 1 and (joined := ctx.joined(names[0])) is not None:
        return Action(switch_room=joined, show=(f"now talking in {joined}",))
    params = (",".join(names), key) if key else (",".join(names),)
    return _send(Message("JOIN", params))


def _cmd_part(rest: str, ctx: Context) -> Action:
    first, reason = _words(rest, 2)
    if first and is_channel(first):
        room = first
    else:
        room = _need_room(ctx)
        reason = rest.strip()
    return _send(Message("PART", (room, reason) if reason else (room,)))


def _cmd_rooms(rest: str, ctx: Context) -> Action:
    if not ctx.rooms:
        return _note("you are in no room; /join #room")
    listed = " ".join(f"[{r}]" if r == ctx.room else r for r in ctx.rooms)
    return _note(f"your rooms: {listed}")


def _cmd_who(rest: str, ctx: Context) -> Action:
    target = rest.split()[0] if rest.split() else _need_room(ctx)
    return _send(Message("WHO", (target,)))


def _cmd_names(rest: str, ctx: Context) -> Action:
    target = rest.split()[0] if rest.split() else _need_room(ctx)
    return _send(Message("NAMES", (target,)))


def _cmd_whois(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if len(words) != 1:
        raise _Usage("usage: /whois NICK")
    return _send(Message("WHOIS", (words[0],)))


def _cmd_list(rest: str, ctx: Context) -> Action:
    return _send(Message("LIST"))


def _cmd_topic(rest: str, ctx: Context) -> Action:
    room = _need_room(ctx)
    text = rest.strip()
    return _send(Message("TOPIC", (room, text) if text else (room,)))


def _cmd_away(rest: str, ctx: Context) -> Action:
    text = rest.strip()
    return _send(Message("AWAY", (text,) if text else ()))


#: Most messages one /history or /search asks for (the server may cap it lower).
MAX_RECALL = 1000


def _count(word: str, usage: str) -> int:
    if not word.isdigit() or not 1 <= int(word) <= MAX_RECALL:
        raise _Usage(f"{usage} (N from 1 to {MAX_RECALL})")
    return int(word)


def _cmd_history(rest: str, ctx: Context) -> Action:
    usage = "usage: /history [N] or /history NICK|ROOM [N]"
    words = rest.split()
    if len(words) > 2:
        raise _Usage(usage)
    count = DEFAULT_LIMIT
    target: str | None = None
    for word in words:
        if word.isdigit():
            count = _count(word, usage)
        elif target is None:
            target = word
        else:
            raise _Usage(usage)
    if target is None:
        target = _need_room(ctx)
    elif is_channel(target) and (joined := ctx.joined(target)) is not None:
        target = joined
    return Action(history=(target, count))


def _cmd_search(rest: str, ctx: Context) -> Action:
    usage = "usage: /search TEXT [in ROOM] [from NICK]"
    words = rest.split()
    room: str | None = None
    nick: str | None = None
    # The filters are the trailing "in X" / "from Y" pairs; everything before them is text.
    while len(words) >= 3 and words[-2].lower() in ("in", "from"):
        key, value = words[-2].lower(), words[-1]
        if key == "in" and room is None:
            room = value
        elif key == "from" and nick is None:
            nick = value
        else:
            break
        words = words[:-2]
    text = " ".join(words)
    if not text:
        raise _Usage(usage)
    return Action(search=SearchQuery(text, room, nick))


def _cmd_quit(rest: str, ctx: Context) -> Action:
    text = rest.strip()
    return _send(Message("QUIT", (text,) if text else ()), quit=True)


def _cmd_help(rest: str, ctx: Context) -> Action:
    return Action(show=HELP)


def _cmd_quote(rest: str, ctx: Context) -> Action:
    raw = rest.strip()
    if not raw:
        raise _Usage("usage: /quote RAW-IRC-LINE")
    try:
        parsed = parse(raw)
        msg = Message(parsed.command, parsed.params, tags=parsed.tags)  # no source: ours
        line = serialize(msg)
    except ProtocolError as exc:
        raise _Usage(f"not a valid IRC line: {exc}") from None
    if _byte_len(line) > MAX_LINE_BYTES:  # tags included: stricter than needed, never cut
        raise _Usage(f"the line is longer than {MAX_LINE_BYTES} bytes; nothing sent")
    return Action(send=(msg,))


def _status(letter: str, adding: bool) -> Handler:
    """``/op``, ``/deop``, ``/voice``, ``/devoice``: one MODE line per four nicknames."""

    def handler(rest: str, ctx: Context) -> Action:
        room = _need_room(ctx)
        nicks = rest.split()
        if not nicks:
            raise _Usage(f"usage: /{'' if adding else 'de'}{'op' if letter == 'o' else 'voice'}"
                         " NICK...")
        sign = "+" if adding else "-"
        lines = tuple(
            Message("MODE", (room, sign + letter * len(chunk), *chunk))
            for chunk in (nicks[i : i + 4] for i in range(0, len(nicks), 4))
        )
        return Action(send=lines)

    return handler


def _cmd_invite(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if not 1 <= len(words) <= 2:
        raise _Usage("usage: /invite NICK [ROOM]")
    room = words[1] if len(words) == 2 else _need_room(ctx)
    return _send(Message("INVITE", (words[0], room)))


def _cmd_register(rest: str, ctx: Context) -> Action:
    """``/register [ROOM]``: ask ChanServ to register the room (you must be logged in)."""
    words = rest.split()
    if len(words) > 1 or (words and not is_channel(words[0])):
        raise _Usage("usage: /register [ROOM]  (registers the current room by default)")
    room = words[0] if words else _need_room(ctx)
    return _send(Message("PRIVMSG", ("ChanServ", f"REGISTER {room}")))


def _cmd_cs(rest: str, ctx: Context) -> Action:
    if not rest.strip():
        raise _Usage("usage: /cs COMMAND [ARGS]  (/cs help lists them)")
    return _send(Message("PRIVMSG", ("ChanServ", _clean(rest.strip()))))


def _cmd_mode(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if words and is_channel(words[0]):
        room, words = words[0], words[1:]
    else:
        room = _need_room(ctx)
    if words and words[0][:1] not in "+-" and not words[0].isalpha():
        raise _Usage("usage: /mode [ROOM] +MODES [ARGS]  (e.g. /mode +i)")
    return _send(Message("MODE", (room, *words)))


def _cmd_kick(rest: str, ctx: Context) -> Action:
    room = _need_room(ctx)
    nick, reason = _words(rest, 2)
    if not nick:
        raise _Usage("usage: /kick NICK [REASON]")
    reason = reason.strip()
    return _send(Message("KICK", (room, nick, reason) if reason else (room, nick)))


def _cmd_kill(rest: str, ctx: Context) -> Action:
    nick, reason = _words(rest, 2)
    if not nick:
        raise _Usage("usage: /kill NICK [REASON]")
    # KILL <nickname> <comment>: the comment is required by the protocol.
    return _send(Message("KILL", (nick, reason.strip() or "no reason given")))


def _cmd_oper(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if len(words) != 1:
        raise _Usage(
            "usage: /oper NAME -- then type the password at the hidden prompt "
            "(never on the command line); nothing was sent"
        )
    if words[0].startswith(":"):
        raise _Usage("an operator name cannot start with ':'")
    return Action(oper=words[0])


def _cmd_ban(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if not words:
        raise _Usage("usage: /ban NICK|IP|CIDR [DURATION] [REASON]  (DURATION: 30m, 2h, 7d, 1w)")
    params: list[str] = ["ADD", words[0]]
    duration, reason_words = take_duration(words[1:])
    if duration:
        params += ["DURATION", duration.replace(" ", "")]
    reason = " ".join(reason_words)
    if reason:
        params.append(reason)
    return _send(Message("UBAN", tuple(params)))


def _cmd_unban(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if len(words) != 1:
        raise _Usage("usage: /unban NICK|IP|CIDR")
    return _send(Message("UBAN", ("DEL", words[0])))


def _cmd_bans(rest: str, ctx: Context) -> Action:
    return _send(Message("UBAN", ("LIST",)))


def _cmd_baninfo(rest: str, ctx: Context) -> Action:
    words = rest.split()
    if len(words) != 1:
        raise _Usage("usage: /baninfo NICK|IP|CIDR")
    return _send(Message("UBAN", ("INFO", words[0])))


_COMMANDS: dict[str, Handler] = {
    "msg": _cmd_msg,
    "query": _cmd_msg,
    "notice": _cmd_notice,
    "me": _cmd_me,
    "nick": _cmd_nick,
    "join": _cmd_join,
    "part": _cmd_part,
    "leave": _cmd_part,
    "rooms": _cmd_rooms,
    "who": _cmd_who,
    "names": _cmd_names,
    "whois": _cmd_whois,
    "list": _cmd_list,
    "topic": _cmd_topic,
    "away": _cmd_away,
    "history": _cmd_history,
    "search": _cmd_search,
    "quit": _cmd_quit,
    "exit": _cmd_quit,
    "help": _cmd_help,
    "quote": _cmd_quote,
    "raw": _cmd_quote,
    "kick": _cmd_kick,
    "op": _status("o", True),
    "deop": _status("o", False),
    "voice": _status("v", True),
    "devoice": _status("v", False),
    "invite": _cmd_invite,
    "mode": _cmd_mode,
    "register": _cmd_register,
    "cs": _cmd_cs,
    "kill": _cmd_kill,
    "oper": _cmd_oper,
    "ban": _cmd_ban,
    "unban": _cmd_unban,
    "bans": _cmd_bans,
    "baninfo": _cmd_baninfo,
}

#: Commands whose argument is chat text, where a line break starts another message.
_TEXT_COMMANDS = frozenset({"msg", "query", "notice", "me"})


def command_names() -> Sequence[str]:
    """Every slash command the client knows (for completion)."""
    return sorted(_COMMANDS)


def interpret(text: str, ctx: Context) -> Action:
    """Turn one typed (or piped) line into the messages to send and the notes to show."""
    if not text.strip():
        return Action()
    if text.startswith("//"):
        text = text[1:]
    elif text.startswith("/"):
        name, _, rest = text[1:].partition(" ")
        name = name.lower()
        handler = _COMMANDS.get(name)
        if handler is None:
            return _note(f"unknown command /{name[:30]}; type /help for the list; nothing was sent")
        if name not in _TEXT_COMMANDS and _BREAKS.search(rest):
            return _note(f"/{name}: line breaks are not allowed here; nothing was sent")
        try:
            return handler(_clean(rest), ctx)
        except _Usage as exc:
            return _note(str(exc))
        except (ProtocolError, ValueError) as exc:
            return _note(f"/{name}: cannot send that ({exc}); nothing was sent")
    if ctx.room is None:
        return _note("you are not in a room: /join #room, or /msg NICK TEXT")
    try:
        return Action(send=text_messages("PRIVMSG", ctx.room, text, ctx))
    except ValueError as exc:
        return _note(f"cannot send that ({exc})")
