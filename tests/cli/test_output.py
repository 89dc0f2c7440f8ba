"""Output formats: table cells print as data, documents print their keys in one style."""

from __future__ import annotations

import json
import random
import string

import pytest
import yaml

from chalk.cli import output
from chalk.cli.output import emit, emit_as_given, emit_table


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("timestamp[us, tz=UTC]", id="arrow_type"),
        pytest.param("open [/srv/models/ner.bin] failed", id="closing_tag"),
        pytest.param("[bold]not bold[/bold]", id="markup"),
    ],
)
def test_cells_print_verbatim(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    emit_table(["VALUE"], [{"VALUE": text}])

    assert text in capsys.readouterr().out


def _tables() -> list[tuple[list[str], list[dict[str, str | None]]]]:
    """Tables of printable ASCII: a listing's, edge cases, and 200 drawn at random."""
    draw = random.Random(15)
    letters = string.ascii_letters + string.digits + " -_/.:[]()%*"
    tables: list[tuple[list[str], list[dict[str, str | None]]]] = [
        (["ID", "NAME", "URL"], [{"ID": "sg-1", "NAME": "ner", "URL": None}]),
        (["NAME", "STATUS"], []),
        (["A", "B"], [{"A": " padded ", "B": ""}, {"A": "", "B": "  "}]),
        (["WIDE"], [{"WIDE": "x" * 1_000}]),
        (["LEFT", "RIGHT"], [{"LEFT": "l" * 500, "RIGHT": "r" * 494}]),
    ]
    for _ in range(200):
        columns = ["".join(draw.choices(letters, k=draw.randint(1, 12))) for _ in range(6)]
        columns = list(dict.fromkeys(columns))
        rows = [
            {c: "".join(draw.choices(letters, k=draw.choice([0, 1, 5, 40]))) for c in columns}
            for _ in range(draw.randint(0, 5))
        ]
        tables.append((columns, rows))
    return tables


def test_a_piped_table_prints_plain_as_rich_prints_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = []
    for columns, rows in _tables():
        emit_table(columns, rows)
        plain.append(capsys.readouterr().out)
    monkeypatch.setattr(output, "_plain_table", lambda cells: None)
    for (columns, rows), text in zip(_tables(), plain, strict=True):
        emit_table(columns, rows)
        assert capsys.readouterr().out == text, columns


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("café", id="not_ascii"),
        pytest.param("名前", id="double_width"),
        pytest.param("a\tb", id="tab"),
        pytest.param(" ".join(["word"] * 250), id="wider_than_a_pipe"),
    ],
)
def test_a_table_plain_text_cannot_lay_out_goes_through_rich(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert output._plain_table([["VALUE"], [text]]) is None

    emit_table(["VALUE"], [{"VALUE": text}])

    # All of it, whatever rich does to fit it: a tab is spaces, a long cell wraps.
    assert "".join(capsys.readouterr().out.split()) == "VALUE" + "".join(text.split())


def test_documents_print_in_camel_case_and_the_users_names_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = {
        "image_digest": "sha256:ab",
        "scaling": {"min_replicas": 1, "target_cpu_utilization_percentage": None},
        "env": {"MODEL_NAME": "small"},
        "tags": {"cost_center": "nlp"},
    }

    emit({"name": "ner", "spec": spec, "metadata": {"trained_on": "2024"}}, "json")

    assert json.loads(capsys.readouterr().out) == {
        "name": "ner",
        "spec": {
            "imageDigest": "sha256:ab",
            "scaling": {"minReplicas": 1, "targetCpuUtilizationPercentage": None},
            "env": {"MODEL_NAME": "small"},
            "tags": {"cost_center": "nlp"},
        },
        "metadata": {"trained_on": "2024"},
    }


def test_a_query_row_keeps_its_feature_names(capsys: pytest.CaptureFixture[str]) -> None:
    emit_as_given({"user.first_name": "Ada"}, "yaml")

    assert yaml.safe_load(capsys.readouterr().out) == {"user.first_name": "Ada"}
