"""Commands that only read, and dry runs, never create the catalog (issue 24, class 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalk.cli import main


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["model", "list"], 0, id="model_list"),
        pytest.param(["image", "list"], 0, id="image_list"),
        pytest.param(["scaling-group", "list"], 0, id="group_list"),
        pytest.param(["scaling-group", "get", "--name", "ner"], 1, id="group_get"),
        pytest.param(["model", "get", "--name", "ner"], 1, id="model_get"),
        pytest.param(["query", "--in", "a.b=1", "--out", "a.c"], 1, id="query"),
        pytest.param(
            ["scaling-group", "create", "--name", "g", "--image", "ner:latest", "--dry-run"],
            1,
            id="create_dry_run",
        ),
    ],
)
def test_a_read_in_a_new_project_creates_no_catalog(
    argv: list[str],
    code: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "chalk.yaml").write_text("project: fresh\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit) as done:
        main(argv)

    assert (done.value.code or 0) == code, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / ".chalk").exists()
