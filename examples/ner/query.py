"""The quickstart's queries: one online query, then an offline query over generated documents.

Run it from the project root once the `ner` group serves and `chalk apply` stored the features:

    python query.py [--documents 1000] [--summary-json summary.json]

It prints the entities of one sentence, runs one offline query over every document (its
progress bar shows on a terminal), then a summary: rows, rows per second, entities by label,
the replicas of the `ner` group that answered the query's calls (the dataset's
`model_calls`), and how many replicas were ready as it ran.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from documents import documents
from features import Document
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chalk.client import ChalkClient

SENTENCE = "Apple is opening a new office in London next year, Tim Cook said on Monday."
SCALING_GROUP = "ner"

console = Console(soft_wrap=True)


@dataclass
class Summary:
    """What the quickstart found; ``--summary-json`` writes it for the test that runs it."""

    online_text: str = SENTENCE
    online_entities: list[dict[str, Any]] = field(default_factory=list)
    online_first_label: str | None = None
    offline_rows: int = 0
    offline_seconds: float = 0.0
    rows_per_second: float = 0.0
    entities_by_label: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    retries: int = 0
    replicas_used: list[str] = field(default_factory=list)
    replicas_ready_at_start: int = 0
    replicas_ready_peak: int = 0
    replicas_ready_at_end: int = 0


class ReplicaWatch:
    """Samples the group's ready replicas on a thread while the offline query runs."""

    def __init__(self, client: ChalkClient, group: str, interval_s: float = 0.25) -> None:
        self._client, self._group, self._interval_s = client, group, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = self.peak = self.end = self._ready()

    def _ready(self) -> int:
        return self._client.get_scaling_group(self._group).ready_replicas

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._ready())

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = self._ready()
        self.peak = max(self.peak, self.end)


def online(client: ChalkClient, summary: Summary) -> None:
    """One row: the entities of ``SENTENCE`` and the first one's label, as a table."""
    console.print(f"==> online query: the entities of {SENTENCE!r}")
    result = client.query(
        input={Document.id: 1, Document.text: SENTENCE},
        output=[Document.entities, Document.first_label],
    )
    summary.online_entities = json.loads(result.get_feature_value(Document.entities))
    summary.online_first_label = result.get_feature_value(Document.first_label)
    table = Table("ENTITY", "LABEL", "CHARACTERS")
    for entity in summary.online_entities:
        # Cells are rich markup: a text such as "[Reuters]" must print as written.
        table.add_row(escape(entity["text"]), entity["label"], f"{entity['start']}-{entity['end']}")
    console.print(table)
    console.print(f"    document.first_label = {summary.online_first_label!r}")


def offline(client: ChalkClient, count: int, summary: Summary) -> None:
    """``count`` generated documents through one ``offline_query``, timed."""
    texts = documents(count)
    console.print(f"==> offline query: the entities of {count} generated documents")
    with ReplicaWatch(client, SCALING_GROUP) as watch:
        started = time.perf_counter()
        dataset = client.offline_query(
            input={Document.id: list(range(1, count + 1)), Document.text: texts},
            output=[Document.entities],
            show_progress=console,
        )
        summary.offline_seconds = time.perf_counter() - started
    labels: Counter[str] = Counter()
    for found in dataset.to_arrow().column("document.entities").to_pylist():
        labels.update(entity["label"] for entity in json.loads(found))
    calls = dataset.model_calls[SCALING_GROUP]
    summary.offline_rows = len(dataset)
    summary.rows_per_second = summary.offline_rows / summary.offline_seconds
    summary.entities_by_label = dict(labels.most_common())
    summary.calls, summary.retries = calls.calls, calls.retries
    summary.replicas_used = list(calls.endpoints)
    summary.replicas_ready_at_start = watch.start
    summary.replicas_ready_peak = watch.peak
    summary.replicas_ready_at_end = watch.end


def report(summary: Summary) -> None:
    """Rows, rows per second, entities by label and the group's ready replicas."""
    top = ", ".join(f"{label} {n}" for label, n in list(summary.entities_by_label.items())[:6])
    console.print("==> summary")
    console.print(
        f"    rows: {summary.offline_rows} in {summary.offline_seconds:.1f} s "
        f"({summary.rows_per_second:.0f} rows/s)"
    )
    console.print(f"    entities: {sum(summary.entities_by_label.values())} ({top})")
    used = ", ".join(summary.replicas_used)
    console.print(
        f"    replicas used: {len(summary.replicas_used)} ({used}) answered "
        f"{summary.calls} calls, {summary.retries} retried"
    )
    console.print(
        f"    replicas of scaling group {SCALING_GROUP!r} (min 1, max 2): "
        f"{summary.replicas_ready_at_start} ready at the start, "
        f"at most {summary.replicas_ready_peak} during the query, "
        f"{summary.replicas_ready_at_end} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000, help="offline rows (1000)")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if args.documents < 1:
        parser.error(f"--documents expects at least 1 document, got {args.documents}")
    client = ChalkClient()
    summary = Summary()
    try:
        online(client, summary)
        offline(client, args.documents, summary)
    finally:
        client.close()
    report(summary)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(asdict(summary), indent=2) + "\n")


if __name__ == "__main__":
    main()
