"""Steps on Arrow against the same steps through polars: the same queries, real models on
127.0.0.1, and equal values, types, errors and model calls either way."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from chalk.engine import arrow_steps
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import EngineError
from chalk.engine.execute import execute, execute_async
from chalk.engine.parse import parse
from chalk.engine.plan import plan
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph
from tests.engine.conftest import SHIM_HANDLERS, deploy_group, runtimes, sqlite_catalog
from tests.support.runtime_process import RuntimeProcess

INT, FLOAT, STR = pa.int64(), pa.float64(), pa.large_string()
INTS = pa.list_(INT)
CALLS = "chalk_remote_call_calls_total"

INPUTS: dict[str, pa.DataType] = {"id": INT, "n": INT, "s": STR, "l": INTS, "big": INT}
DERIVED: dict[str, tuple[pa.DataType, str]] = {
    "twice": (INT, 'catalog_call("model.double", _.n)'),
    "twice_as_float": (FLOAT, 'catalog_call("model.double", _.n)'),
    "twice_as_text": (STR, 'catalog_call("model.double", _.n)'),
    "four_times": (INT, 'catalog_call("model.double", catalog_call("model.double", _.n))'),
    "same_list": (INTS, 'catalog_call("model.echo-list", _.l)'),
    "list_for_an_int": (INT, 'catalog_call("model.echo-int", _.l)'),
    "text_and_float": (STR, 'catalog_call("model.named", _.s, 1.5)'),
    "text_and_int": (STR, 'catalog_call("model.named", _.s, 2)'),
    "text_and_null": (STR, 'catalog_call("model.named", _.s, None)'),
    "text_and_text": (STR, 'catalog_call("model.named", _.s, "x")'),
    "both_twice": (
        STR,
        'catalog_call("model.both", catalog_call("model.double", _.n), '
        'catalog_call("model.double", _.n))',
    ),
    "narrowed": (pa.int32(), 'catalog_call("model.echo-int", _.big)'),
    "huge_literal": (INT, 'catalog_call("model.echo-int", 9223372036854775808)'),
    "alias": (INT, "_.n"),
    "alias_as_float": (FLOAT, "_.n"),
    "alias_as_text": (STR, "_.n"),
    "constant": (FLOAT, "2"),
    "null_constant": (STR, "None"),
    "call_then_polars": (INT, '(catalog_call("model.double", _.n) + 1)'),
    "polars_then_call": (INT, 'catalog_call("model.double", _.n_plus_one)'),
    "n_plus_one": (INT, "(_.n + 1)"),
    "call_on_alias": (INT, 'catalog_call("model.double", _.alias)'),
    "unknown_group": (INT, 'catalog_call("model.nobody", _.n)'),
    "handler_fails": (INT, 'catalog_call("model.boom", _.n)'),
}
# The features whose queries fail on the rows of ROWS["three_rows"].
FAILING = frozenset(
    {
        "twice_as_text",
        "list_for_an_int",
        "text_and_text",
        "narrowed",
        "huge_literal",
        "alias_as_text",
        "unknown_group",
        "handler_fails",
    }
)
GRAPH = FeatureGraph.from_classes(
    [
        ClassDef(
            "Item",
            "item",
            (
                *(FeatureDef("item", name, kind, nullable=True) for name, kind in INPUTS.items()),
                *(
                    FeatureDef("item", name, kind, nullable=True, expression=text)
                    for name, (kind, text) in DERIVED.items()
                ),
            ),
        )
    ]
)
ROWS: dict[str, dict[str, pa.Array]] = {
    "three_rows": {
        "n": pa.array([1, None, -4], INT),
        "s": pa.array(["a", None, "Wörld"], STR),
        "l": pa.array([[1, 2], None, []], INTS),
        "big": pa.array([5, None, 2**40], INT),
    },
    "one_row": {
        "n": pa.array([3], INT),
        "s": pa.array(["b"], STR),
        "l": pa.array([[7]], INTS),
        "big": pa.array([2**40], INT),
    },
    "no_rows": {
        "n": pa.array([], INT),
        "s": pa.array([], STR),
        "l": pa.array([], INTS),
        "big": pa.array([], INT),
    },
}


@dataclass(frozen=True)
class Models:
    caller: ModelCaller
    double: RuntimeProcess


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    """``double``, ``echo-int``, ``echo-list``, ``named`` (text, float), ``both`` (int, int)
    and ``boom`` (its handler raises) served by four runtimes, and a caller routed to them
    through a catalog."""
    directory = tmp_path_factory.mktemp("arrow-steps")
    with sqlite_catalog(directory) as catalog, runtimes(directory) as start:
        double = start("model_handlers.double", cwd=SHIM_HANDLERS)
        echo = start("model_handlers.identity", cwd=SHIM_HANDLERS)
        named = start("call_handlers.named_values")
        boom = start("model_handlers.boom", cwd=SHIM_HANDLERS)
        groups: dict[str, tuple[RuntimeProcess, list[tuple[str, pa.DataType]], pa.DataType]] = {
            "double": (double, [("x", INT)], INT),
            "echo-int": (echo, [("x", INT)], INT),
            "echo-list": (echo, [("x", INTS)], INTS),
            "named": (named, [("a", STR), ("b", FLOAT)], STR),
            "both": (named, [("a", INT), ("b", INT)], STR),
            "boom": (boom, [("x", INT)], INT),
        }
        for group, (process, fields, output) in groups.items():
            deploy_group(
                catalog,
                group,
                [process.target],
                inputs=pa.schema(fields),
                output=pa.schema([("y", output)]),
            )
        with ModelCaller(catalog) as caller:
            yield Models(caller, double)


def outcome(
    outputs: list[str],
    columns: Mapping[str, pa.Array],
    caller: ModelCaller,
    *,
    arrow_steps_first: bool,
    awaited: bool = False,
) -> tuple[Any, ...]:
    """The result's schema and values, or the error's class and message; ``awaited`` runs
    ``execute_async`` on the caller's loop instead of ``execute``."""
    table = pa.table({f"item.{name}": column for name, column in columns.items()})
    query = plan(GRAPH, table.column_names, [f"item.{name}" for name in outputs])
    try:
        if awaited:
            running = execute_async(
                query, table, GRAPH, model_caller=caller, arrow_steps_first=arrow_steps_first
            )
            result = asyncio.run_coroutine_threadsafe(running, caller.loop).result(timeout=60)
        else:
            result = execute(
                query, table, GRAPH, model_caller=caller, arrow_steps_first=arrow_steps_first
            )
    except Exception as error:
        return ("error", type(error), str(error))
    return ("result", result.schema, result.to_pydict())


@pytest.mark.parametrize("rows", list(ROWS), ids=list(ROWS))
@pytest.mark.parametrize("output", list(DERIVED), ids=list(DERIVED))
def test_a_step_on_arrow_gives_what_polars_gives(models: Models, output: str, rows: str) -> None:
    on_arrow = outcome([output], ROWS[rows], models.caller, arrow_steps_first=True)
    through_polars = outcome([output], ROWS[rows], models.caller, arrow_steps_first=False)

    assert on_arrow == through_polars


def test_all_outputs_at_once_on_both_paths(models: Models) -> None:
    outputs = [name for name in DERIVED if name not in FAILING]
    columns = ROWS["three_rows"]

    on_arrow = outcome(outputs, columns, models.caller, arrow_steps_first=True)

    assert on_arrow == outcome(outputs, columns, models.caller, arrow_steps_first=False)
    assert on_arrow[0] == "result"
    assert on_arrow[2]["item.four_times"] == [4, None, -16]
    assert on_arrow[2]["item.text_and_int"] == ["a=a,b=2.0", "a=None,b=2.0", "a=Wörld,b=2.0"]
    assert on_arrow[2]["item.same_list"] == [[1, 2], None, []]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "narrowed",
            r"^item\.narrowed: evaluating catalog_call\(\"model\.echo-int\", _\.big\) failed: ",
            id="answer_too_wide",
        ),
        pytest.param(
            "list_for_an_int",
            r"^item\.list_for_an_int: catalog_call\('model\.echo-int'\) argument 1 is "
            r"large_list<int64>, but model echo-int",
            id="argument_of_another_type",
        ),
        pytest.param(
            "alias_as_text", r"^item\.alias_as_text: its expression gives int64", id="alias"
        ),
    ],
)
def test_errors_are_the_same_on_both_paths(models: Models, output: str, expected: str) -> None:
    columns = ROWS["three_rows"]

    on_arrow = outcome([output], columns, models.caller, arrow_steps_first=True)

    assert on_arrow == outcome([output], columns, models.caller, arrow_steps_first=False)
    assert on_arrow[0] == "error"
    assert issubclass(on_arrow[1], EngineError)
    assert re.match(expected, on_arrow[2]), on_arrow[2]


@pytest.mark.parametrize("arrow_steps_first", [True, False], ids=["on_arrow", "through_polars"])
def test_a_call_written_twice_is_made_once(models: Models, arrow_steps_first: bool) -> None:
    before = models.double.metric(CALLS)

    found = outcome(
        ["both_twice"], ROWS["three_rows"], models.caller, arrow_steps_first=arrow_steps_first
    )

    assert found[2] == {"item.both_twice": ["a=2,b=2", "a=None,b=None", "a=-8,b=-8"]}
    assert models.double.metric(CALLS) - before == 1


@pytest.mark.parametrize("arrow_steps_first", [True, False], ids=["on_arrow", "through_polars"])
@pytest.mark.parametrize("rows", list(ROWS), ids=list(ROWS))
@pytest.mark.parametrize("output", list(DERIVED), ids=list(DERIVED))
def test_awaited_model_calls_give_what_blocking_ones_give(
    models: Models, output: str, rows: str, arrow_steps_first: bool
) -> None:
    options = {"arrow_steps_first": arrow_steps_first}
    awaited = outcome([output], ROWS[rows], models.caller, awaited=True, **options)

    assert awaited == outcome([output], ROWS[rows], models.caller, **options)
    if output in FAILING and rows == "three_rows":
        assert awaited[0] == "error"


def test_every_output_at_once_awaited(models: Models) -> None:
    outputs = [name for name in DERIVED if name not in FAILING]
    columns = ROWS["three_rows"]
    before = models.double.metric(CALLS)

    awaited = outcome(outputs, columns, models.caller, arrow_steps_first=True, awaited=True)

    calls = models.double.metric(CALLS) - before
    assert awaited == outcome(outputs, columns, models.caller, arrow_steps_first=True)
    assert models.double.metric(CALLS) - before == 2 * calls
    assert awaited[2]["item.four_times"] == [4, None, -16]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "unknown_group",
            r"^item\.unknown_group: cannot call 'model\.nobody': there is no scaling group",
            id="unknown_group",
        ),
        pytest.param(
            "handler_fails",
            r"^item\.handler_fails: the handler of scaling group 'boom' .* ValueError: cannot "
            r"score 3 rows: the model is not trained",
            id="handler_error",
        ),
    ],
)
def test_model_call_errors_are_the_same_awaited(models: Models, output: str, expected: str) -> None:
    columns = ROWS["three_rows"]

    awaited = outcome([output], columns, models.caller, arrow_steps_first=True, awaited=True)

    assert awaited == outcome([output], columns, models.caller, arrow_steps_first=True)
    assert awaited[0] == "error"
    assert re.match(expected, awaited[2], re.DOTALL), awaited[2]


def test_awaited_calls_need_the_callers_own_loop(models: Models) -> None:
    assert models.caller.loop.is_running()  # the caller's loop: its own thread's
    table = pa.table({"item.n": ROWS["one_row"]["n"]})
    query = plan(GRAPH, table.column_names, ["item.twice"])

    with pytest.raises(RuntimeError, match=r"^item\.twice: this ModelCaller belongs to another"):
        asyncio.run(execute_async(query, table, GRAPH, model_caller=models.caller))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('catalog_call("model.m", _.x)', True, id="call_on_a_feature"),
        pytest.param('catalog_call("model.m", _.x, 1, "a", None)', True, id="call_on_literals"),
        pytest.param('catalog_call("model.m", catalog_call("model.n", _.x))', True, id="nested"),
        pytest.param("_.x", True, id="feature"),
        pytest.param("1.5", True, id="literal"),
        pytest.param("9223372036854775808", False, id="int_beyond_int64"),
        pytest.param('catalog_call("model.m", (_.x + 1))', False, id="call_on_an_operator"),
        pytest.param('upper(catalog_call("model.m", _.x))', False, id="function_of_a_call"),
        pytest.param("(_.x * 2)", False, id="operator"),
    ],
)
def test_which_steps_run_on_arrow(text: str, expected: bool) -> None:
    assert arrow_steps.evaluates(parse(text)) is expected
