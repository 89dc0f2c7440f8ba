"""Users' feature files type-check under ``mypy --strict``, and wrong arguments still do not.

An expression is assignable to any annotation (see ``chalk.features.expr``), so what stays a
type error is a wrong argument to an F function or an operator method; ``bool(expr)`` and an
operator written with bytes (``_.a + b"x"``) are not caught by mypy, only at class definition.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("typing_cases.py")
NER_FEATURES = ROOT / "examples" / "ner" / "features"


def _mypy(*paths: Path) -> tuple[int, str]:
    # Run from the repository root, as the test command runs mypy: chalk is found there.
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--show-error-codes", *map(str, paths)]
    )
    return status, stdout + stderr


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_every_operator_and_f_function_assigns_to_annotated_features() -> None:
    status, output = _mypy(CASES)
    assert (status, output) == (0, "")


def test_the_quickstart_features_type_check() -> None:
    status, output = _mypy(NER_FEATURES)
    assert (status, output) == (0, "")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param('F.round(_.price, "2")', "[arg-type]", id="round_digits_str"),
        pytest.param("F.json_value(_.doc, 3)", "[arg-type]", id="json_path_int"),
        pytest.param('F.upper(b"bytes")', "[arg-type]", id="bytes_argument"),
        pytest.param("F.lower([1, 2])", "[arg-type]", id="list_argument"),
        pytest.param("F.catalog_call(3, _.text)", "[arg-type]", id="catalog_name_int"),
        pytest.param("F.upper()", "[call-arg]", id="missing_argument"),
        pytest.param("F.upper(_.a, _.b)", "[call-arg]", id="extra_argument"),
        pytest.param("F.if_then_else(_.a > 1, 1)", "[call-arg]", id="if_then_else_two"),
        pytest.param('F.cast(_.a, str, "x")', "[call-arg]", id="cast_three"),
        pytest.param("_.a.__add__(b'x')", "[operator]", id="operator_bytes"),
        pytest.param("F.no_such_function(_.a)", "[attr-defined]", id="unknown_function"),
    ],
)
def test_a_wrong_use_is_still_a_type_error(tmp_path: Path, line: str, error: str) -> None:
    module = tmp_path / "wrong.py"
    module.write_text(
        f"from chalk import functions as F\nfrom chalk.features import _\nvalue = {line}\n"
    )
    status, output = _mypy(module)
    assert status == 1
    assert "wrong.py:3: error:" in output
    assert error in output
