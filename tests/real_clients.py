"""Drive the real irssi and WeeChat binaries against a chaton test server.

Each client runs with a throw-away home directory, verifies the server's certificate with the
test CA, and records its own raw IRC traffic to a file:

- **irssi** runs inside a private tmux server (its own socket, no ``~/.tmux.conf``); commands
  are typed with ``tmux send-keys``; ``/rawlog open`` (sent on connect by the chatnet's
  ``autosendcmd``) writes every line it sent (``<<``) and received (``>>``), the lines before
  the file was opened included.
- **WeeChat** is ``weechat-headless``; commands go through the fifo plugin (one
  ``buffer *text`` line each); the logger plugin writes the ``irc_raw`` buffer (``<--`` sent,
  ``-->`` received) to a file with no flush delay.

Waiting is always by polling a file with a deadline, never by sleeping for a fixed time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaton.protocol.message import Message, ProtocolError, parse

__all__ = [
    "CONNECT_ERRORS",
    "Irssi",
    "RawLine",
    "RealClient",
    "WeeChat",
    "readme_commands",
    "require",
]

README = Path(__file__).resolve().parent.parent / "README.md"

#: How long any one wait for a real client may take.
WAIT = 10.0

#: Error numerics a client provokes by itself on every connect, by design, and why.
#: irssi sends a bogus ``JOIN :`` right after ``CAP LS 302`` to detect servers without CAP
#: (irssi src/irc/core/irc-servers.c, "to detect non-CAP servers, send this bogus join");
#: before registration that is a ``451``. WeeChat 3.8 provokes none.
CONNECT_ERRORS: dict[str, frozenset[str]] = {
    "irssi": frozenset({"451"}),
    "weechat": frozenset(),
}


def require(kind: type[RealClient]) -> None:
    """Skip the test when the client is not installed, but fail under ``CI=true``, so CI
    can never pass by skipping."""
    missing = kind.missing()
    if not missing:
        return
    msg = (
        f"{', '.join(missing)} not installed (Debian: apt-get install irssi tmux "
        "weechat-headless weechat-plugins; .ci/run does this)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(msg)


def readme_block(heading: str) -> list[str]:
    """The lines of the first fenced block under the README's ``### heading``."""
    text = README.read_text("utf-8")
    section = text.split(f"\n### {heading}\n", 1)[1]
    block = section.split("```", 2)[1]
    return [line for line in block.splitlines()[1:] if line.strip()]


def readme_commands(kind: type[RealClient], version: tuple[int, ...], *, host: str,
                    port: int, account: str, password: str, room: str) -> list[str]:
    """What the README tells a user of ``kind`` to type, for this server and account.

    The README's example values are replaced (``chat.example.com``, ``5555``, ``alice``,
    ``SECRET``, ``#general``); ``~/ca.pem`` stays, the client's home holds the CA there.
    For WeeChat 4 the README's stated change is applied: ``-tls`` and ``tls_verify``.
    """
    lines = readme_block(kind.readme_heading)
    if kind is WeeChat and version >= (4, 0):
        lines = [line.replace(" -ssl", " -tls").replace(".ssl_verify", ".tls_verify")
                 for line in lines]
    out = []
    for line in lines:
        for example, real in (("chat.example.com", host), ("5555", str(port)),
                              ("SECRET", password), ("alice", account), ("#general", room)):
            line = line.replace(example, real)
        out.append(line)
    return out


@dataclass(frozen=True)
class RawLine:
    """One line of a real client's raw log: which way it went and the parsed message."""

    sent: bool
    text: str
    message: Message | None

    @property
    def command(self) -> str:
        return self.message.command if self.message else ""

    @property
    def source(self) -> str:
        return (self.message.source or "") if self.message else ""

    def is_error_numeric(self) -> bool:
        """A numeric reply from 400 to 599 (ERR_*) or a ``FAIL``, sent by the server."""
        if self.sent:
            return False
        return self.command == "FAIL" or (self.command.isdigit()
                                          and 400 <= int(self.command) <= 599)

    def __str__(self) -> str:
        return ("sent " if self.sent else "got  ") + self.text


def _parse(text: str) -> Message | None:
    try:
        return parse(text)
    except ProtocolError:
        return None


class RealClient:
    """What the tests need from a real client; subclasses know how to run one."""

    name = ""
    binaries: tuple[str, ...] = ()
    #: The README section that says how to connect with this client.
    readme_heading = ""

    def __init__(self, home: Path, host: str, port: int, ca_file: Path, nick: str,
                 setup: list[str] | None = None) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.ca_file = ca_file
        self.nick = nick
        #: Commands a user types to connect (the README's); None: the harness's own config.
        self.setup = setup
        self.rawlog = home / "raw.log"
        self._marks = 0
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_file, home / "ca.pem")  # the README's ~/ca.pem

    @staticmethod
    def version() -> tuple[int, ...]:
        """The installed client's version (major, minor)."""
        return ()

    # --- what subclasses provide -----------------------------------------------------------
    def launch(self) -> None:
        """Start the process, which connects to the server at once."""
        raise NotImplementedError

    def wait_ready(self) -> None:
        """Wait until the client is registered and done with its own first steps."""
        raise NotImplementedError

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def command(self, text: str, room: str | None = None) -> None:
        """Type ``text`` (a ``/command`` or a message), in ``room``'s window where it matters."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _parse_log_line(self, line: str) -> RawLine | None:
        raise NotImplementedError

    #: The reply that ends what the client asks by itself after joining a room.
    join_queries_end = ""

    def diagnostics(self) -> str:
        """What the client itself showed (its screen or logs), for assertion messages."""
        return ""

    #: What the client shows when the server's certificate does not verify.
    untrusted_certificate = ""

    @classmethod
    def missing(cls) -> list[str]:
        """What must be installed to run this client and is not."""
        return [name for name in cls.binaries if shutil.which(name) is None]

    # --- shared ------------------------------------------------------------------------------
    def wait_shown(self, pattern: str, timeout: float = WAIT) -> None:
        """Poll what the client shows (:meth:`diagnostics`) until ``pattern`` is in it."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, shown := self.diagnostics()):
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} never showed {pattern!r}:\n{shown}")
            time.sleep(0.1)

    def raw(self) -> list[RawLine]:
        """Every line the client sent and received so far."""
        try:
            data = self.rawlog.read_text("utf-8", "replace")
        except FileNotFoundError:
            return []
        lines = []
        for line in data.splitlines():
            parsed = self._parse_log_line(line)
            if parsed is not None:
                lines.append(parsed)
        return lines

    def wait_raw(
        self, what: str, pred: Callable[[RawLine], bool], *, after: int = 0,
        timeout: float = WAIT,
    ) -> int:
        """Poll the raw log until a line from index ``after`` on matches; return its index."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.raw()
            for i in range(after, len(lines)):
                if pred(lines[i]):
                    return i
            if time.monotonic() >= deadline:
                tail = "\n  ".join(str(x) for x in lines[-15:])
                raise AssertionError(
                    f"{self.name}: no {what} within {timeout:.0f} s; its raw log ends:\n  {tail}"
                    f"\n{self.diagnostics()}"
                )
            time.sleep(0.05)

    def wait_received(self, command: str, *params: str, after: int = 0) -> int:
        def match(line: RawLine) -> bool:
            m = line.message
            return (not line.sent and m is not None and m.command == command
                    and m.params[: len(params)] == params)

        return self.wait_raw(f"{command} {' '.join(params)}".strip(), match, after=after)

    def join(self, room: str) -> None:
        """``/join`` a room and wait until the client has the answers to its own queries
        about it (irssi: MODE, WHO, MODE b; WeeChat: MODE)."""
        start = len(self.raw())
        self.command(f"/join {room}")
        self.wait_received("366", self.nick, room, after=start)
        self.wait_received(self.join_queries_end, self.nick, room, after=start)

    def sync(self) -> list[RawLine]:
        """PING the server through the client and wait for its PONG: everything the server
        sent the client before it is then in the raw log, which is returned."""
        self._marks += 1
        token = f"{self.name}-sync-{self._marks}"
        self.command(f"/quote PING :{token}")

        def pong(line: RawLine) -> bool:
            m = line.message
            return not line.sent and m is not None and m.command == "PONG" and (
                m.params[-1:] == (token,)
            )

        i = self.wait_raw(f"PONG {token}", pong)
        return self.raw()[: i + 1]

    def errors(self) -> list[RawLine]:
        """Error numerics received, except the ones the client provokes on every connect
        (:data:`CONNECT_ERRORS`) before it is registered."""
        lines = self.raw()
        welcome = next((i for i, x in enumerate(lines) if x.command == "001"), len(lines))
        expected = CONNECT_ERRORS[self.name]
        return [
            x for i, x in enumerate(lines)
            if x.is_error_numeric() and not (i < welcome and x.command in expected)
        ]

    def __enter__(self) -> RealClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- irssi ---------------------------------------------------------------------------------

_IRSSI_SERVER = """\
servers = (
  {{
    address = "{host}";
    chatnet = "chaton";
    port = "{port}";
    use_tls = "yes";
    tls_verify = "yes";
    tls_cafile = "{ca}";
    autoconnect = "yes";
  }}
);
"""
#: The rest; alone, it is the setup for the README's commands (no server of our own; the
#: README's ``/network add`` adds nick and SASL to this chatnet and keeps the raw log).
_IRSSI_SETTINGS = """\
chatnets = {{
  chaton = {{ type = "IRC"; autosendcmd = "/rawlog open {rawlog}"; }};
}};
settings = {{
  core = {{
    real_name = "irssi under test";
    user_name = "{nick}";
    nick = "{nick}";
    rawlog_lines = "5000";
  }};
  "irc/core" = {{
    cmd_queue_speed = "0";
    cmds_max_at_once = "100";
  }};
  "fe-common/core" = {{ autolog = "no"; }};
}};
"""


class Irssi(RealClient):
    """irssi in a private tmux server; raw traffic from ``/rawlog open``.

    The config turns off irssi's flood queue (one command per 2.2 s after a burst of five):
    a person typing never notices it, a script of twenty commands would wait 40 s.
    """

    name = "irssi"
    binaries = ("irssi", "tmux")
    readme_heading = "irssi"
    join_queries_end = "368"
    untrusted_certificate = "Could not verify TLS servers certificate"

    def __init__(self, home: Path, host: str, port: int, ca_file: Path, nick: str,
                 setup: list[str] | None = None) -> None:
        super().__init__(home, host, port, ca_file, nick, setup)
        self.socket = home / "tmux.sock"
        self.session = "irssi"
        self.pid: int | None = None

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", os.devnull, *args],
            capture_output=True, text=True, timeout=WAIT, check=check,
        )

    def launch(self) -> None:
        config = self.home / "config"
        template = _IRSSI_SETTINGS if self.setup else _IRSSI_SERVER + _IRSSI_SETTINGS
        config.write_text(template.format(
            host=self.host, port=self.port, ca=self.ca_file, rawlog=self.rawlog, nick=self.nick,
        ))
        env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(self.home)}
        env.pop("TMUX", None)  # our own tmux server, even when the tests run inside tmux
        subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", os.devnull, "new-session", "-d",
             "-s", self.session, "-x", "200", "-y", "50",
             "irssi", f"--home={self.home}", f"--config={config}"],
            env=env, check=True, timeout=WAIT, capture_output=True,
        )
        out = self._tmux("list-panes", "-t", self.session, "-F", "#{pane_pid}").stdout
        self.pid = int(out.split()[0])
        if self.setup is not None:
            self.wait_shown(r"Irssi v\d")  # typed before irssi reads its terminal, keys
            for line in self.setup:        # would meet the tty's line editing instead
                if not line.startswith("/join"):
                    self.command(line)

    def wait_ready(self) -> None:
        # Registered, and past irssi's own post-connect step: one second after 001 it sets
        # its user mode (+i), which the server echoes.
        self.wait_received("001", self.nick)
        self.wait_raw("its MODE +i echoed", lambda x: not x.sent and x.command == "MODE"
                      and x.message is not None and x.message.params[:1] == (self.nick,))

    def command(self, text: str, room: str | None = None) -> None:
        """Typed into irssi's active window (after ``/join`` that is the room's)."""
        self._tmux("send-keys", "-t", self.session, "-l", "--", text)
        self._tmux("send-keys", "-t", self.session, "Enter")

    def _parse_log_line(self, line: str) -> RawLine | None:
        if line.startswith("<< "):
            return RawLine(True, line[3:], _parse(line[3:]))
        if line.startswith(">> "):
            return RawLine(False, line[3:], _parse(line[3:]))
        return None  # "--> redirect" notes and the like

    def diagnostics(self) -> str:
        with contextlib.suppress(Exception):
            screen = self._tmux("capture-pane", "-p", "-t", self.session, check=False).stdout
            return "irssi's screen:\n" + screen.rstrip()
        return ""

    def close(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        with contextlib.suppress(Exception):
            self._tmux("kill-server", check=False)


# --- WeeChat -------------------------------------------------------------------------------

_WEECHAT_RAW = re.compile(r"[^\t]*\t(<--|<==|-->|==>|R>>) \S+\t(.*)\Z")


def _weechat_unescape(text: str) -> str:
    """Undo the raw buffer's escaping of backslashes and control characters."""
    return re.sub(
        r"\\(\\|x[0-9A-F]{2})",
        lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1)[1:], 16)),
        text,
    )


class WeeChat(RealClient):
    """``weechat-headless`` with the irc, logger and fifo plugins."""

    name = "weechat"
    binaries = ("weechat-headless",)
    readme_heading = "WeeChat"
    join_queries_end = "324"
    untrusted_certificate = "peer's certificate is NOT trusted"
    #: Where Debian, Fedora and a source build put the plugins (fifo is in weechat-plugins).
    plugin_dirs = ("/usr/lib/*/weechat/plugins", "/usr/lib*/weechat/plugins",
                   "/usr/local/lib*/weechat/plugins")

    @classmethod
    def missing(cls) -> list[str]:
        missing = super().missing()
        if not missing and not any(glob.glob(f"{d}/fifo.*") for d in cls.plugin_dirs):
            missing.append("weechat's fifo plugin")
        return missing

    def __init__(self, home: Path, host: str, port: int, ca_file: Path, nick: str,
                 setup: list[str] | None = None) -> None:
        super().__init__(home, host, port, ca_file, nick, setup)
        self.rawlog = home / "logs" / "irc.irc_raw.weechatlog"
        self.fifo = home / "fifo"
        self.output = home / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def version() -> tuple[int, ...]:
        out = subprocess.run(["weechat-headless", "--version"], capture_output=True,
                             text=True, timeout=WAIT).stdout
        return tuple(int(x) for x in re.findall(r"\d+", out)[:2])

    def launch(self) -> None:
        # WeeChat 4 renamed the server options ssl* to tls* and anti_flood_prio_* (seconds)
        # to anti_flood (ms). Its flood queue would hold each of our commands for 2 s.
        server = "irc.server.chaton"
        if self.version() >= (4, 0):
            tls, no_flood = "tls", [f"/set {server}.anti_flood 0"]
        else:
            tls = "ssl"
            no_flood = [f"/set {server}.anti_flood_prio_high 0",
                        f"/set {server}.anti_flood_prio_low 0"]
        harness = ["/set logger.file.flush_delay 0", f"/set fifo.file.path {self.fifo}"]
        if self.setup is None:
            connect = [
                "/set weechat.network.gnutls_ca_system off",
                f"/set weechat.network.gnutls_ca_user {self.ca_file}",
                f"/server add chaton {self.host}/{self.port} -{tls}",
                f"/set {server}.{tls}_verify on",
                f"/set {server}.nicks {self.nick}",
                f"/set {server}.username {self.nick}",
                "/connect chaton",
            ]
        else:  # the README's lines, but /join waits until the test says
            connect = [line for line in self.setup if not line.startswith("/join")]
        at = next(i for i, line in enumerate(connect) if line.startswith("/connect"))
        commands = [
            *harness, *connect[:at], *no_flood,
            # The raw buffer is never logged (local variable no_log) unless we say so.
            "/server raw",
            "/command -buffer irc.irc_raw * /buffer delvar no_log",
            "/command -buffer irc.irc_raw * /logger set 9",
            *connect[at:],
        ]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                ["weechat-headless", "--dir", str(self.home), "--stdout", "--no-connect",
                 "--no-script", "--plugins", "irc,logger,fifo", "--run-command",
                 ";".join(commands)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                     "HOME": str(self.home)},
            )

    def wait_ready(self) -> None:
        self.wait_received("001", self.nick)
        self.wait_raw("end of MOTD", lambda x: x.command in ("376", "422"))
        deadline = time.monotonic() + WAIT
        while not self.fifo.exists():
            assert time.monotonic() < deadline, "WeeChat made no fifo\n" + self.diagnostics()
            time.sleep(0.05)

    def command(self, text: str, room: str | None = None) -> None:
        """Sent through the fifo to ``room``'s buffer, or the server's buffer."""
        buffer = f"irc.chaton.{room}" if room else "irc.server.chaton"
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"{buffer} *{text}\n".encode())
        finally:
            os.close(fd)

    def _parse_log_line(self, line: str) -> RawLine | None:
        m = _WEECHAT_RAW.match(line)
        if m is None:
            return None
        text = _weechat_unescape(m.group(2))
        return RawLine(m.group(1).startswith("<"), text, _parse(text))

    def diagnostics(self) -> str:
        parts = []
        # stdout, then every buffer's log (the server's and each room's: what it shows)
        logs = sorted((self.home / "logs").glob("*.weechatlog"))
        for path in (self.output, *logs):
            with contextlib.suppress(OSError):
                parts.append(f"{path.name}:\n" + "\n".join(
                    path.read_text("utf-8", "replace").splitlines()[-20:]))
        return "\n".join(parts)

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(WAIT)
        self.proc = None


@contextlib.contextmanager
def running(kind: type[RealClient], home: Path, host: str, port: int, ca_file: Path,
            nick: str, setup: list[str] | None = None) -> Iterator[RealClient]:
    """A started real client, killed on the way out whatever happened."""
    require(kind)
    client = kind(home, host, port, ca_file, nick, setup)
    try:
        client.start()
        yield client
    finally:
        client.close()
