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
import functools
import getpass
import os
import secrets
import sys
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

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

#: The default of the ``min_password_length`` setting.
MIN_PASSWORD_LENGTH = cast(int, Settings.__dataclass_fields__["min_password_length"].default)

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
    """A small thread pool for argon2, shared fairly between the clients waiting for it.

    Invariants:
    - ``hash_queue_limit`` counts every job submitted and not yet finished, queued or
      running; one ``key`` (the caller passes an address group) holds at most
      ``hash_queue_per_ip`` of them, so a storm from a few addresses cannot take every slot.
    - Waiting jobs are started round-robin over keys, never first come first served: a
      login from a quiet address waits for at most one job per busy address ahead of it.
    - At most ``hash_workers`` jobs run at once; the bookkeeping happens on the event loop
      (``run`` is called there and completions come back there), so it needs no lock.
    - A job whose awaiting coroutine is cancelled before it starts is dropped; once started,
      it still counts until its thread is done with it, so the cap reflects real work.
    """

    __slots__ = (
        "_closed", "_executor", "_in_flight", "_limit", "_per_key", "_per_key_limit",
        "_running", "_waiting", "_workers",
    )

    def __init__(self, settings: Settings) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=settings.hash_workers,
            thread_name_prefix="chaton-hash",
            initializer=_lower_thread_priority,
            initargs=(settings.hash_nice,),
        )
        self._workers = settings.hash_workers
        self._limit = settings.hash_queue_limit
        self._per_key_limit = settings.hash_queue_per_ip
        self._in_flight = 0
        self._running = 0
        self._per_key: dict[Hashable, int] = {}
        # key -> its waiting jobs; dict order is the round-robin order
        self._waiting: dict[Hashable, deque[_Job]] = {}
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet finished."""
        return self._in_flight

    @property
    def limit(self) -> int:
        return self._limit

    async def run(self, fn: Callable[..., _T], *args: object, key: Hashable = None) -> _T:
        """Run ``fn(*args)`` on a hashing thread, in ``key``'s turn, and return its result.

        Raises :class:`HashPoolBusy` at once, without queueing, when the pool or ``key``'s
        share of it is full.
        """
        if self._closed:
            raise HashPoolBusy("the password hashing pool is shut down")
        if self._in_flight >= self._limit:
            raise HashPoolBusy(
                f"{self._in_flight} password checks are already pending; try again later"
            )
        held = self._per_key.get(key, 0)
        if self._per_key_limit and held >= self._per_key_limit:
            raise HashPoolBusy(f"{held} password checks from your address are already pending")
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop.create_future(), key)
        self._in_flight += 1
        self._per_key[key] = held + 1
        self._waiting.setdefault(key, deque()).append(job)
        self._pump(loop)
        result: _T = await job.result
        return result

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._running < self._workers and self._waiting:
            key = next(iter(self._waiting))
            queue = self._waiting.pop(key)
            job = queue.popleft()
            if queue:
                self._waiting[key] = queue  # to the back of the round
            if job.result.cancelled():
                self._release(job)
                continue
            try:
                started = loop.run_in_executor(self._executor, job.fn, *job.args)
            except RuntimeError:  # shut down meanwhile
                self._release(job)
                if not job.result.done():
                    job.result.set_exception(HashPoolBusy("the password hashing pool is shut down"))
                continue
            self._running += 1
            started.add_done_callback(functools.partial(self._finished, job=job, loop=loop))

    def _finished(
        self, future: asyncio.Future[Any], *, job: _Job, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._running -= 1
        self._release(job)
        if not job.result.done():
            if future.cancelled():
                job.result.set_exception(HashPoolBusy("the password hashing pool is shut down"))
            elif future.exception() is not None:
                job.result.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                job.result.set_result(future.result())
        self._pump(loop)

    def _release(self, job: _Job) -> None:
        self._in_flight -= 1
        left = self._per_key[job.key] - 1
        if left:
            self._per_key[job.key] = left
        else:
            del self._per_key[job.key]

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new jobs, drop queued ones and (by default) wait for running ones."""
        self._closed = True
        for queue in self._waiting.values():
            for job in queue:
                if not job.result.done():
                    job.result.cancel()
        self._executor.shutdown(wait=wait, cancel_futures=True)


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[object, ...]
    result: asyncio.Future[Any]
    key: Hashable


class PasswordInputError(Exception):
    """A new password could not be read or is unacceptable; the message never holds it."""


def _check_new(password: str, min_length: int) -> str:
    if len(password) < min_length:
        raise PasswordInputError(
            f"password too short: use at least {min_length} characters"
        )
    if any(ch in password for ch in "\r\n\x00"):
        raise PasswordInputError("password must not contain line breaks or NUL characters")
    return password


def read_new_password(
    *, stdin: bool, prompt_twice: bool = True, min_length: int = MIN_PASSWORD_LENGTH
) -> str:
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
        return _check_new(line, min_length)
    try:
        first = getpass.getpass("New password: ")
        if prompt_twice:
            again = getpass.getpass("Repeat password: ")
            if not secrets.compare_digest(_encode(first), _encode(again)):
                raise PasswordInputError("the two passwords do not match")
    except EOFError:
        raise PasswordInputError("no password entered") from None
    return _check_new(first, min_length)
