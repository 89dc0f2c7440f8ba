"""Output formats: table cells print as data, documents print their keys in one style."""

from __future__ import annotations

import json

import pytest
import yaml

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
