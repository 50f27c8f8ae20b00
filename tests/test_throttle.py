"""Keyed sliding-window counters, driven by an explicit clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaton.server.throttle import SlidingWindowCounter


def test_counts_within_window_and_expires_exactly() -> None:
    c = SlidingWindowCounter(limit=3, window=10.0)
    assert c.hit("1.2.3.4", 0.0) == 1
    assert c.hit("1.2.3.4", 4.0) == 2
    assert not c.exceeded("1.2.3.4", 5.0)
    assert c.hit("1.2.3.4", 5.0) == 3
    assert c.exceeded("1.2.3.4", 5.0)
    assert c.retry_after("1.2.3.4", 5.0) == pytest.approx(5.0)
    assert c.exceeded("1.2.3.4", 9.999)
    assert not c.exceeded("1.2.3.4", 10.0)  # the hit at 0 left the window
    assert c.count("1.2.3.4", 10.0) == 2
    assert c.count("1.2.3.4", 15.0) == 0
    assert c.retry_after("1.2.3.4", 15.0) == 0.0


def test_hit_reports_going_over_the_limit() -> None:
    # The server's check: ``hit(...) > limit`` refuses the (limit+1)-th event in a window.
    c = SlidingWindowCounter(limit=3, window=10.0)
    assert [c.hit("ip", float(t)) for t in range(6)] == [1, 2, 3, 4, 4, 4]
    assert c.retry_after("ip", 5.0) == pytest.approx(8.0)  # hits at 3, 4, 5 remain after 13
    assert c.hit("ip", 14.0) == 2  # only the hit at 5 is still in the window


def test_keys_are_independent_and_reset_forgets() -> None:
    c = SlidingWindowCounter(limit=2, window=60.0)
    c.hit("ip:a", 1.0)
    c.hit("ip:a", 2.0)
    c.hit("acct:alice", 2.0)
    assert c.exceeded("ip:a", 3.0)
    assert not c.exceeded("acct:alice", 3.0)
    assert not c.exceeded("ip:b", 3.0)
    c.reset("ip:a")
    c.reset("never-seen")
    assert c.count("ip:a", 3.0) == 0


def test_zero_limit_is_unlimited() -> None:
    c = SlidingWindowCounter(limit=0, window=1.0)
    for t in range(1000):
        c.hit("k", float(t) / 1000)
    assert not c.exceeded("k", 1.0)
    assert len(c) == 0


def test_memory_per_key_and_key_count_are_bounded() -> None:
    c = SlidingWindowCounter(limit=5, window=100.0, max_keys=10)
    for i in range(10_000):
        c.hit("hammer", i * 0.001)
    assert len(c._hits["hammer"]) == 6  # limit + 1
    for i in range(50):
        c.hit(f"ip{i}", 20.0 + i * 0.01)
    assert len(c) == 10
    # The most recently hit keys are the ones kept.
    assert c.count("ip49", 21.0) == 1
    assert c.count("ip0", 21.0) == 0


def test_stale_keys_are_pruned_on_hit() -> None:
    c = SlidingWindowCounter(limit=3, window=5.0)
    for i in range(100):
        c.hit(i, 0.0)
    assert len(c) == 100
    c.hit("late", 6.0)
    assert len(c) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SlidingWindowCounter(limit=-1, window=1.0)
    with pytest.raises(ValueError):
        SlidingWindowCounter(limit=1, window=0.0)


@given(
    limit=st.integers(1, 6),
    window=st.integers(1, 20),
    gaps=st.lists(st.tuples(st.integers(0, 8), st.sampled_from("abc")), max_size=60),
)
def test_matches_a_naive_model(limit: int, window: int, gaps: list[tuple[int, str]]) -> None:
    c = SlidingWindowCounter(limit=limit, window=float(window))
    log: dict[str, list[float]] = {}
    now = 0.0
    for gap, key in gaps:
        now += gap
        c.hit(key, now)
        log.setdefault(key, []).append(now)
        for k in "abc":
            expected = sum(1 for t in log.get(k, []) if now < t + window)
            assert c.count(k, now) == min(expected, limit + 1)
            assert c.exceeded(k, now) == (expected >= limit)
            if k == key:
                assert (c.count(k, now) > limit) == (expected > limit)
            if expected >= limit:
                later = now + c.retry_after(k, now)
                assert sum(1 for t in log[k] if later < t + window) < limit
