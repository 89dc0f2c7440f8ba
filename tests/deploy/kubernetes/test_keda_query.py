"""KEDA's demand query evaluated for real by ``promtool test rules`` over input series: what
reports nothing, waiting calls, the larger of the in-flight counts, and the series it must not
count (another group whose name starts alike, another namespace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalk.deploy.kubernetes.keda import demand_query
from tests.support.promtool import run_expression_test

WAITING = "chalk_server_model_calls_waiting"
SERVER_IN_FLIGHT = "chalk_server_model_calls_in_flight"
RUNTIME_IN_FLIGHT = "chalk_remote_call_in_flight"

CASES: dict[str, tuple[dict[str, float], float]] = {
    "nothing-reports": ({'up{job="other"}': 1}, 0),
    "two-servers-waiting": (
        {
            f'{WAITING}{{namespace="ml",group="ner",pod="srv-7c9d-aaaaa"}}': 2,
            f'{WAITING}{{namespace="ml",group="ner",pod="srv-7c9d-bbbbb"}}': 1,
        },
        3,
    ),
    "in-flight-is-the-larger-count": (
        {
            f'{SERVER_IN_FLIGHT}{{namespace="ml",group="ner",pod="srv-7c9d-aaaaa"}}': 3,
            f'{RUNTIME_IN_FLIGHT}{{namespace="ml",pod="ner-5d8f9c-x7k2p"}}': 4,
            f'{RUNTIME_IN_FLIGHT}{{namespace="ml",pod="ner-5d8f9c-q2w3e"}}': 1,
        },
        5,
    ),
    "waiting-plus-in-flight": (
        {
            f'{WAITING}{{namespace="ml",group="ner",pod="srv-7c9d-aaaaa"}}': 2,
            f'{SERVER_IN_FLIGHT}{{namespace="ml",group="ner",pod="srv-7c9d-aaaaa"}}': 7,
            f'{RUNTIME_IN_FLIGHT}{{namespace="ml",pod="ner-5d8f9c-x7k2p"}}': 4,
        },
        9,
    ),
    "other-groups-and-namespaces-excluded": (
        {
            f'{RUNTIME_IN_FLIGHT}{{namespace="ml",pod="ner-x-5d8f9c-x7k2p"}}': 6,
            f'{RUNTIME_IN_FLIGHT}{{namespace="other",pod="ner-5d8f9c-x7k2p"}}': 8,
            f'{WAITING}{{namespace="other",group="ner",pod="srv-7c9d-aaaaa"}}': 5,
            f'{WAITING}{{namespace="ml",group="ner-x",pod="srv-7c9d-aaaaa"}}': 5,
            f'{RUNTIME_IN_FLIGHT}{{namespace="ml",pod="ner-5d8f9c-q2w3e"}}': 1,
        },
        1,
    ),
}


@pytest.mark.parametrize(("series", "expected"), CASES.values(), ids=CASES.keys())
def test_the_demand_query_is_one_sample_of_the_groups_demand(
    tmp_path: Path, series: dict[str, float], expected: float
) -> None:
    result = run_expression_test(tmp_path, demand_query("ml", "ner"), series, expected)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # promtool really compares: the same series with another value is a failure.
    series, expected = CASES["waiting-plus-in-flight"]
    result = run_expression_test(tmp_path, demand_query("ml", "ner"), series, expected + 1)
    assert result.returncode != 0
