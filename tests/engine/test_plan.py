"""The planner: dependency order, inputs overriding expressions, errors, the plan cache."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalk.engine import plan as plan_module
from chalk.engine.parse import parse
from chalk.engine.plan import (
    PLAN_CACHE,
    CacheInfo,
    Plan,
    PlanCache,
    PlanError,
    Step,
    cached_plan,
    plan,
)
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph


def graph_of(*classes: tuple[str, Mapping[str, str | None]]) -> FeatureGraph:
    """A graph of int64 features: per class, each feature's name and expression (or None)."""
    return FeatureGraph.from_classes(
        ClassDef(
            namespace.title(),
            namespace,
            tuple(
                FeatureDef(namespace, name, pa.int64(), expression=expression)
                for name, expression in features.items()
            ),
        )
        for namespace, features in classes
    )


DOCUMENT = graph_of(
    (
        "document",
        {
            "id": None,
            "text": None,
            "size": "length(_.text)",
            "double": "(_.size * 2)",
            "total": "((_.size + _.double) + _.id)",
        },
    )
)


def fqns(made: Plan) -> list[str]:
    return [step.fqn for step in made.steps]


def test_a_plan_lists_each_feature_after_what_it_needs() -> None:
    made = plan(DOCUMENT, ["document.text", "document.id"], ["document.total"])

    # Depth first from the output, dependencies in name order: double, id, size.
    assert fqns(made) == [
        "document.text",
        "document.size",
        "document.double",
        "document.id",
        "document.total",
    ]


def test_steps_carry_parsed_nodes_and_inputs_carry_none() -> None:
    made = plan(DOCUMENT, ["document.text"], ["document.double"])

    assert made.steps == (
        Step("document.text", "document", None),
        Step("document.size", "document", parse("length(_.text)")),
        Step("document.double", "document", parse("_.size * 2")),
    )
    assert (made.inputs, made.outputs, made.needed_inputs) == (
        ("document.text",),
        ("document.double",),
        ("document.text",),
    )
    assert made.fingerprint == DOCUMENT.fingerprint


def test_equal_queries_give_equal_plans_whatever_the_input_order() -> None:
    first = plan(DOCUMENT, ["document.text", "document.id"], ["document.total"])
    second = plan(DOCUMENT, ["document.id", "document.text", "document.id"], ["document.total"])

    assert first == second
    assert second.inputs == ("document.id", "document.text")


def test_outputs_keep_the_order_asked_without_repeats() -> None:
    made = plan(DOCUMENT, ["document.text"], ["document.double", "document.size", "document.size"])

    assert made.outputs == ("document.double", "document.size")


def test_inputs_no_output_needs_make_no_step() -> None:
    made = plan(DOCUMENT, ["document.text", "document.id"], ["document.size"])

    assert fqns(made) == ["document.text", "document.size"]
    assert made.inputs == ("document.id", "document.text")


def test_an_input_overrides_a_derived_features_expression() -> None:
    made = plan(DOCUMENT, ["document.size"], ["document.double"])

    assert made.steps == (
        Step("document.size", "document", None),
        Step("document.double", "document", parse("_.size * 2")),
    )


def test_an_output_given_as_an_input_passes_through() -> None:
    made = plan(DOCUMENT, ["document.id"], ["document.id"])

    assert made.steps == (Step("document.id", "document", None),)


def test_references_resolve_within_the_features_own_class() -> None:
    graph = graph_of(
        ("author", {"x": None, "y": "(_.x + 1)"}),
        ("document", {"x": None, "y": "(_.x + 2)"}),
    )

    made = plan(graph, ["author.x", "document.x"], ["document.y", "author.y"])

    assert fqns(made) == ["document.x", "document.y", "author.x", "author.y"]


def test_a_cycle_is_an_error_naming_it() -> None:
    graph = graph_of(("document", {"a": "(_.b + 1)", "b": "(_.a * 2)", "c": "(_.a - 1)"}))

    with pytest.raises(PlanError, match=re.escape("document.a -> document.b -> document.a")):
        plan(graph, [], ["document.c"])


def test_a_feature_depending_on_itself_is_a_cycle() -> None:
    graph = graph_of(("document", {"a": "(_.a + 1)"}))

    with pytest.raises(PlanError, match=re.escape("cycle, document.a -> document.a:")):
        plan(graph, [], ["document.a"])


def test_an_input_breaks_a_cycle() -> None:
    graph = graph_of(("document", {"a": "(_.b + 1)", "b": "(_.a * 2)"}))

    assert fqns(plan(graph, ["document.b"], ["document.a"])) == ["document.b", "document.a"]


def test_a_missing_input_names_the_output_the_feature_and_the_chain() -> None:
    message = (
        "cannot compute document.total: it needs document.text (document.total -> "
        "document.double -> document.size -> document.text), which is neither an input nor "
        "derived: expected document.text among the inputs"
    )

    with pytest.raises(PlanError, match=re.escape(message)):
        plan(DOCUMENT, ["document.id"], ["document.total"])


def test_an_output_that_is_neither_input_nor_derived_is_missing() -> None:
    with pytest.raises(
        PlanError, match=r"cannot compute document\.id: it is neither an input nor derived"
    ):
        plan(DOCUMENT, ["document.text"], ["document.id"])


@pytest.mark.parametrize(
    ("inputs", "outputs", "match"),
    [
        pytest.param(
            [],
            ["document.txt"],
            r"unknown output 'document\.txt'.*did you mean 'document\.text'\?",
            id="output",
        ),
        pytest.param(
            ["document.sise"],
            ["document.size"],
            r"unknown input 'document\.sise'.*did you mean 'document\.size'\?",
            id="input",
        ),
        pytest.param(
            ["zzz"], ["document.size"], r"unknown input 'zzz': expected a feature", id="no_hint"
        ),
    ],
)
def test_unknown_names_are_errors_with_a_suggestion(
    inputs: list[str], outputs: list[str], match: str
) -> None:
    with pytest.raises(PlanError, match=match):
        plan(DOCUMENT, inputs, outputs)


def test_a_reference_to_a_feature_the_class_lacks_is_an_error() -> None:
    graph = graph_of(("document", {"a": None, "b": "(_.a + _.c)"}))

    with pytest.raises(
        PlanError, match=re.escape("document.b refers to _.c, but document has no feature")
    ):
        plan(graph, ["document.a"], ["document.b"])


def test_an_expression_that_does_not_parse_is_an_error_naming_the_feature() -> None:
    graph = graph_of(("document", {"a": None, "b": "(_.a +"}))

    with pytest.raises(PlanError, match=re.escape("document.b: its expression does not parse")):
        plan(graph, ["document.a"], ["document.b"])


def test_a_long_chain_plans_without_recursion() -> None:
    chain: dict[str, str | None] = {"f0": None}
    chain.update({f"f{i}": f"(_.f{i - 1} + 1)" for i in range(1, 3000)})
    graph = graph_of(("chain", chain))

    made = plan(graph, ["chain.f0"], ["chain.f2999"])

    assert fqns(made) == [f"chain.f{i}" for i in range(3000)]


def counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls to the planner behind every cache."""
    calls: list[int] = []
    real: Callable[..., Plan] = plan_module.plan

    def counted(*args: object) -> Plan:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(plan_module, "plan", counted)
    return calls


def test_a_repeated_query_is_planned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    PLAN_CACHE.clear()

    first = cached_plan(DOCUMENT, ["document.text", "document.id"], ["document.total"])
    second = cached_plan(DOCUMENT, ["document.id", "document.text"], ["document.total"])

    assert second is first
    assert len(calls) == 1
    assert PLAN_CACHE.info() == CacheInfo(hits=1, misses=1, size=1, maxsize=256)


@pytest.mark.parametrize(
    ("graph", "inputs", "outputs"),
    [
        pytest.param(
            graph_of(("document", {"text": None, "size": "length(_.text)"})),
            ["document.text"],
            ["document.size"],
            id="another_graph_version",
        ),
        pytest.param(DOCUMENT, ["document.size"], ["document.double"], id="other_inputs"),
        pytest.param(
            DOCUMENT, ["document.text"], ["document.size", "document.double"], id="other_order"
        ),
    ],
)
def test_a_different_query_is_planned_again(
    monkeypatch: pytest.MonkeyPatch,
    graph: FeatureGraph,
    inputs: list[str],
    outputs: list[str],
) -> None:
    calls = counting(monkeypatch)
    cache = PlanCache()
    cache.get(DOCUMENT, ["document.text"], ["document.double", "document.size"])

    cache.get(graph, inputs, outputs)

    assert len(calls) == 2
    assert cache.info().hits == 0


def test_the_cache_keeps_the_most_recently_used_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    cache = PlanCache(maxsize=2)
    queries = [["document.size"], ["document.double"], ["document.total"]]
    inputs = ["document.text", "document.id"]
    cache.get(DOCUMENT, inputs, queries[0])
    cache.get(DOCUMENT, inputs, queries[1])
    cache.get(DOCUMENT, inputs, queries[0])  # now the most recent: queries[1] leaves next

    cache.get(DOCUMENT, inputs, queries[2])
    cache.get(DOCUMENT, inputs, queries[0])
    cache.get(DOCUMENT, inputs, queries[1])

    assert len(calls) == 4
    assert cache.info() == CacheInfo(hits=2, misses=4, size=2, maxsize=2)


def test_failed_plans_are_not_cached() -> None:
    cache = PlanCache()

    for _ in range(2):
        with pytest.raises(PlanError):
            cache.get(DOCUMENT, [], ["document.total"])

    assert cache.info() == CacheInfo(hits=0, misses=2, size=0, maxsize=256)


def test_the_cache_is_thread_safe() -> None:
    cache = PlanCache(maxsize=2)
    queries = [["document.size"], ["document.double"], ["document.total"]]
    found: list[Plan] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        for i in range(200):
            made = cache.get(DOCUMENT, ["document.text", "document.id"], queries[(i + offset) % 3])
            with lock:
                found.append(made)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    info = cache.info()
    assert (info.hits + info.misses, info.size) == (1600, 2)
    assert {made.outputs for made in found} == {tuple(query) for query in queries}


def test_a_cache_holds_at_least_one_plan() -> None:
    with pytest.raises(ValueError, match="at least one plan"):
        PlanCache(maxsize=0)


# Random DAGs: feature f<i> is an input feature or derived from a subset of f0..f<i-1>.
Dag = dict[str, list[str] | None]


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    size = draw(st.integers(min_value=1, max_value=12))
    dag: Dag = {}
    for i in range(size):
        earlier = [f"f{j}" for j in range(i)]
        if i == 0 or draw(st.booleans()):
            dag[f"f{i}"] = None
        else:
            dag[f"f{i}"] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4))
    return dag


def graph_of_dag(dag: Dag) -> FeatureGraph:
    features: dict[str, str | None] = {}
    for name, needs in dag.items():
        if needs is None:
            features[name] = None
        else:
            features[name] = " + ".join(f"_.{need}" for need in needs) if needs else "1"
    return graph_of(("g", features))


def needed(dag: Dag, inputs: Iterable[str], outputs: Iterable[str]) -> set[str]:
    """Every feature the outputs need, stopping at the inputs (a reference planner)."""
    given, seen, pending = set(inputs), set(), list(outputs)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        needs = dag[name]
        if name not in given and needs is not None:
            pending.extend(needs)
    return seen


@settings(max_examples=150, deadline=None)
@given(data=st.data(), dag=dags())
def test_random_dags_plan_every_feature_after_its_inputs(data: st.DataObject, dag: Dag) -> None:
    names = list(dag)
    outputs = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    inputs = data.draw(st.lists(st.sampled_from(names), unique=True))
    graph = graph_of_dag(dag)
    wanted = needed(dag, inputs, outputs)
    missing = {name for name in wanted if dag[name] is None and name not in inputs}

    if missing:
        with pytest.raises(PlanError) as caught:
            plan(graph, [f"g.{n}" for n in inputs], [f"g.{n}" for n in outputs])
        named = re.search(r"expected g\.(f\d+) among the inputs", str(caught.value))
        assert named is not None
        assert named.group(1) in missing
        return
    made = plan(graph, [f"g.{n}" for n in inputs], [f"g.{n}" for n in outputs])

    order = [step.fqn.removeprefix("g.") for step in made.steps]
    assert sorted(order) == sorted(wanted)
    for position, step in enumerate(made.steps):
        name = order[position]
        assert step.is_input == (name in inputs)
        needs = dag[name]
        if not step.is_input and needs is not None:
            assert set(needs) <= set(order[:position])


def ancestors(dag: Dag, name: str) -> set[str]:
    """``name`` and every derived feature it depends on (with no inputs given)."""
    found, pending = set(), [name]
    while pending:
        current = pending.pop()
        needs = dag[current]
        if current in found or needs is None:
            continue
        found.add(current)
        pending.extend(needs)
    return found


@settings(max_examples=150, deadline=None)
@given(data=st.data(), dag=dags())
def test_random_dags_with_an_injected_cycle_name_a_real_cycle(
    data: st.DataObject, dag: Dag
) -> None:
    derived = [name for name, needs in dag.items() if needs is not None]
    if not derived:
        dag["f0"] = []
        derived = ["f0"]
    closing = data.draw(st.sampled_from(derived))
    opening = data.draw(st.sampled_from(sorted(ancestors(dag, closing))))
    # opening is needed by closing; now opening needs closing too.
    needs = dag[opening]
    assert needs is not None
    dag[opening] = sorted({*needs, closing})
    inputs = [f"g.{name}" for name, needs in dag.items() if needs is None]
    graph = graph_of_dag(dag)

    with pytest.raises(PlanError, match="cycle") as caught:
        plan(graph, inputs, [f"g.{closing}"])

    found = re.search(r"in a cycle, (.+?): expected", str(caught.value))
    assert found is not None
    cycle = [fqn.removeprefix("g.") for fqn in found.group(1).split(" -> ")]
    assert cycle[0] == cycle[-1]
    assert len(set(cycle)) == len(cycle) - 1
    for needer, need in itertools.pairwise(cycle):
        assert need in (dag[needer] or [])
