"""Registration and liveness handlers: CAP, NICK, USER, PASS, PING, PONG, QUIT.

The rules of registration are the state machine's (``registration_state``); these handlers
feed it events and do the talking. :func:`progress` is the one place that starts the last
checks (``accounts.finish_registration``: PASS password, nickname owner, bans), and
:func:`complete` the one place a client becomes registered. The command table
(``commands.table``) says in which phases each command may be sent.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chaton import __version__
from chaton.protocol import numerics as num
from chaton.protocol.message import MAX_LINE_BYTES, Message
from chaton.protocol.names import casefold, valid_nick
from chaton.server.chathistory import replay_missed_private
from chaton.server.history import keep_event
from chaton.server.lines import ACCOUNT_TAG, MESSAGE_TAGS, SERVER_TIME, Outgoing, new_msgid
from chaton.server.registration_state import PassClaim

if TYPE_CHECKING:
    from chaton.server.app import ChatServer
    from chaton.server.session import Session

__all__ = [
    "HISTORY_CAPS",
    "SUPPORTED_CAPS",
    "cap",
    "change_nick",
    "complete",
    "guest_nick",
    "nick",
    "pass_",
    "ping",
    "pong",
    "progress",
    "quit_",
    "send_lusers",
    "send_motd",
    "user",
]

#: Capabilities chaton offers; ``sasl`` is offered with its mechanism list on CAP 302.
SUPPORTED_CAPS = (
    "server-time", "message-tags", "echo-message", "multi-prefix", "userhost-in-names",
    "account-tag", "account-notify", "away-notify", "extended-join", "invite-notify",
    "chghost", "setname", "cap-notify", "batch", "labeled-response", "extended-monitor",
    "sasl",
)
#: Offered with ``history`` on (``chaton.server.chathistory``).
HISTORY_CAPS = ("draft/chathistory", "draft/event-playback", "draft/search",
                "draft/read-marker", "draft/message-redaction")
_TAG_MODE_BITS = {"server-time": SERVER_TIME, "message-tags": MESSAGE_TAGS,
                  "account-tag": ACCOUNT_TAG}
_USERNAME = re.compile(r"[^A-Za-z0-9._-]")
USERLEN = 16
#: Longest real name (ISUPPORT ``NAMELEN``), from USER or SETNAME.
REALNAME_LEN = 100


def offered_caps(server: ChatServer) -> tuple[str, ...]:
    """What this server offers: the message store's capabilities only when it keeps one."""
    return SUPPORTED_CAPS + HISTORY_CAPS if server.settings.history else SUPPORTED_CAPS


def _cap_ls(server: ChatServer, conn: Session, version: int) -> None:
    caps = [("sasl=PLAIN" if c == "sasl" and version >= 302 else c)
            for c in offered_caps(server)]
    conn.send_msg("CAP", conn.name, "LS", " ".join(caps))


# CAP <subcommand> [:<capabilities>]
def cap(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    sub = msg.params[0].upper()
    if sub == "LS":
        conn.cap_started()
        arg = msg.param(1)
        # isdigit() is true for '²' and other digits int() refuses: ASCII digits only.
        version = int(arg) if arg.isascii() and arg.isdigit() and len(arg) < 6 else 0
        _cap_ls(server, conn, version)
    elif sub == "LIST":
        conn.send_msg("CAP", conn.name, "LIST", " ".join(sorted(conn.caps)))
    elif sub == "REQ":
        conn.cap_started()
        wanted = msg.param(1).split()
        names = [w[1:] if w.startswith("-") else w for w in wanted]
        if not wanted or any(n not in offered_caps(server) for n in names):
            conn.send_msg("CAP", conn.name, "NAK", msg.param(1))
            return None
        caps = set(conn.caps)
        for item in wanted:
            if item.startswith("-"):
                caps.discard(item[1:])
            else:
                caps.add(item)
        conn.caps = frozenset(caps)
        conn.tag_mode = sum(bit for cap_, bit in _TAG_MODE_BITS.items() if cap_ in conn.caps)
        conn.send_msg("CAP", conn.name, "ACK", " ".join(wanted))
    elif sub == "END":
        if conn.negotiating:
            conn.cap_ended()
            return progress(server, conn)
    else:
        conn.numeric(num.ERR_INVALIDCAPCMD, sub, "Invalid CAP command")
    return None


# NICK <nickname>
def nick(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    new = msg.param(0)
    if not new:
        conn.numeric(num.ERR_NONICKNAMEGIVEN, "No nickname given")
        return None
    if not valid_nick(new, server.settings.nicklen):
        conn.numeric(num.ERR_ERRONEUSNICKNAME, new, "Erroneous nickname")
        return None
    if server.state.nick_taken(new, conn):
        conn.numeric(num.ERR_NICKNAMEINUSE, new, "Nickname is already in use")
        return None
    # During CAP negotiation the client may still log in with SASL (clients send NICK, USER
    # and CAP REQ sasl together): a reserved nickname is checked when registration ends.
    authority = server.authority
    if authority is not None and not conn.negotiating and not authority.may_use_nick(conn, new):
        return None
    if not conn.registered:
        conn.nick_given(new)
        return progress(server, conn)
    if new != conn.nick:
        change_nick(server, conn, new)
    return None


def change_nick(server: ChatServer, conn: Session, new: str) -> None:
    """Rename a registered client (checked by the caller) and tell it and its peers."""
    out = Outgoing(conn.source, "NICK", [new], msgid=new_msgid(), account=conn.account)
    keep_event(server, conn.channels.values(), out, conn.source, conn.account, "NICK", [new])
    peers = server.state.peers(conn)
    old = conn.nick
    assert old is not None
    server.whowas.record(conn, old)
    server.state.rename(conn, old, new)
    conn.nick = new
    if casefold(old) != casefold(new):  # a change of case is the same nickname to MONITOR
        server.monitor.offline(old)
        server.monitor.online(conn)
    out.send_to(peers)
    conn.send(out.line_for(conn))


# USER <username> 0 * :<realname>
def user(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    if not msg.params[0] or not msg.params[3]:
        conn.numeric(num.ERR_NEEDMOREPARAMS, "USER", "A user name and a real name are needed")
        return None
    name = _USERNAME.sub("", msg.params[0])[:USERLEN]
    conn.user_given("~" + (name or "user"), msg.params[3][:REALNAME_LEN])
    return progress(server, conn)


# PASS <account>:<password>   (for clients without SASL)
def pass_(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    secret = " ".join(msg.params)  # a password with spaces sent without a ':' prefix
    account, sep, password = secret.partition(":")
    conn.pass_given(PassClaim(account, password) if sep and account else PassClaim("", secret))
    return None


# PING <token>
def ping(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    if not msg.params or not msg.params[0]:
        conn.numeric(num.ERR_NOORIGIN, "No origin specified")
        return None
    conn.send_msg("PONG", server.name, msg.params[0])
    return None


# PONG <token>   (any input already counts as a sign of life)
def pong(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    return None


# QUIT [:<reason>]
def quit_(server: ChatServer, conn: Session, msg: Message) -> Awaitable[None] | None:
    reason = msg.param(0)
    conn.quit(f"Quit: {reason[:200]}" if reason else "Client quit")
    return None


def guest_nick(server: ChatServer) -> str:
    """A free ``GuestNNNNN`` nickname (for a guest whose nickname became an account's)."""
    while True:
        candidate = f"Guest{secrets.randbelow(100000):05d}"
        if not server.state.nick_taken(candidate):
            return candidate


def progress(server: ChatServer, conn: Session) -> Awaitable[None] | None:
    """Start the last checks once the state machine says registration is ready."""
    if not conn.ready():
        return None
    assert conn.nick is not None
    if server.state.nick_taken(conn.nick, conn):
        conn.numeric(num.ERR_NICKNAMEINUSE, conn.nick, "Nickname is already in use")
        conn.nick_refused()
        return None
    conn.begin_checks()
    if server.accounts is not None:
        return server.accounts.finish_registration(conn)
    complete(server, conn)
    return None


def complete(server: ChatServer, conn: Session) -> bool:
    """Make ``conn`` a registered client and send the welcome burst; False if it lost its nick.

    The one place registration completes (phase CHECKING to REGISTERED).
    """
    assert conn.nick is not None
    if conn.closing:
        return False
    if server.state.nick_taken(conn.nick, conn):
        conn.numeric(num.ERR_NICKNAMEINUSE, conn.nick, "Nickname is already in use")
        conn.nick_refused()
        return False
    s = server.settings
    conn.complete()
    conn.last_active = time.monotonic()
    server.state.add_nick(conn, conn.nick)
    server.on_registered(conn)
    conn.numeric(num.RPL_WELCOME, f"Welcome to the {s.network_name} network, {conn.source}")
    _send_template(conn, _welcome_templates(server)[0])
    send_lusers(server, conn)
    _send_template(conn, _welcome_templates(server)[1])
    if conn.is_admin:
        conn.send_msg("MODE", conn.name, "+o", source=conn.nick)
    replay_missed_private(server, conn)
    return True


Template = list[tuple[bytes, bytes]]
#: Where a template's nickname goes: a private-use character no nickname can contain (NUL
#: would be turned into a space by the encoder, which never lets one onto the wire).
NICK_SLOT = "\ue000"


def _welcome_templates(server: ChatServer) -> tuple[Template, Template]:
    """The fixed parts of the welcome burst (002-005 and the MOTD), encoded once per server:
    registrations come in bursts, and these lines differ only by the nickname."""
    cached: tuple[Template, Template] | None = server.welcome_templates
    if cached is not None:
        return cached
    s = server.settings
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(server.started))
    head = [
        (num.RPL_YOURHOST, [f"Your host is {server.name}, running version chaton-{__version__}"]),
        (num.RPL_CREATED, [f"This server was created {created}"]),
    ]
    tokens = server.isupport
    isupport = [
        (num.RPL_ISUPPORT, [*tokens[i : i + 12], "are supported by this server"])
        for i in range(0, len(tokens), 12)
    ]
    lines = [line for line in s.motd.splitlines() if line.strip()]
    if lines:
        motd = [(num.RPL_MOTDSTART, [f"- {server.name} Message of the day - "])]
        motd += [(num.RPL_MOTD, [f"- {line}"]) for line in lines]
        motd += [(num.RPL_ENDOFMOTD, ["End of /MOTD command."])]
    else:
        motd = [(num.ERR_NOMOTD, ["MOTD File is missing"])]

    def encode(items: list[tuple[str, list[str]]]) -> Template:
        out = []
        for code, params in items:
            line = server.numeric_line(code, NICK_SLOT, params)  # the nick goes there
            before, _, after = line.partition(NICK_SLOT.encode())
            out.append((before, after))
        return out

    myinfo = server.encode(
        num.RPL_MYINFO,
        [NICK_SLOT, server.name, f"chaton-{__version__}", "io", "Ibeiklmnostv", "Ibeklov"],
        server.name,
    )
    before, _, after = myinfo.partition(NICK_SLOT.encode())
    result = ([*encode(head), (before, after), *encode(isupport)], encode(motd))
    server.welcome_templates = result
    return result


def _send_template(conn: Session, template: Template) -> None:
    nick = conn.name.encode()
    lines = [before + nick + after for before, after in template]
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE_BYTES:  # a long nick pushed a long MOTD line over: cut it
            lines[i] = line[: MAX_LINE_BYTES - 2].decode("utf-8", "ignore").encode() + b"\r\n"
    conn.send(b"".join(lines))


def send_lusers(server: ChatServer, conn: Session) -> None:
    users = len(server.state.nicks)
    unknown = max(0, len(server.sessions) - users)  # O(1): this runs in every welcome
    admins = len(server.admins)
    invisible = len(server.invisible)
    conn.numeric(num.RPL_LUSERCLIENT,
                 f"There are {users - invisible} users and {invisible} invisible on 1 server")
    conn.numeric(num.RPL_LUSEROP, str(admins), "operator(s) online")
    conn.numeric(num.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    conn.numeric(num.RPL_LUSERCHANNELS, str(len(server.state.channels)), "channels formed")
    conn.numeric(num.RPL_LUSERME, f"I have {users} clients and 0 servers")
    conn.numeric(num.RPL_LOCALUSERS, str(users), str(server.max_seen),
                 f"Current local users {users}, max {server.max_seen}")
    conn.numeric(num.RPL_GLOBALUSERS, str(users), str(server.max_seen),
                 f"Current global users {users}, max {server.max_seen}")


def send_motd(server: ChatServer, conn: Session) -> None:
    lines = [line for line in server.settings.motd.splitlines() if line.strip()]
    if not lines:
        conn.numeric(num.ERR_NOMOTD, "MOTD File is missing")
        return
    conn.numeric(num.RPL_MOTDSTART, f"- {server.name} Message of the day - ")
    for line in lines:
        conn.numeric(num.RPL_MOTD, f"- {line}")
    conn.numeric(num.RPL_ENDOFMOTD, "End of /MOTD command.")
