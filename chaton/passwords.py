"""Password hashing with argon2id, off the event loop and bounded.

Invariants:
- Only argon2id strings leave :meth:`Passwords.hash`; a password is never stored, logged,
  put in an exception message or a repr.
- :meth:`Passwords.verify` never raises for bad input and does the same argon2 work whether
  or not the account exists (an unknown account is checked against a dummy hash made with the
  current parameters), so response time does not reveal which names are registered.
- Argon2 runs only inside :class:`HashPool`: at most ``hash_workers`` hashes at once and at most
  ``hash_queue_limit`` jobs queued or running; beyond that :class:`HashPoolBusy` is raised at
  once, so a login storm costs a refusal, not unbounded memory and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from chaton.config import Settings

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "HashPool",
    "HashPoolBusy",
    "PasswordInputError",
    "Passwords",
    "read_new_password",
]

MIN_PASSWORD_LENGTH = 8

_T = TypeVar("_T")


def _encode(password: str | bytes) -> bytes:
    """UTF-8 bytes of ``password``; never raises, and is the same for hashing and verifying.

    ``surrogateescape`` gives back the original bytes of text decoded that way (SASL, stdin
    in a C locale); any other lone surrogate is kept with ``surrogatepass``.
    """
    if isinstance(password, bytes):
        return password
    try:
        return password.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return password.encode("utf-8", "surrogatepass")


class Passwords:
    """argon2id hashing with the parameters of one :class:`Settings` snapshot.

    Constructing one computes a dummy hash (one full argon2 run) for the unknown-account path.
    Methods block for tens of milliseconds by design: call them through :class:`HashPool`.
    """

    __slots__ = ("_dummy", "_hasher")

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_bytes(16))

    def __repr__(self) -> str:
        p = self._hasher
        return f"Passwords(argon2id t={p.time_cost} m={p.memory_cost}KiB p={p.parallelism})"

    def hash(self, password: str | bytes) -> str:
        """An argon2id hash string (``$argon2id$...``) of ``password`` with a fresh salt."""
        return self._hasher.hash(_encode(password))

    def verify(self, stored_hash: str | None, password: str | bytes) -> tuple[bool, bool]:
        """``(ok, needs_rehash)`` for ``password`` against ``stored_hash``.

        ``stored_hash=None`` means "no such account": a dummy hash is verified instead so the
        answer takes as long as for a real account, and ``(False, False)`` is returned.
        A malformed hash also gives ``(False, False)``. ``needs_rehash`` is True only after a
        successful check whose hash was made with other parameters than the current ones,
        so the caller can store :meth:`hash` of the password it just verified.
        """
        secret = _encode(password)
        if stored_hash is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy, secret)
            return False, False
        try:
            self._hasher.verify(stored_hash, secret)
        except (VerificationError, InvalidHashError, ValueError, TypeError):
            return False, False
        try:
            return True, self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True, True


def _lower_thread_priority(nice: int) -> None:
    """Run this hashing thread (and argon2's lane threads, which inherit it) at a lower
    priority, so the event loop thread gets a core first and chat stays fast during a
    login storm. Linux keeps the nice value per thread; elsewhere this does nothing."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + nice))
    except OSError:
        pass


class HashPoolBusy(Exception):
    """Too many password jobs are already queued or running (or the pool is shut down)."""


class HashPool:
    """A small thread pool for argon2 with a hard cap on jobs in flight.

    ``hash_queue_limit`` counts every job submitted and not yet finished, queued or running.
    A job whose awaiting coroutine is cancelled still counts until its thread is done with it,
    so the cap reflects real work.
    """

    __slots__ = ("_closed", "_executor", "_in_flight", "_limit", "_lock")

    def __init__(self, settings: Settings) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=settings.hash_workers,
            thread_name_prefix="chaton-hash",
            initializer=_lower_thread_priority,
            initargs=(settings.hash_nice,),
        )
        self._limit = settings.hash_queue_limit
        self._in_flight = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet finished."""
        return self._in_flight

    @property
    def limit(self) -> int:
        return self._limit

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn(*args)`` on a hashing thread and return its result.

        Raises :class:`HashPoolBusy` at once, without queueing, when the pool is full.
        """
        with self._lock:
            if self._closed:
                raise HashPoolBusy("the password hashing pool is shut down")
            if self._in_flight >= self._limit:
                raise HashPoolBusy(
                    f"{self._in_flight} password checks are already pending; try again later"
                )
            self._in_flight += 1
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:
            with self._lock:
                self._in_flight -= 1
            raise HashPoolBusy("the password hashing pool is shut down") from None
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new jobs, drop queued ones and (by default) wait for running ones."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=True)


class PasswordInputError(Exception):
    """A new password could not be read or is unacceptable; the message never holds it."""


def _check_new(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordInputError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    if any(ch in password for ch in "\r\n\x00"):
        raise PasswordInputError("password must not contain line breaks or NUL characters")
    return password


def read_new_password(*, stdin: bool, prompt_twice: bool = True) -> str:
    """Read a new password for the CLI, never from argv.

    With ``stdin=True`` one line is read from standard input (for scripts:
    ``printf '%s\\n' "$PW" | chaton account add alice --password-stdin``); otherwise it is
    asked on the terminal without echo, twice unless ``prompt_twice`` is false.
    Raises :class:`PasswordInputError` for an empty input, a mismatch or a short password.
    """
    if stdin:
        line = sys.stdin.readline()
        if not line:
            raise PasswordInputError("no password on standard input")
        if line.endswith("\n"):
            line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        return _check_new(line)
    try:
        first = getpass.getpass("New password: ")
        if prompt_twice:
            again = getpass.getpass("Repeat password: ")
            if not secrets.compare_digest(_encode(first), _encode(again)):
                raise PasswordInputError("the two passwords do not match")
    except EOFError:
        raise PasswordInputError("no password entered") from None
    return _check_new(first)
