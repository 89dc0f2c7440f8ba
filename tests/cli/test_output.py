"""Tables print their cells as data: brackets are never read as markup."""

from __future__ import annotations

import pytest

from chalk.cli.output import emit_table


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
