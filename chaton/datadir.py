"""One server per data directory: an exclusive lock held for the server's whole life.

Invariants:
- The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``serve.lock`` in the data dir, never on the
  database file: SQLite owns that file's POSIX locks (see ``chaton.store``), and ``flock``
  locks are a separate kind that never interferes with them.
- The kernel drops the lock when the holder dies, ``kill -9`` included, so a stale lock file
  never blocks a restart; the pid written into it is only there to name the holder.
- Admin CLI commands do not take this lock: they are meant to run next to the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

__all__ = ["LOCK_NAME", "DataDirInUse", "DataDirLock", "private_dir", "serving_pid"]

LOCK_NAME = "serve.lock"


class DataDirInUse(Exception):
    """Another chaton server already serves from this data directory."""


class DataDirLock:
    """Held while a server runs on ``data_dir``; :meth:`release` (or exit) frees it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise :class:`DataDirInUse` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data dir {self.path.parent} is in use by chaton (pid {holder}); "
                "stop that server first, or use another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Free the lock (idempotent). The file stays; an unlocked file means nothing."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def serving_pid(data_dir: Path) -> int | None:
    """The pid of the server holding ``data_dir``'s lock, or ``None`` if none does (for
    ``chaton reload``: a pid in an unlocked file names a server that is gone)."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it
    finally:
        os.close(fd)


def private_dir(path: Path) -> str | None:
    """Create ``path`` as 0700 if missing; return a warning if an existing one is open.

    Only a directory chaton creates gets its mode set: ``--data-dir /tmp`` must not make
    ``/tmp`` private to one user. An existing directory that others can enter is reported
    instead (the database and key files inside are 0600 whatever the directory's mode).
    """
    if path.is_dir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return (f"{path} is readable or writable by other users (mode {mode:04o}); "
                    f"chaton keeps its files 0600, but consider chmod 700 {path}")
        return None
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    return None
