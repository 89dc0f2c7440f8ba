"""``ServerMetrics``: the figures a query's call recorder adds to ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chalk.engine.recorder import CallRecorder
from chalk.server.metrics import ServerMetrics


def test_rows_asked_and_sent_and_dedup_hits_are_counted_per_group() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    recorder = CallRecorder()
    recorder.deduplicated("ner", asked=1000, sent=100)
    recorder.answered("ner", "127.0.0.1:7001", 100)
    recorder.deduplicated("dice", asked=10, sent=10)

    metrics.called(recorder)
    metrics.called(recorder)

    sample = metrics.registry.get_sample_value
    assert sample("chalk_server_model_rows_asked_total", {"group": "ner"}) == 2000
    assert sample("chalk_server_model_rows_sent_total", {"group": "ner"}) == 200
    assert sample("chalk_server_model_dedup_hits_total", {"group": "ner"}) == 1800
    assert sample("chalk_server_model_dedup_hits_total", {"group": "dice"}) == 0
    assert sample("chalk_server_model_rows_sent_total", {"group": "dice"}) == 20
