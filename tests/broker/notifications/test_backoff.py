"""The retry schedule: exponential, bounded, and jittered only within its quarter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.notifications.outbox import JITTER, retry_delay

bases = st.floats(min_value=0.01, max_value=600)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(
    base=bases,
    factor=st.floats(min_value=1.0, max_value=10_000),
    draws=st.lists(jitters, min_size=1, max_size=30),
)
def test_the_schedule_is_bounded_monotone_and_within_its_jitter(
    base: float, factor: float, draws: list[float]
) -> None:
    cap = base * factor
    delays = [
        retry_delay(attempt, base=base, cap=cap, jitter=j) for attempt, j in enumerate(draws, 1)
    ]
    for attempt, delay in enumerate(delays, 1):
        nominal = min(cap, base * 2 ** (attempt - 1))
        assert (1 - JITTER) * nominal <= delay <= nominal <= cap
    for attempt in range(1, len(delays)):
        if base * 2**attempt <= cap:
            # Below the cap the next delay is longer whatever the jitter drew.
            assert delays[attempt] > delays[attempt - 1]


@given(base=bases, attempt=st.integers(min_value=1, max_value=10_000), jitter=jitters)
def test_the_schedule_never_overflows(base: float, attempt: int, jitter: float) -> None:
    assert retry_delay(attempt, base=base, cap=3600, jitter=jitter) <= 3600


@given(base=bases, attempts=st.integers(min_value=1, max_value=40))
def test_without_jitter_each_delay_doubles_until_the_cap(base: float, attempts: int) -> None:
    cap = base * 100
    previous = 0.0
    for attempt in range(1, attempts + 1):
        delay = retry_delay(attempt, base=base, cap=cap, jitter=0.0)
        assert delay == min(cap, base * 2 ** (attempt - 1))
        assert delay >= previous
        previous = delay


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(0, base=1, cap=1, jitter=0)
