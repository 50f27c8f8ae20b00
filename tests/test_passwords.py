"""argon2id hashing, verification without raising, the bounded pool, reading new passwords."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Literal

import pytest
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from chaton.config import Settings
from chaton.passwords import (
    MIN_PASSWORD_LENGTH,
    HashPool,
    HashPoolBusy,
    PasswordInputError,
    Passwords,
    read_new_password,
)

FAST = Settings().replace(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
SECRET = "s3cret-passphrase"


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(FAST)


def test_hash_is_argon2id_with_configured_parameters(passwords: Passwords) -> None:
    hashed = passwords.hash(SECRET)
    assert hashed.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert SECRET not in hashed
    assert passwords.hash(SECRET) != hashed  # fresh salt each time
    assert SECRET not in repr(passwords)


def test_verify_right_and_wrong(passwords: Passwords) -> None:
    hashed = passwords.hash(SECRET)
    assert passwords.verify(hashed, SECRET) == (True, False)
    assert passwords.verify(hashed, SECRET + "x") == (False, False)
    assert passwords.verify(hashed, "") == (False, False)


def test_needs_rehash_when_parameters_change(passwords: Passwords) -> None:
    old = passwords.hash(SECRET)
    stronger = Passwords(FAST.replace(argon2_time_cost=2))
    assert stronger.verify(old, SECRET) == (True, True)
    assert stronger.verify(old, "wrong password") == (False, False)
    assert stronger.verify(stronger.hash(SECRET), SECRET) == (True, False)


def test_unknown_account_still_does_the_work_and_fails(passwords: Passwords) -> None:
    assert passwords.verify(None, SECRET) == (False, False)
    assert passwords.verify(None, "") == (False, False)
    # The dummy is a real hash with the current parameters, so the work is the same.
    assert passwords._dummy.startswith("$argon2id$v=19$m=8192,t=1,p=1$")


def test_unknown_account_runs_one_real_argon2_verify() -> None:
    checked: list[str] = []

    class CountingHasher(PasswordHasher):  # argon2-cffi's class, counting its real work
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            checked.append(str(hash))
            return super().verify(hash, password)

    passwords = Passwords(FAST)
    old = passwords._hasher
    passwords._hasher = CountingHasher(old.time_cost, old.memory_cost, old.parallelism)
    assert passwords.verify(None, SECRET) == (False, False)
    assert checked == [passwords._dummy]
    real = passwords.hash(SECRET)
    assert passwords.verify(real, "wrong") == (False, False)
    assert checked == [passwords._dummy, real]


@pytest.mark.parametrize(
    "bad",
    ["", "not a hash", "$argon2id$", "$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", "$2b$12$abc", "\x00"],
)
def test_malformed_hash_never_raises(passwords: Passwords, bad: str) -> None:
    assert passwords.verify(bad, SECRET) == (False, False)


@settings(max_examples=30, deadline=None)
@given(password=st.text(max_size=40))
def test_any_text_round_trips_including_lone_surrogates(
    passwords: Passwords, password: str
) -> None:
    hashed = passwords.hash(password)
    assert passwords.verify(hashed, password) == (True, False)
    assert passwords.verify(hashed, password + "!")[0] is False


def test_pool_runs_off_the_loop(passwords: Passwords) -> None:
    pool = HashPool(FAST)

    async def main() -> tuple[str, int, int]:
        hashed = await pool.run(passwords.hash, SECRET)
        ok, _ = await pool.run(passwords.verify, hashed, SECRET)
        assert ok
        return hashed, threading.get_ident(), await pool.run(threading.get_ident)

    try:
        hashed, loop_thread, worker_thread = asyncio.run(main())
    finally:
        pool.shutdown()
    assert hashed.startswith("$argon2id$")
    assert loop_thread != worker_thread
    assert pool.in_flight == 0


def test_pool_refuses_beyond_queue_limit() -> None:
    pool = HashPool(FAST.replace(hash_workers=1, hash_queue_limit=2))
    release = threading.Event()

    async def main() -> None:
        first = asyncio.ensure_future(pool.run(release.wait, 5))
        second = asyncio.ensure_future(pool.run(release.wait, 5))
        await asyncio.sleep(0)
        assert pool.in_flight == 2
        with pytest.raises(HashPoolBusy):
            await pool.run(release.wait, 5)
        release.set()
        assert await first and await second
        assert pool.in_flight == 0
        assert await pool.run(lambda: 42) == 42  # room again

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown()


def test_cancelled_waiter_keeps_its_slot_until_the_thread_is_done() -> None:
    pool = HashPool(FAST.replace(hash_workers=1, hash_queue_limit=1))
    started, release = threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(5)

    async def main() -> None:
        task = asyncio.ensure_future(pool.run(job))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(HashPoolBusy):  # the thread is still hashing
            await pool.run(lambda: None)
        release.set()
        for _ in range(200):
            if pool.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert await pool.run(lambda: 7) == 7

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown()


def test_pool_after_shutdown_is_busy() -> None:
    pool = HashPool(FAST)
    pool.shutdown()
    with pytest.raises(HashPoolBusy):
        asyncio.run(pool.run(lambda: None))


# --- read_new_password -----------------------------------------------------------------------


def test_read_from_stdin_strips_only_the_line_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("  spaced pass  \r\nsecond line\n"))
    assert read_new_password(stdin=True) == "  spaced pass  "


@pytest.mark.parametrize("text", ["", "\n", "abc1234\n", "with\x00nul-byte\n"])
def test_read_from_stdin_rejects_empty_short_and_nul(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    with pytest.raises(PasswordInputError) as info:
        read_new_password(stdin=True)
    message = str(info.value)
    if text == "abc1234\n":
        assert f"at least {MIN_PASSWORD_LENGTH}" in message
    if text.strip():
        assert text.strip() not in message and "abc" not in message and "nul-byte" not in message


def test_prompt_twice_mismatch_and_match(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first-password", "other-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(PasswordInputError, match="do not match") as info:
        read_new_password(stdin=False)
    assert "password" in str(info.value)
    assert "first-password" not in str(info.value) and "other-password" not in str(info.value)

    answers = iter(["same-password", "same-password"])
    assert read_new_password(stdin=False) == "same-password"
    answers = iter(["only-once-pw"])
    assert read_new_password(stdin=False, prompt_twice=False) == "only-once-pw"


def test_prompt_eof_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", eof)
    with pytest.raises(PasswordInputError, match="no password"):
        read_new_password(stdin=False)
