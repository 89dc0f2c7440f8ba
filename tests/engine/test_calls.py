"""Model calls against real runtime processes on 127.0.0.1: binding by position, casts,
chunking, spreading over replicas, retries after transport failures, handler errors, and
catalog_call inside the executor's expressions."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from chalk import functions as F
from chalk.catalog import Catalog, Endpoint, Route
from chalk.catalog.errors import UnknownGroupError
from chalk.engine.calls import ModelCaller
from chalk.engine.chunking import (
    DEFAULT_CHUNKS_PER_ENDPOINT,
    DEFAULT_MIN_CHUNK_ROWS,
)
from chalk.engine.errors import (
    EngineTypeError,
    ModelArgumentCountError,
    ModelCallTypeError,
    ModelHandlerError,
    ModelResultError,
    ModelTransportError,
)
from chalk.engine.event_loop import EventLoopThread
from chalk.engine.execute import execute
from chalk.engine.plan import plan
from chalk.engine.recorder import CallRecorder, GroupCalls, recording
from chalk.engine.routes import ROUTE_TTL_S
from chalk.features import ClassDef, Deferred, FeatureDef, FeatureGraph, _
from chalk.features.dsl import namespace_of
from chalk.features.expr import node_of
from tests.engine.conftest import SHIM_HANDLERS, Deploy, MakeCaller, StartRuntime
from tests.support.reference_runtime import ReferenceRuntime
from tests.support.runtime_process import RuntimeProcess, free_port

CALLS = "chalk_remote_call_calls_total"
INT, FLOAT, STR = pa.int64(), pa.float64(), pa.large_string()


def feature_graph(
    name: str,
    inputs: Mapping[str, pa.DataType],
    derived: Mapping[str, tuple[pa.DataType, Deferred]],
) -> FeatureGraph:
    """One feature class's graph, its expressions written with ``_`` and ``F`` as in a
    ``@features`` class, but unregistered, so ``graph_of()`` elsewhere in the process never
    sees a second ``document`` namespace."""
    namespace = namespace_of(name)
    defs = [FeatureDef(namespace, key, kind, nullable=True) for key, kind in inputs.items()]
    defs += [
        FeatureDef(namespace, key, kind, nullable=True, expression=repr(node_of(expression)))
        for key, (kind, expression) in derived.items()
    ]
    return FeatureGraph.from_classes([ClassDef(name, namespace, tuple(defs))])


# The product docs' shapes: one input text to entities, and two inputs to one prediction.
DOCUMENT = feature_graph(
    "Document",
    {"id": INT, "text": STR},
    {
        "entities": (STR, F.catalog_call("model.ner", _.text)),
        "first_name": (
            STR,
            F.json_value(F.catalog_call("model.ner", _.text), "$.entities[0].text"),
        ),
    },
)
REQUEST = feature_graph(
    "Request",
    {"id": INT, "input_a": FLOAT, "input_b": FLOAT},
    {
        "score": (FLOAT, F.catalog_call("model.scorer", _.input_a, _.input_b)),
        "swapped": (FLOAT, F.catalog_call("model.scorer", _.input_b, _.input_a)),
        "score_plus_one": (FLOAT, F.catalog_call("model.scorer", _.input_a, _.input_b) + 1),
    },
)
COUNTER = feature_graph(
    "Counter",
    {"id": INT, "n": INT},
    {
        "twice_plus_one": (INT, F.catalog_call("model.double", _.n) + 1),
        "sum_of_two": (
            INT,
            F.catalog_call("model.double", _.n) + F.catalog_call("model.double", _.n),
        ),
        "four_times": (INT, F.catalog_call("model.double", F.catalog_call("model.double", _.n))),
    },
)


def run_query(
    graph: FeatureGraph, columns: Mapping[str, pa.Array], outputs: list[str], caller: Any
) -> dict[str, list[Any]]:
    query = plan(graph, list(columns), outputs)
    result = execute(query, pa.table(dict(columns)), graph, model_caller=caller)
    found: dict[str, list[Any]] = result.to_pydict()
    return found


def schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(fields))


def calls_served(*runtimes: RuntimeProcess) -> int:
    return sum(int(runtime.metric(CALLS)) for runtime in runtimes)


def double_on(runtime: StartRuntime, count: int = 1, **kwargs: Any) -> list[RuntimeProcess]:
    return [runtime("model_handlers.double", cwd=SHIM_HANDLERS, **kwargs) for _ in range(count)]


def double_deployed(runtime: StartRuntime, deploy: Deploy, count: int) -> list[RuntimeProcess]:
    """``count`` runtimes doubling int64s, all serving scaling group ``double``."""
    models = double_on(runtime, count)
    deploy(
        "double", [m.target for m in models], inputs=schema(("x", INT)), output=schema(("y", INT))
    )
    return models


def test_document_entities_through_the_executor(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    ner = runtime("call_handlers.entities")
    deploy("ner", [ner.target], inputs=schema(("text", STR)), output=schema(("entities", STR)))
    texts = ["Ada met Grace in London.", None, "nothing here"]

    found = run_query(
        DOCUMENT,
        {"document.id": pa.array([1, 2, 3]), "document.text": pa.array(texts)},
        ["document.entities", "document.first_name"],
        make_caller(),
    )

    assert [None if e is None else json.loads(e) for e in found["document.entities"]] == [
        {
            "entities": [
                {"text": "Ada", "label": "NAME"},
                {"text": "Grace", "label": "NAME"},
                {"text": "London", "label": "NAME"},
            ]
        },
        None,
        {"entities": []},
    ]
    assert found["document.first_name"] == ["Ada", None, None]


def test_request_with_two_inputs_binds_arguments_by_position(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    scorer = runtime("call_handlers.difference")
    deploy(
        "scorer",
        [scorer.target],
        inputs=schema(("a", FLOAT), ("b", FLOAT)),
        output=schema(("score", FLOAT)),
    )

    found = run_query(
        REQUEST,
        {
            "request.id": pa.array([1, 2]),
            "request.input_a": pa.array([10.0, 1.5]),
            "request.input_b": pa.array([3.0, 0.5]),
        },
        ["request.score", "request.swapped", "request.score_plus_one"],
        make_caller(),
    )

    assert found == {
        "request.score": [7.0, 1.0],
        "request.swapped": [-7.0, -1.0],
        "request.score_plus_one": [8.0, 2.0],
    }


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="schema_names"),
        pytest.param({"CHALK_INPUT_ARGS": "second,first"}, id="chalk_input_args"),
    ],
)
def test_argument_i_becomes_field_i_whatever_the_names(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller, env: dict[str, str]
) -> None:
    model = runtime("call_handlers.named_values", env=env)
    deploy(
        "pairs",
        [model.target],
        inputs=schema(("second", INT), ("first", INT)),
        output=schema(("seen", STR)),
    )
    first, second = pa.array([1, 2]), pa.array([10, 20])

    seen = make_caller().call_blocking(feature="t.seen", name="model.pairs", args=[first, second])

    assert seen.to_pylist() == ["second=1,first=10", "second=2,first=20"]


def test_an_argument_count_that_differs_from_the_schema_is_refused(
    deploy: Deploy, make_caller: MakeCaller
) -> None:
    deploy("ner", ["127.0.0.1:9"], inputs=schema(("text", STR)), output=schema(("e", STR)))
    texts = pa.array(["a"], STR)

    with pytest.raises(
        ModelArgumentCountError,
        match=r"^document\.entities: catalog_call\('model\.ner'\) passes 2 arguments but model "
        r"ner version 1 takes 1 \(text\): expected one argument per input_schema field, in "
        r"that order$",
    ):
        make_caller().call_blocking(
            feature="document.entities", name="model.ner", args=[texts, texts]
        )


@pytest.mark.parametrize(
    ("given", "field", "source", "target"),
    [
        pytest.param(pa.array([1.5]), INT, "double", "int64", id="float_to_int"),
        pytest.param(pa.array([1]), pa.int32(), "int64", "int32", id="narrowing_int"),
        pytest.param(pa.array(["1"]), INT, "string", "int64", id="string_to_int"),
        pytest.param(pa.array([1]), pa.float32(), "int64", "float", id="int_to_float32"),
        pytest.param(pa.array([1], pa.uint64()), INT, "uint64", "int64", id="uint64_to_int64"),
        pytest.param(pa.array([1]), STR, "int64", "large_string", id="int_to_string"),
    ],
)
def test_unsafe_casts_are_refused_naming_feature_model_field_and_types(
    deploy: Deploy,
    make_caller: MakeCaller,
    given: pa.Array,
    field: pa.DataType,
    source: str,
    target: str,
) -> None:
    deploy("m", ["127.0.0.1:9"], inputs=schema(("x", field)), output=schema(("y", STR)))

    with pytest.raises(
        ModelCallTypeError,
        match=rf"^t\.y: catalog_call\('model\.m'\) argument 1 is {source}, but model m version 1 "
        rf"takes field 'x' \(argument 1\) as {target}: expected a type that converts to "
        rf"{target} without loss \(string <-> large_string, a wider int, int -> float64\); "
        rf'convert it with cast\(\.\.\., "{target}"\)',
    ) as caught:
        make_caller().call_blocking(feature="t.y", name="model.m", args=[given])

    assert isinstance(caught.value, EngineTypeError)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        pytest.param(pa.array([1, None], pa.int32()), INT, id="int32_to_int64"),
        pytest.param(pa.array(["a", None], pa.string()), STR, id="string_to_large_string"),
        pytest.param(pa.array(["a", None], STR), pa.string(), id="large_string_to_string"),
        pytest.param(pa.array([1, None]), FLOAT, id="int_to_float64"),
        pytest.param(pa.array([1, None], pa.uint8()), pa.int16(), id="uint8_to_int16"),
        pytest.param(pa.nulls(2), STR, id="null_to_large_string"),
    ],
)
def test_safe_casts_reach_the_model_as_the_field_type(
    runtime: StartRuntime,
    deploy: Deploy,
    make_caller: MakeCaller,
    given: pa.Array,
    field: pa.DataType,
) -> None:
    model = runtime("call_handlers.type_names")
    deploy("m", [model.target], inputs=schema(("x", field)), output=schema(("types", STR)))

    types = make_caller().call_blocking(feature="t.types", name="model.m", args=[given])

    assert types.to_pylist() == [str(field)] * 2
    assert types.type == STR


def test_nulls_pass_through_the_model(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [model] = double_on(runtime)
    deploy("double", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))

    doubled = make_caller().call_blocking(
        feature="t.y", name="model.double", args=[pa.array([1, None, 3, None])]
    )

    assert doubled.to_pylist() == [2, None, 6, None]


def test_empty_input_is_answered_without_a_call(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [model] = double_on(runtime)
    deploy("double", [model.target], inputs=schema(("x", INT)), output=schema(("y", pa.int32())))

    answer = make_caller().call_blocking(
        feature="t.y", name="model.double", args=[pa.array([], INT)]
    )

    assert answer.type == pa.int32()
    assert len(answer) == 0
    assert calls_served(model) == 0


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_chunk_rows": 100}, id="by_rows"),
        pytest.param({"max_chunk_bytes": 800}, id="by_bytes"),
    ],
)
def test_rows_are_chunked_one_call_each_and_rejoined_in_order(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller, limits: dict[str, int]
) -> None:
    [model] = double_on(runtime)
    deploy("double", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))
    values = pa.array(range(1000), INT)

    doubled = make_caller(**limits).call_blocking(feature="t.y", name="model.double", args=[values])

    assert doubled.equals(pc.multiply(values, 2))
    assert calls_served(model) == 10


def test_answers_as_chunks_are_the_chunks_answers_in_row_order(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [model] = double_on(runtime)
    deploy("double", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))
    caller = make_caller(max_chunk_rows=300)
    values = pa.array(range(1000), INT)

    doubled = caller.call_blocking(
        feature="t.y", name="model.double", args=[values], as_chunks=True
    )
    empty = caller.call_blocking(
        feature="t.y", name="model.double", args=[pa.array([], INT)], as_chunks=True
    )

    assert [len(chunk) for chunk in doubled.chunks] == [300, 300, 300, 100]
    assert doubled.combine_chunks().equals(pc.multiply(values, 2))
    assert (empty.type, len(empty)) == (INT, 0)


def test_chunks_carry_the_rows_they_were_cut_to(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("call_handlers.rows_seen")
    deploy("rows", [model.target], inputs=schema(("x", INT)), output=schema(("n", INT)))

    seen = make_caller(max_chunk_rows=300).call_blocking(
        feature="t.n", name="model.rows", args=[pa.array(range(1000), INT)]
    )

    assert seen.to_pylist() == [300] * 900 + [100] * 100


def test_two_endpoints_share_the_work(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = double_deployed(runtime, deploy, 2)
    values = pa.array(range(2000), INT)

    doubled = make_caller(max_chunk_rows=100, max_in_flight_per_endpoint=2).call_blocking(
        feature="t.y", name="model.double", args=[values]
    )

    assert doubled.equals(pc.multiply(values, 2))
    served = [calls_served(m) for m in models]
    assert all(count > 0 for count in served), served
    assert sum(served) == 20


def test_a_call_of_many_rows_is_spread_over_every_endpoint_in_row_order(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = double_deployed(runtime, deploy, 2)
    values = pa.array(range(10_000), INT)

    with recording(CallRecorder()) as recorder:
        doubled = make_caller().call_blocking(feature="t.y", name="model.double", args=[values])

    assert doubled.equals(pc.multiply(values, 2))
    served = [calls_served(m) for m in models]
    assert all(count > 0 for count in served), served
    assert sum(served) == 2 * DEFAULT_CHUNKS_PER_ENDPOINT
    assert recorder.groups() == {
        "double": GroupCalls(
            "double",
            sum(served),
            10_000,
            recorder.groups()["double"].endpoints,
            retries=0,
            rows_asked=10_000,
            rows_sent=10_000,
        )
    }
    assert sorted(recorder.groups()["double"].endpoints) == sorted(m.target for m in models)
    [seconds] = recorder.call_seconds().values()
    assert len(seconds) == sum(served)
    assert all(0 < value < 60 for value in seconds)


@pytest.mark.parametrize(
    "rows",
    [pytest.param(1, id="one_row"), pytest.param(2 * DEFAULT_MIN_CHUNK_ROWS - 1, id="small")],
)
def test_a_small_call_stays_one_chunk_over_several_endpoints(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller, rows: int
) -> None:
    models = double_deployed(runtime, deploy, 2)
    values = pa.array(range(rows), INT)

    doubled = make_caller().call_blocking(feature="t.y", name="model.double", args=[values])

    assert doubled.equals(pc.multiply(values, 2))
    assert calls_served(*models) == 1


def test_a_replica_ready_mid_call_takes_chunks(
    runtime: StartRuntime, deploy: Deploy, catalog: Catalog, make_caller: MakeCaller
) -> None:
    first, second = (
        runtime("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "0.3"})
        for _ in range(2)
    )
    deploy("slow", [first.target], inputs=schema(("x", INT)), output=schema(("y", INT)))
    values = pa.array(range(20 * DEFAULT_MIN_CHUNK_ROWS), INT)
    caller = make_caller(max_in_flight_per_endpoint=1)

    pending = asyncio.run_coroutine_threadsafe(
        caller.call(feature="t.y", name="model.slow", args=[values]), caller.loop
    )
    first.wait_in_flight(1)
    group = catalog.groups.get("slow")
    endpoints = [Endpoint(first.target), Endpoint(second.target)]
    catalog.groups.report(
        group.id, status="Ready", desired=2, ready=2, available=2, endpoints=endpoints
    )
    answer = pending.result(timeout=120)

    assert answer.equals(values)
    assert calls_served(second) > 0
    assert calls_served(first, second) == DEFAULT_CHUNKS_PER_ENDPOINT


def test_one_chunk_calls_take_turns_over_the_endpoints(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = double_deployed(runtime, deploy, 2)
    caller = make_caller()

    answers = [
        caller.call_blocking(feature="t.y", name="model.double", args=[pa.array([n])])
        for n in range(6)
    ]

    assert [answer.to_pylist() for answer in answers] == [[2 * n] for n in range(6)]
    assert [calls_served(m) for m in models] == [3, 3]


def test_a_refused_endpoint_is_retried_on_the_live_one(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [live] = double_on(runtime)
    refused = f"127.0.0.1:{free_port()}"
    deploy("double", [refused, live.target], inputs=schema(("x", INT)), output=schema(("y", INT)))
    values = pa.array(range(5000), INT)
    recorder = CallRecorder()

    doubled = make_caller(max_chunk_rows=100).call_blocking(
        feature="t.y", name="model.double", args=[values], recorder=recorder
    )

    assert doubled.equals(pc.multiply(values, 2))
    assert calls_served(live) == 50
    [calls] = recorder.groups().values()
    assert (calls.group, calls.calls, calls.rows, calls.endpoints) == (
        "double",
        50,
        5000,
        (live.target,),
    )
    assert calls.retries >= 1


def test_endpoints_that_all_refuse_fail_naming_them(
    deploy: Deploy, make_caller: MakeCaller
) -> None:
    targets = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    deploy("double", targets, inputs=schema(("x", INT)), output=schema(("y", INT)))

    with pytest.raises(
        ModelTransportError,
        match=r"^t\.y: catalog_call\('model\.double'\) could not reach scaling group 'double' "
        r"for rows 0-2: they failed 3 times \(tried ",
    ) as caught:
        make_caller(max_attempts=3, recovery_s=0).call_blocking(
            feature="t.y", name="model.double", args=[pa.array([1, 2, 3])]
        )

    assert set(caught.value.endpoints) == set(targets)
    assert all(target in str(caught.value) for target in targets)


@pytest.mark.parametrize("replicas", [1, 2], ids=["one_replica", "two_replicas"])
def test_a_model_slower_than_the_deadline_is_tried_once_per_replica(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller, replicas: int
) -> None:
    slow = [
        runtime("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "3"})
        for _ in range(replicas)
    ]
    deploy("slow", [r.target for r in slow], inputs=schema(("x", INT)), output=schema(("y", INT)))

    with pytest.raises(
        ModelTransportError,
        match=r"^t\.y: catalog_call\('model\.slow'\): scaling group 'slow' did not answer "
        r"rows 0-0 within the deadline of 0\.5s .*ChalkClient\(model_call_deadline_s=",
    ):
        make_caller(deadline_s=0.5).call_blocking(
            feature="t.y", name="model.slow", args=[pa.array([1])]
        )

    # Not sent to a replica again once it let the deadline pass there.
    assert [calls_served(r) for r in slow] == [1] * replicas


def test_a_call_waits_for_the_only_replica_to_be_restarted(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    port = free_port()
    args = ("--metrics-port", "0", "--port", str(port))
    first = runtime("model_handlers.double", cwd=SHIM_HANDLERS, args=args)
    deploy("double", [f"127.0.0.1:{port}"], inputs=schema(("x", INT)), output=schema(("y", INT)))
    caller = make_caller()
    assert caller.call_blocking(feature="t.y", name="model.double", args=[pa.array([1])]) == (
        pa.array([2], INT)
    )
    first.process.kill()
    first.process.wait()
    # Back a second later, as the local controller restarts a replica that died.
    restart = threading.Timer(
        1.0, runtime, ("model_handlers.double",), {"cwd": SHIM_HANDLERS, "args": args}
    )
    restart.start()

    answer = caller.call_blocking(feature="t.y", name="model.double", args=[pa.array([5, 6])])
    restart.join()

    assert answer.to_pylist() == [10, 12]


def test_a_replica_killed_mid_call_loses_and_duplicates_no_row(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    victim, survivor = (
        runtime("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "0.1"})
        for _ in range(2)
    )
    deploy(
        "slow",
        [victim.target, survivor.target],
        inputs=schema(("x", INT)),
        output=schema(("y", INT)),
    )
    values = pa.array(range(100_000), INT)
    caller = make_caller(max_chunk_rows=1000)

    pending = asyncio.run_coroutine_threadsafe(
        caller.call(feature="t.y", name="model.slow", args=[values]), caller.loop
    )
    give_up = time.monotonic() + 20
    while calls_served(victim) < 2:
        assert time.monotonic() < give_up, "the victim never got a call"
        time.sleep(0.01)
    victim.process.kill()
    assert not pending.done()
    answer = pending.result(timeout=120)

    assert victim.process.wait() == -9
    assert answer.equals(values)
    assert calls_served(survivor) >= 50


@pytest.mark.parametrize(
    ("replicas", "rows", "limits", "failing_rows"),
    [
        pytest.param(2, 3, {}, "rows 0-2: ValueError: cannot score 3 rows", id="one_chunk"),
        pytest.param(
            1,
            10,
            {"max_chunk_rows": 2, "max_in_flight_per_endpoint": 1},
            "rows 0-1: ValueError: cannot score 2 rows",
            id="many_chunks_one_at_a_time",
        ),
    ],
)
def test_a_handler_error_surfaces_with_its_traceback_and_is_never_retried(
    runtime: StartRuntime,
    deploy: Deploy,
    make_caller: MakeCaller,
    replicas: int,
    rows: int,
    limits: dict[str, int],
    failing_rows: str,
) -> None:
    models = [runtime("model_handlers.boom", cwd=SHIM_HANDLERS) for _ in range(replicas)]
    deploy("ner", [m.target for m in models], inputs=schema(("x", INT)), output=schema(("y", INT)))

    with pytest.raises(
        ModelHandlerError,
        match=r"^document\.entities: the handler of scaling group 'ner' \(model ner version 1\) "
        rf"failed at 127\.0\.0\.1:\d+ on {failing_rows}: the model is not trained\n\n"
        r"Remote traceback:\n",
    ) as caught:
        make_caller(**limits).call_blocking(
            feature="document.entities", name="model.ner", args=[pa.array(range(rows))]
        )

    assert caught.value.kind == "ValueError"
    assert caught.value.remote_message.endswith("the model is not trained")
    assert "in _validate" in caught.value.remote_traceback
    assert "in _validate" in str(caught.value)
    assert calls_served(*models) == 1


@pytest.mark.interop
def test_a_wrong_length_answer_from_the_reference_runtime_is_caught(
    runtime: StartRuntime,
    deploy: Deploy,
    make_caller: MakeCaller,
    reference: ReferenceRuntime,
) -> None:
    model = runtime(
        "model_handlers.wrong_length",
        command=(str(reference.script),),
        pick_port=True,
        cwd=SHIM_HANDLERS,
    )
    deploy("m", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))

    with pytest.raises(
        ModelResultError,
        match=r"^t\.y: catalog_call\('model\.m'\): model m version 1 answered badly at "
        r"127\.0\.0\.1:\d+ for rows 0-2: the model answered 4 rows for 3 input rows",
    ):
        make_caller().call_blocking(feature="t.y", name="model.m", args=[pa.array([1, 2, 3])])


def test_an_answer_the_output_schema_cannot_hold_is_refused(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("call_handlers.named_values")
    deploy("m", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))

    with pytest.raises(
        ModelResultError,
        match=r"^t\.y: catalog_call\('model\.m'\): model m version 1 answered string at "
        r"127\.0\.0\.1:\d+, but its output_schema field 'y' is int64: expected values that "
        r"convert to int64 without loss",
    ):
        make_caller().call_blocking(feature="t.y", name="model.m", args=[pa.array([1])])


def test_resolve_errors_keep_their_class_and_name_the_feature(make_caller: MakeCaller) -> None:
    with pytest.raises(
        UnknownGroupError,
        match=r"^document\.entities: cannot call 'model\.ner': there is no scaling group "
        r"named 'ner'",
    ):
        make_caller().call_blocking(
            feature="document.entities", name="model.ner", args=[pa.array(["a"])]
        )


def test_calls_inside_expressions_are_made_once_each_and_nest(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [model] = double_on(runtime)
    deploy("double", [model.target], inputs=schema(("x", INT)), output=schema(("y", INT)))
    columns = {"counter.id": pa.array([1, 2, 3]), "counter.n": pa.array([1, None, -4])}
    caller = make_caller()

    found = run_query(COUNTER, columns, ["counter.twice_plus_one"], caller)
    assert found == {"counter.twice_plus_one": [3, None, -7]}
    assert calls_served(model) == 1

    found = run_query(COUNTER, columns, ["counter.sum_of_two"], caller)
    assert found == {"counter.sum_of_two": [4, None, -16]}
    assert calls_served(model) == 2

    found = run_query(COUNTER, columns, ["counter.four_times"], caller)
    assert found == {"counter.four_times": [4, None, -16]}
    assert calls_served(model) == 4


def test_callers_on_one_shared_loop_serve_several_threads(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    double_deployed(runtime, deploy, 2)
    shared = EventLoopThread()
    try:
        callers = [make_caller(loop=shared.loop, max_chunk_rows=50) for _ in range(2)]

        def one_query(index: int) -> bool:
            values = pa.array(range(index * 1000, index * 1000 + 500), INT)
            answer = callers[index % 2].call_blocking(
                feature="t.y", name="model.double", args=[values]
            )
            return bool(answer.equals(pc.multiply(values, 2)))

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(pool.map(one_query, range(16)))
    finally:
        for caller in callers:
            caller.close()
        shared.stop()


def test_a_blocking_call_on_its_own_loop_is_refused(make_caller: MakeCaller) -> None:
    caller = make_caller()

    async def blocking_inside() -> None:
        caller.call_blocking(feature="t.y", name="model.m", args=[pa.array([1])])

    with pytest.raises(RuntimeError, match="would wait forever"):
        asyncio.run_coroutine_threadsafe(blocking_inside(), caller.loop).result(timeout=10)


@pytest.mark.slow
def test_one_million_rows_through_double(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = double_deployed(runtime, deploy, 2)
    values = pa.array(range(1_000_000), INT)

    doubled = make_caller().call_blocking(feature="t.y", name="model.double", args=[values])

    assert doubled.equals(pc.multiply(values, 2))
    assert calls_served(*models) == 2 * DEFAULT_CHUNKS_PER_ENDPOINT


class _CountingResolver:
    """The catalog, counting how often a route is read."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.reads = 0

    def resolve(self, name: str) -> Route:
        self.reads += 1
        return self.catalog.resolve(name)


def test_a_route_is_reused_within_its_ttl_and_a_refused_endpoint_is_retried(
    runtime: StartRuntime, deploy: Deploy, catalog: Catalog
) -> None:
    live = runtime("model_handlers.double", cwd=SHIM_HANDLERS)
    deploy("double", [live.target], inputs=schema(("x", FLOAT)), output=schema(("y", FLOAT)))
    resolver = _CountingResolver(catalog)
    values = pa.array([1.0, 2.0])

    with ModelCaller(resolver, backoff_s=0.01) as caller:
        for _ in range(3):
            caller.call_blocking(feature="t.y", name="model.double", args=[values])
        reads_while_fresh = resolver.reads
        group = catalog.groups.get("double")
        refused = f"127.0.0.1:{free_port()}"
        catalog.groups.report(
            group.id,
            status="Ready",
            desired=2,
            ready=2,
            available=2,
            endpoints=[Endpoint(refused), Endpoint(live.target)],
        )
        time.sleep(ROUTE_TTL_S)
        answer = caller.call_blocking(feature="t.y", name="model.double", args=[values])

    assert reads_while_fresh == 1
    assert answer.to_pylist() == [2.0, 4.0]
