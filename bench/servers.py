"""Start and stop the servers under test, and read their CPU time and memory from /proc.

Both servers get the same treatment: a fresh process per measurement, a TLS listener on
127.0.0.1 with the same certificate, flood penalties off, connection limits raised, and a
raised file-descriptor limit. Readiness is a verified TLS handshake, not a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = [
    "CHATON_ATTACK_SETTINGS",
    "CHATON_BENCH_SETTINGS",
    "ChatonServer",
    "NgircdServer",
    "ProcSample",
    "Server",
    "ServerError",
    "chaton_unavailable",
    "create_chaton_accounts",
    "create_chaton_accounts_cli",
    "export_revision",
    "free_port",
    "ngircd_install_hint",
    "raise_nofile_limit",
]

REPO = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")

#: chaton settings for a benchmark: flood control off, connection limits out of the way.
#: argon2 and everything else stay at their defaults (the login storm measures them).
CHATON_BENCH_SETTINGS: dict[str, Any] = {
    "server_name": "chaton.bench",
    "flood_rate": 0,
    "max_clients": 10000,
    "max_clients_per_ip": 0,  # 0 = no limit
    "connect_rate_per_ip": 0,
    "rooms_created_per_ip": 0,
    "max_unregistered_per_ip": 0,  # the generator registers many at once from one address
    "hash_queue_per_ip": 0,  # the generator's whole login storm comes from one address
    "sendq_bytes": 8 << 20,
    "ping_interval": 600.0,
    "ping_timeout": 600.0,
    "registration_timeout": 120.0,
    "tls_handshake_timeout": 60.0,
}

#: chaton settings for scenario (g), "under attack": chaton's shipped defaults (flood control,
#: per-address connection limits, login throttles all on), because (g) measures how well
#: those defences keep normal users served; only the name is the benchmark's.
CHATON_ATTACK_SETTINGS: dict[str, Any] = {"server_name": "chaton.bench"}

#: RFC 7919 ffdhe2048 group, so GnuTLS-built ngircd does not generate DH parameters on each
#: start (it never uses them with our ECDHE-only client anyway).
_FFDHE2048_PEM = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


class ServerError(Exception):
    """A server could not be configured, started or reached."""


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- /proc ---------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system) and resident memory of a process and its children."""

    cpu_s: float
    rss_bytes: int

    @classmethod
    def of(cls, pid: int) -> ProcSample:
        pids = _tree(pid)
        ticks = sum(_cpu_ticks(p) for p in pids)
        return cls(ticks / _CLK_TCK, sum(_rss_bytes(p) for p in pids))


# --- servers -------------------------------------------------------------------------------


def _limits_for_child() -> None:
    """Run in the child before exec: as many file descriptors as the hard limit allows."""
    raise_nofile_limit()


@dataclass
class Server:
    """A server under test; subclasses say how to configure and launch it."""

    workdir: Path
    certs_dir: Path
    name: str = "server"
    supports_sasl: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tls: str = ""  # negotiated protocol and cipher, seen by the readiness probe
    config_summary: dict[str, Any] = field(default_factory=dict)
    _log: Any = None

    @property
    def cafile(self) -> Path:
        return self.certs_dir / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write configuration files for :attr:`port` (called before every start)."""

    def version(self) -> str:
        raise NotImplementedError

    def sample(self) -> ProcSample:
        return ProcSample.of(self.pid)

    async def start(self, ssl_context: ssl.SSLContext, timeout: float = 30.0) -> None:
        """Launch on a free port and wait until a verified TLS handshake succeeds."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.prepare()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n=== start on port {self.port} ===\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env(),
            preexec_fn=_limits_for_child,
            start_new_session=True,  # a Ctrl-C on the runner reaches us, and we stop it
        )
        try:
            await self._wait_ready(ssl_context, timeout)
        except BaseException:
            self.stop()
            raise

    async def _wait_ready(self, ctx: ssl.SSLContext, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with status {self.proc.returncode} during startup:\n"
                    + self.log_tail()
                )
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host, self.port, ssl=ctx, server_hostname="localhost"
                    ),
                    5.0,
                )
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                last_error = str(exc) or type(exc).__name__
                await asyncio.sleep(0.05)
                continue
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is not None:
                self.tls = f"{sslobj.version()} {sslobj.cipher()[0]}"
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            return
        raise ServerError(
            f"{self.name} did not accept a TLS connection on port {self.port} within "
            f"{timeout:g}s (last error: {last_error}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; always leaves no process behind."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


@dataclass
class ChatonServer(Server):
    """``python -m chaton serve`` with the benchmark settings (see CHATON_BENCH_SETTINGS).

    ``root`` is the tree whose ``chaton/`` runs: this checkout, or an older revision exported
    by :func:`export_revision` (then ``revision`` is its short commit and the server is named
    ``chaton@<revision>``). Anything that needs chaton's code for an older tree (its settings,
    its database, its CLI) runs in a subprocess of that tree, never in this process.
    """

    name: str = "chaton"
    supports_sasl: bool = True
    data_dir: Path = Path("data")
    settings: dict[str, Any] = field(default_factory=dict)  # --set overrides, applied last
    extra_args: list[str] = field(default_factory=list)  # e.g. ["--event-loop", "asyncio"]
    #: what ``settings`` overrides; a scenario may swap it (CHATON_ATTACK_SETTINGS for (g))
    base: dict[str, Any] = field(default_factory=lambda: dict(CHATON_BENCH_SETTINGS))
    root: Path = REPO
    revision: str = ""  # short commit of an exported older tree ("" for this checkout)
    commit: str = ""  # its full commit
    #: the tree's Settings field names (None: not checked; this checkout knows all it is given)
    known_settings: frozenset[str] | None = None
    #: write a cProfile of each run to ``profile_path`` (set by the runner per run)
    profile_path: Path | None = None
    #: the generator's clients negotiate IRCv3 tags (server ``chaton+ircv3``): see IRCV3_CAPS
    ircv3: bool = False
    #: the generator's clients speak IRC over WebSocket (server ``chaton+ws``): an HTTP/1.1
    #: upgrade to ``/ws`` with ``text.ircv3.net`` inside the same TLS, ALPN ``http/1.1``
    websocket: bool = False

    @property
    def is_revision(self) -> bool:
        return self.root != REPO

    @property
    def config_path(self) -> Path:
        return self.workdir / "bench.toml"

    def effective_settings(self) -> dict[str, Any]:
        values = {**self.base, **self.settings}
        if self.known_settings is not None:
            values = {k: v for k, v in values.items() if k in self.known_settings}
        return values

    def dropped_settings(self) -> list[str]:
        """Settings the run would pass that this tree's Settings does not have."""
        if self.known_settings is None:
            return []
        return [k for k in {**self.base, **self.settings} if k not in self.known_settings]

    def run_python(self, code: str, *args: str, stdin: str = "", timeout: float = 60.0) -> str:
        """Run ``code`` with this tree's chaton (``python -c`` in ``root``); its stdout."""
        try:
            result = subprocess.run(
                [sys.executable, "-c", code, *args], input=stdin.encode(), capture_output=True,
                cwd=self.root, env=self.env(), timeout=timeout,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{self.name}: {exc}") from None
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise ServerError(f"{self.name}: {err[-1] if err else result.returncode}")
        return result.stdout.decode()

    def probe(self) -> list[str]:
        """For an older tree: check it imports from ``root``, learn its Settings fields and
        drop ``extra_args`` its ``serve`` does not know. Returns notes on what was dropped."""
        if not self.is_revision:
            return []
        out = json.loads(self.run_python(_PROBE))
        where = Path(out["file"]).resolve()
        if not where.is_relative_to(self.root.resolve()):
            raise ServerError(f"{self.name}: python imports chaton from {where}, not {self.root}")
        self.known_settings = frozenset(out["fields"])
        notes = []
        if dropped := self.dropped_settings():
            notes.append(f"{self.name}: its Settings has no {', '.join(dropped)}; "
                         "not passed to it")  # fmt: skip
        kept = []
        for arg in self.extra_args:
            option = arg.split("=", 1)[0]
            if option.startswith("--") and option not in out["serve_help"]:
                notes.append(f"{self.name}: its 'chaton serve' has no {option}; {arg} not passed")
            else:
                kept.append(arg)
        self.extra_args = kept
        return notes

    def loaded_settings(self) -> Any:
        """The :class:`chaton.config.Settings` the next start runs with (defaults filled in);
        for an older tree a namespace of the same values, read by that tree's loader."""
        self.prepare()
        if self.is_revision:
            text = self.run_python(_LOAD_SETTINGS, str(self.config_path), str(self.data_dir))
            return SimpleNamespace(**json.loads(text))
        from chaton.config import load_settings

        return load_settings(self.config_path, data_dir=self.data_dir)

    def prepare(self) -> None:
        values = self.effective_settings()
        self.config_summary = values
        self.workdir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        self.config_path.write_text("# written by python -m bench\n" + body)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def check_config(self) -> None:
        """Write the TOML and validate it with chaton's own loader (ServerError if unusable)."""
        if self.is_revision:
            try:
                self.loaded_settings()
            except ServerError as exc:
                raise ServerError(f"{self.name} rejects the benchmark settings: {exc}") from None
            return
        from chaton.config import ConfigError, load_settings

        self.prepare()
        try:
            load_settings(self.config_path, data_dir=self.data_dir)
        except ConfigError as exc:
            raise ServerError(f"chaton rejects the benchmark settings: {exc}") from None

    def command(self) -> list[str]:
        python = [sys.executable]
        if self.profile_path is not None:
            self.profile_path.parent.mkdir(parents=True, exist_ok=True)
            python += ["-m", "cProfile", "-o", str(self.profile_path)]
        return [
            *python, "-m", "chaton", "serve",
            "--host", self.host, "--port", str(self.port),
            "--certs-dir", str(self.certs_dir), "--data-dir", str(self.data_dir),
            "--config", str(self.config_path), *self.extra_args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # This tree first; for an older one, this checkout must not be on the path at all.
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if self.is_revision:
            rest = [p for p in rest if Path(p).resolve() != REPO]
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), *rest])
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def version(self) -> str:
        if self.is_revision:
            try:
                v = json.loads(self.run_python(_PROBE))["version"]
            except (ServerError, ValueError, KeyError):
                v = "?"
            return f"chaton {v} (Python {sys.version.split()[0]}), commit {self.revision}"
        try:
            from chaton import __version__
        except ImportError:
            __version__ = "?"
        return f"chaton {__version__} (Python {sys.version.split()[0]})"


#: Run in an older tree: where chaton comes from, its Settings fields, ``serve --help``.
_PROBE = """
import contextlib, dataclasses, io, json, sys
import chaton, chaton.config, chaton.cli
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
    chaton.cli.main(["serve", "--help"])
print(json.dumps({"file": chaton.__file__, "version": getattr(chaton, "__version__", "?"),
                  "fields": [f.name for f in dataclasses.fields(chaton.config.Settings)],
                  "serve_help": help_text.getvalue()}))
"""

#: Run in an older tree: its loader's Settings for a config file, as JSON.
_LOAD_SETTINGS = """
import dataclasses, json, sys
from pathlib import Path
from chaton.config import load_settings
s = load_settings(Path(sys.argv[1]), data_dir=Path(sys.argv[2]))
print(json.dumps({f.name: getattr(s, f.name) for f in dataclasses.fields(s)}, default=str))
"""

#: Run in an older tree: create_chaton_accounts with that tree's hashing and database.
_ADD_ACCOUNTS = """
import sys
from pathlib import Path
from chaton.config import load_settings
from chaton.passwords import Passwords
from chaton.store import AccountExists, Store
settings = load_settings(Path(sys.argv[1]), data_dir=Path(sys.argv[2]))
password = sys.stdin.read()
hashed = Passwords(settings).hash(password)
with Store(settings.db_file) as store:
    for name in sys.argv[3:]:
        try:
            store.add_account(name, hashed)
        except AccountExists:
            store.set_password_hash(name, hashed)
"""


def export_revision(rev: str, parent: Path) -> tuple[str, str, Path]:
    """Export chaton at git revision ``rev`` of this repository to ``parent/chaton-<short>``.

    ``git archive`` of the commit, unpacked: a plain tree, so nothing is registered in the
    repository (unlike ``git worktree add``) and removing the directory is the whole cleanup.
    Returns (full commit, short commit, tree). ServerError if ``rev`` is not a commit.
    """

    def git(*args: str) -> bytes:
        try:
            result = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                    timeout=120)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"git {args[0]}: {exc}") from None
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip()
            raise ServerError(f"git {' '.join(args)}: {err or result.returncode}")
        return result.stdout

    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    short = git("rev-parse", "--short", commit).decode().strip()
    tree = parent / f"chaton-{short}"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit))) as tar:
        tar.extractall(tree, filter="data")
    if not (tree / "chaton" / "__main__.py").is_file():
        raise ServerError(f"{rev} ({short}) has no chaton/__main__.py to run")
    return commit, short, tree


def chaton_unavailable(server: ChatonServer | None = None) -> str | None:
    """Why ``python -m chaton serve`` (of ``server``'s tree) cannot run, or None if it can."""
    server = server or ChatonServer(Path(), Path())
    try:
        result = subprocess.run(
            [sys.executable, "-m", "chaton", "serve", "--help"],
            capture_output=True,
            cwd=server.root,
            env=server.env(),
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        return err[-1] if err else f"exit status {result.returncode}"
    return None


def create_chaton_accounts(server: ChatonServer, names: list[str], password: str) -> None:
    """Register SASL accounts in chaton's database before it starts (one argon2 hash, reused).

    Hashing uses chaton's own :class:`~chaton.passwords.Passwords` with the benchmark settings,
    so the server verifies with the same parameters and never needs to rehash. For an older
    tree this runs in a subprocess of that tree (its database schema may differ).
    """
    if server.is_revision:
        server.prepare()
        server.run_python(_ADD_ACCOUNTS, str(server.config_path), str(server.data_dir), *names,
                          stdin=password, timeout=120)  # fmt: skip
        return
    from chaton.config import load_settings
    from chaton.passwords import Passwords
    from chaton.store import AccountExists, Store

    server.prepare()
    settings = load_settings(server.config_path, data_dir=server.data_dir)
    hashed = Passwords(settings).hash(password)
    with Store(settings.db_file) as store:
        for name in names:
            try:
                store.add_account(name, hashed)
            except AccountExists:  # a kept --workdir: each run draws a new password
                store.set_password_hash(name, hashed)


def create_chaton_accounts_cli(
    server: ChatonServer, names: list[str], password: str, timeout: float = 60.0
) -> list[str]:
    """Create accounts the way an admin does: ``python -m chaton account add --password-stdin``.

    One process (and one argon2 hash with the server's settings) per account. An account that
    already exists (a kept ``--workdir``) gets ``password`` with ``account passwd``, since
    each run draws a new one. Returns ``"name: why"`` for each account that is not usable.
    """
    server.prepare()

    def cli(*args: str) -> str | None:
        """Run one CLI command; None if it succeeded, else its last line of error."""
        cmd = [
            sys.executable, "-m", "chaton", "account", *args, "--password-stdin",
            "--data-dir", str(server.data_dir), "--config", str(server.config_path),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                cmd, input=(password + "\n").encode(), capture_output=True, cwd=server.root,
                env=server.env(), timeout=timeout,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        err = result.stderr.decode(errors="replace").strip()
        if result.returncode == 0:
            return None
        return err.splitlines()[-1] if err else f"exit status {result.returncode}"

    failed = []
    for name in names:
        why = cli("add", name)
        if why is not None and "already exists" in why:
            why = cli("passwd", name)
        if why is not None:
            failed.append(f"{name}: {why}")
    return failed


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


@dataclass
class NgircdServer(Server):
    """Debian's (or any) ngircd in the foreground with a TLS-only listener and no penalties."""

    name: str = "ngircd"
    binary: str = "ngircd"

    @property
    def config_path(self) -> Path:
        return self.workdir / "ngircd.conf"

    def prepare(self) -> None:
        include = self.workdir / "ngircd.conf.d"  # empty: no system snippets sneak in
        include.mkdir(parents=True, exist_ok=True)
        dh = self.workdir / "ffdhe2048.pem"
        dh.write_text(_FFDHE2048_PEM)
        limits = {
            "MaxConnections": 0, "MaxConnectionsIP": 0, "MaxJoins": 0, "MaxNickLength": 30,
            "MaxPenaltyTime": 0, "PingTimeout": 600, "PongTimeout": 600,
        }  # fmt: skip
        self.config_summary = {**limits, "DNS": "no", "Ident": "no", "PAM": "no"}
        limits_text = "\n".join(f"{k} = {v}" for k, v in limits.items())
        self.config_path.write_text(
            f"""# written by python -m bench
[Global]
Name = ngircd.bench
Info = chaton benchmark peer
Listen = {self.host}
Ports =
MotdFile = {self.workdir / "no-motd"}
MotdPhrase = ngircd benchmark peer

[Limits]
{limits_text}

[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = {include}

[SSL]
CertFile = {self.certs_dir / "server.pem"}
KeyFile = {self.certs_dir / "server-key.pem"}
DHFile = {dh}
Ports = {self.port}
"""
        )
        check = subprocess.run(
            [self.binary, "--configtest", "-f", str(self.config_path)],
            capture_output=True,
            timeout=30,
        )
        out = check.stdout.decode(errors="replace") + check.stderr.decode(errors="replace")
        if check.returncode != 0:
            raise ServerError(f"ngircd --configtest failed:\n{out[-2000:]}")

    def command(self) -> list[str]:
        return [self.binary, "-n", "-f", str(self.config_path)]

    def version(self) -> str:
        try:
            out = subprocess.run(
                [self.binary, "--version"], capture_output=True, timeout=10
            ).stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            return "ngircd (version unknown)"
        first = out.strip().splitlines()[0] if out.strip() else "ngircd"
        lib = self._tls_library()
        return f"{first}{f' ({lib})' if lib else ''}"

    def _tls_library(self) -> str:
        """The TLS library named in the startup log ("GnuTLS 3.7.9"), or found by ldd."""
        try:
            for line in self.log_path.read_text(errors="replace").splitlines():
                for lib in ("GnuTLS", "OpenSSL"):
                    if f"{lib} " in line and "initialized" in line:
                        return line[line.index(lib) :].split(" initialized")[0]
        except OSError:
            pass
        path = shutil.which(self.binary) or self.binary
        try:
            out = subprocess.run(["ldd", path], capture_output=True, timeout=10).stdout.decode()
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return "GnuTLS" if "libgnutls" in out else "OpenSSL" if "libssl" in out else ""


def ngircd_install_hint() -> str:
    return (
        "ngircd was not found, so chaton is measured alone. To compare, install it "
        "(Debian/Ubuntu: sudo apt-get install ngircd; Fedora: sudo dnf install ngircd; "
        "macOS: brew install ngircd) or pass --ngircd /path/to/ngircd. Debian starts a system "
        "service on port 6667 after installing; the benchmark does not use it."
    )
