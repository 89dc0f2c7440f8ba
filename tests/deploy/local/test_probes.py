"""Reading a runtime's in-flight calls from its Prometheus text."""

from __future__ import annotations

from chalk.deploy.local.probes import in_flight_calls

RUNTIME_TEXT = """\
# HELP chalk_remote_call_in_flight Calls being handled now.
# TYPE chalk_remote_call_in_flight gauge
chalk_remote_call_in_flight 4.0
# HELP chalk_remote_call_requests_total Calls handled.
# TYPE chalk_remote_call_requests_total counter
chalk_remote_call_requests_total{code="OK"} 12.0
"""


def test_the_in_flight_gauge_is_read_among_other_metrics() -> None:
    assert in_flight_calls(RUNTIME_TEXT) == 4.0


def test_labelled_samples_are_summed() -> None:
    text = (
        "# TYPE chalk_remote_call_in_flight gauge\n"
        'chalk_remote_call_in_flight{method="a"} 2\n'
        'chalk_remote_call_in_flight{method="b"} 3\n'
    )

    assert in_flight_calls(text) == 5.0


def test_text_without_the_metric_reads_as_none() -> None:
    assert in_flight_calls("# TYPE up gauge\nup 1\n") is None
    assert in_flight_calls("") is None
