"""The one capped back-off every retry waits by."""

from __future__ import annotations

import pytest

from chalk.common.backoff import capped_backoff


def test_the_delay_doubles_from_the_initial_one_up_to_the_cap() -> None:
    delays = [capped_backoff(n, initial_s=0.5, max_s=3.0) for n in range(1, 7)]

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("attempt", [0, -3])
def test_an_attempt_below_one_waits_the_initial_delay(attempt: int) -> None:
    assert capped_backoff(attempt, initial_s=1.0, max_s=60.0) == 1.0


def test_a_huge_attempt_count_stays_at_the_cap_without_overflowing() -> None:
    assert capped_backoff(10**9, initial_s=1.0, max_s=60.0) == 60.0
