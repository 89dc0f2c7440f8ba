"""``ChalkClient``: the Python entry point (register and deploy models, query features).

Finds the project (``chalk.yaml``, walking up from the working directory) and its catalog, on
first use for a client of a feature server. Over 500 lines: the public class and its private
helpers (progress bar, graph cache) read together.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chalk.catalog import Catalog, ModelVersion, ScalingGroup, open_catalog
from chalk.catalog.models import schema_from_mapping
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.client_http import API_SERVER_ENV, ApiServerClient, offline_table
from chalk.common.apply_guard import check_write
from chalk.common.bounds import check_bound
from chalk.common.config import Project, find_project
from chalk.common.errors import ValidationError
from chalk.deploy.groups import (
    check_model_image,
    delete_group,
    deploy_model_version,
    list_groups,
    observe_group,
    wait_until_serving,
)
from chalk.engine.cache import DEFAULT_MAX_BYTES, open_answer_store
from chalk.engine.callers import refuse_delete_of_called
from chalk.engine.calls import ModelCaller
from chalk.engine.execute import execute, model_calls
from chalk.engine.holds import DEFAULT_HOLD_TIMEOUT_S, DEFAULT_MAX_HELD_CALLS, check_hold_bounds
from chalk.engine.plan import Plan
from chalk.engine.query import (
    OnlineShape,
    feature_name,
    input_table,
    online_shape,
    run_online,
    run_query,
)
from chalk.engine.recorder import CallRecorder, GroupCalls, recording
from chalk.features import FeatureGraph, graph_for
from chalk.features.dsl import feature_classes

__all__ = ["ChalkClient", "Dataset", "GroupCalls", "OnlineQueryResult"]


class ChalkClient:
    """The client of one project's catalog and backend.

    Parameters
    ----------
    project_dir
        Where to start looking for ``chalk.yaml`` (default: the working directory).
    model_call_deadline_s
        How long one model call (one chunk of a ``catalog_call``) may take before it is
        given up on (default 120 s). A call that lets it pass is not sent again to the same
        replica.
    hold_timeout_s
        How long a model call waits for a replica of a scaling group that has none ready
        (starting, scaled to zero, waiting for capacity) before it fails naming the group and
        why (default 60 s; at most ``model_call_deadline_s``). A crash-looping group fails at
        once.
    max_held_calls
        How many model calls of this client wait for a ready replica at once (default 1000);
        the next one fails at once.
    answer_cache_bytes
        The most bytes this client's in-process answer cache keeps (features with
        ``max_staleness``; default 256 MiB, 0 keeps none). Unused when chalk.yaml names an
        ``online_store``.
    api_server
        The URL of a ``chalk serve`` (default: ``$CHALK_API_SERVER``): ``query`` then runs
        there, on the applied graph, with the same results and errors (and a
        ``FeatureMismatchError`` for a feature the server defines differently). Such a client
        needs no ``chalk.yaml`` until a call reads the catalog (models, groups, offline queries).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
    >>> client = ChalkClient(project_dir=root)
    >>> # On the local backend the image must be in the project's store: `chalk image build`.
    >>> from chalk.catalog import open_catalog
    >>> from chalk.common.config import find_project
    >>> from chalk.deploy.local.images import build_image
    >>> (root / "model").mkdir()
    >>> _ = (root / "model" / "Dockerfile").write_text('ENTRYPOINT ["chalk-remote-call"]\\n')
    >>> built = build_image(root / "model", store_dir=root / ".chalk" / "images")
    >>> _ = open_catalog(find_project(root)).images.save(built.image, ["my-model-image:latest"])
    >>> version = client.register_model_version(
    ...     name="my-model",
    ...     input_schema={"text": pa.large_string()},
    ...     output_schema={"entities": pa.large_string()},
    ...     model_image="my-model-image:latest",
    ... )
    >>> version.model_name, version.model_version
    ('my-model', 1)
    """

    def __init__(
        self,
        *,
        project_dir: str | Path | None = None,
        model_call_deadline_s: float | None = None,
        api_server: str | None = None,
        hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S,
        max_held_calls: int = DEFAULT_MAX_HELD_CALLS,
        answer_cache_bytes: int | None = None,
    ) -> None:
        if model_call_deadline_s is not None:
            check_bound("deadline_seconds", model_call_deadline_s, what="model_call_deadline_s")
        check_hold_bounds(hold_timeout_s, max_held_calls)
        api_server = api_server or os.environ.get(API_SERVER_ENV)
        self._api = ApiServerClient(api_server) if api_server else None
        self._project = _LazyProject(Path(project_dir) if project_dir else Path.cwd())
        if self._api is None:
            self._project.catalog()  # in process every query needs the project: find it now
        if answer_cache_bytes is not None:
            check_bound("answer_cache_bytes", answer_cache_bytes)
        self._calls = _Calls(
            self._project,
            model_call_deadline_s,
            hold_timeout_s=hold_timeout_s,
            max_held_calls=max_held_calls,
            cache_bytes=answer_cache_bytes,
        )
        # A client dropped without close() still stops its event loop thread and channels.
        weakref.finalize(self, _close_calls, self._calls)

    @property
    def project(self) -> Project:
        """The project (``ConfigError`` when no ``chalk.yaml`` is found)."""
        return self._project.project()

    @property
    def _catalog(self) -> Catalog:
        return self._project.catalog()

    def register_model_version(
        self,
        name: str,
        input_schema: Mapping[str, pa.DataType] | pa.Schema,
        output_schema: Mapping[str, pa.DataType] | pa.Schema,
        model_image: str,
        aliases: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        deterministic: bool = True,
    ) -> ModelVersion:
        """Register the next version of model ``name`` (numbered from 1 per name).

        ``input_schema`` lists the model's arguments in call order: ``catalog_call``'s
        argument i becomes field i. ``output_schema`` has exactly one field.
        ``deterministic=False`` says the model may answer the same arguments differently (it
        samples, or reads the clock): queries then send every row of its calls, where by
        default identical argument rows of a call are sent once and the answer shared.
        """
        check_write(f"registering model {name!r}")
        check_model_image(self.project, self._catalog, name, model_image)
        return self._catalog.models.register(
            name,
            input_schema=schema_from_mapping(input_schema, what=f"model {name!r} input_schema"),
            output_schema=schema_from_mapping(output_schema, what=f"model {name!r} output_schema"),
            image=model_image,
            aliases=aliases or (),
            metadata=metadata,
            deterministic=deterministic,
        )

    def get_model_version(
        self, name: str, version_or_alias: int | str | None = None
    ) -> ModelVersion:
        """One version of ``name``: the latest, or the one with that number or alias."""
        return self._catalog.models.get(name, version_or_alias)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        return self._catalog.models.list(name)

    def list_scaling_groups(self) -> list[ScalingGroup]:
        """Every live scaling group of the project, oldest first, with its reported status.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).list_scaling_groups()
        []
        """
        return list_groups(self.project, self._catalog)

    def get_scaling_group(self, name: str) -> ScalingGroup:
        """The live scaling group ``name``: its spec, status, replica counts and URL.

        Raises ``NotFoundError`` when no live group has that name (saying when, if it was
        deleted).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).get_scaling_group("ner")
        Traceback (most recent call last):
        ...
        chalk.catalog.errors.NotFoundError: there is no scaling group named 'ner'
        """
        return observe_group(self.project, self._catalog, name).group

    def delete_scaling_group(self, name: str, *, force: bool = False) -> ScalingGroup:
        """Delete the scaling group ``name`` and return its record, now marked deleted.

        Its replicas and URL stop (a running local controller stops them; none is started: the
        next one stops what is left); the record stays in the catalog's history and the name is
        free for a new group. A group the applied features call is refused (``ConflictError``
        naming them) unless ``force``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).delete_scaling_group("ner")
        Traceback (most recent call last):
        ...
        chalk.catalog.errors.NotFoundError: there is no scaling group named 'ner'
        """
        self._catalog.groups.get(name)
        if not force:
            refuse_delete_of_called(self._catalog, name, force_hint="force=True")
        return delete_group(self.project, self._catalog, name)

    def deploy_model_version_to_scaling_group(
        self,
        name: str,
        model_name: str,
        model_version: int | str,
        scaling: AutoScalingSpec | None = None,
        resources: ScalingGroupResourceRequest | None = None,
        env_vars: Mapping[str, str] | None = None,
        port: int | None = None,
        wait: bool = False,
        batch_max_delay_ms: float | None = None,
    ) -> ScalingGroup:
        """Serve a registered model version from scaling group ``name``.

        Creates the group, or updates an existing one to this version (its replicas roll
        with no call lost). On update, ``None`` keeps the current value of ``scaling``,
        ``resources``, ``env_vars``, ``port`` and ``batch_max_delay_ms`` (how long a query's
        model call waits for a free replica slot before it goes anyway; default 5 ms). The
        handler receives its arguments named by
        the model's input_schema, in order (``CHALK_INPUT_ARGS``). With ``wait=True`` it
        returns once the new version serves.

        Examples
        --------
        >>> from chalk.scaling import AutoScalingSpec, ScalingGroupResourceRequest
        >>> spec = AutoScalingSpec(min_replicas=1, max_replicas=2,
        ...                        target_cpu_utilization_percentage=70)
        >>> spec.autoscales
        True
        """
        group, _spec, _changed = deploy_model_version(
            self.project,
            self._catalog,
            name,
            model_name,
            model_version,
            scaling=scaling,
            resources=resources,
            env=env_vars,
            port=port,
            batch_max_delay_ms=batch_max_delay_ms,
        )
        assert group is not None  # not a dry run
        if wait:
            return wait_until_serving(self._catalog, name, project=self.project)
        return group

    def query(
        self, input: Mapping[Any, Any], output: Sequence[Any], *, use_cache: bool = True
    ) -> OnlineQueryResult:
        """Compute ``output`` features for one row of ``input`` values.

        Keys and outputs are features (``Document.text``) or their names (``"document.text"``).
        The graph is the ``@features`` classes this process has defined; with ``api_server``
        it is the server's, and a name this process does not define is checked there.
        Model answers of features with ``max_staleness`` come from the answer cache when it
        holds them; ``use_cache=False`` neither reads nor fills it.
        """
        _check_use_cache(use_cache)
        if self._api is None:
            shape = _SHAPES.of(input, output)
            if shape is not None:
                values = input.values()
                return OnlineQueryResult(run_online(shape, values, **self._run(use_cache)))
        graph = _graph_for(input, output)
        if self._api is not None:
            return OnlineQueryResult(self._api.query(graph, input, output, use_cache=use_cache))
        online = input_table(graph, input, online=True)
        table = run_query(graph, online, output, **self._run(use_cache))
        columns = zip(table.column_names, table.columns, strict=True)
        return OnlineQueryResult({name: column[0].as_py() for name, column in columns})

    def offline_query(
        self,
        input: Mapping[Any, Any] | pl.DataFrame | pa.Table,
        output: Sequence[Any],
        *,
        show_progress: bool | Console = True,
        use_cache: bool = True,
    ) -> Dataset:
        """Compute ``output`` for every row of ``input`` (a dict of lists, polars or Arrow).

        Rows come back in input order, the primary key first when it was an input. A query
        still running after half a second shows a rich progress bar on stderr when stderr is a
        terminal, advancing as the model calls' chunks are answered; ``show_progress=False``
        turns it off, and a ``rich.console.Console`` draws it there instead (when that console
        is a terminal). The dataset's ``model_calls`` says, per scaling group, how many calls
        and rows the query sent and which replicas answered. With ``api_server`` the rows go
        to the server in Arrow blocks, several at once, and the bar advances by blocks.
        Model answers of features with ``max_staleness`` come from the answer cache when it
        holds them (``model_calls`` counts the cache's hits and misses); ``use_cache=False``
        neither reads nor fills it.
        """
        _check_use_cache(use_cache)
        graph = _graph_for(input, output)
        if self._api is not None:
            api = self._api
            return self._offline_remote(api, graph, input, output, show_progress, use_cache)
        table = input_table(graph, input, online=False)
        console = _progress_console(show_progress)
        bar = _QueryBar(console, table.num_rows) if console is not None else None
        recorder = CallRecorder(on_rows=bar.answered if bar is not None else None)
        run = bar.run if bar is not None else execute
        results = []
        with recording(recorder), bar or contextlib.nullcontext():
            for block in _blocks(table):
                options = self._run(use_cache)
                results.append(run_query(graph, block, output, run=run, **options))
                if bar is not None:
                    bar.finished(block.num_rows)
        table = pa.concat_tables(results) if len(results) > 1 else results[0]
        return Dataset(table, model_calls=recorder.groups())

    def _offline_remote(
        self,
        api: ApiServerClient,
        graph: FeatureGraph,
        input: Any,
        output: Sequence[Any],
        show_progress: bool | Console,
        use_cache: bool,
    ) -> Dataset:
        table = offline_table(graph, input)
        console = _progress_console(show_progress)
        bar = _QueryBar(console, table.num_rows) if console is not None else None
        calls: dict[str, GroupCalls] = {}
        results = []
        with bar or contextlib.nullcontext():
            blocks = api.offline_blocks(
                graph, [table], output, model_calls=calls, use_cache=use_cache
            )
            for block in blocks:
                results.append(block)
                if bar is not None:
                    bar.finished(block.num_rows)
        return Dataset(pa.concat_tables(results), model_calls=calls)

    def _run(self, use_cache: bool = True) -> dict[str, Any]:
        return {"model_caller": self._calls.caller(), "use_cache": use_cache}

    def close(self) -> None:
        """Close the model calls' channels and their background loop; the client makes
        them again if used after."""
        self._calls.close()
        if self._api is not None:
            self._api.close()

    def __enter__(self) -> ChalkClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_calls(calls: _Calls) -> None:
    # A client collected on its own calls' loop thread cannot wait for that loop; the
    # thread then stays (a daemon) rather than the collection failing.
    with contextlib.suppress(RuntimeError):
        calls.close()


class _LazyProject:
    """The project found from ``start`` and its catalog, on first use."""

    def __init__(self, start: Path) -> None:
        self._start = start
        self._found: tuple[Project, Catalog] | None = None
        self._lock = threading.Lock()

    def project(self) -> Project:
        return self._open()[0]

    def catalog(self) -> Catalog:
        return self._open()[1]

    def _open(self) -> tuple[Project, Catalog]:
        with self._lock:
            if self._found is None:
                project = find_project(self._start)
                self._found = (project, open_catalog(project))
            return self._found


class _Calls:
    """One ModelCaller, and so one background event loop, for every query of a client,
    whichever thread runs it: gRPC's asyncio objects belong to one loop."""

    def __init__(
        self,
        project: _LazyProject,
        deadline_s: float | None,
        *,
        hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S,
        max_held_calls: int = DEFAULT_MAX_HELD_CALLS,
        cache_bytes: int | None = None,
    ) -> None:
        self._project = project
        self._deadline_s = deadline_s
        self._hold_timeout_s = hold_timeout_s
        self._max_held_calls = max_held_calls
        self._cache_bytes = DEFAULT_MAX_BYTES if cache_bytes is None else cache_bytes
        self._caller: ModelCaller | None = None
        self._lock = threading.Lock()

    def caller(self) -> ModelCaller:
        with self._lock:
            if self._caller is None:
                answers = open_answer_store(
                    self._project.project().config.online_store, max_bytes=self._cache_bytes
                )
                self._caller = ModelCaller(
                    self._project.catalog(),
                    deadline_s=self._deadline_s,
                    hold_timeout_s=self._hold_timeout_s,
                    max_held_calls=self._max_held_calls,
                    answers=answers,
                )
            return self._caller

    def close(self) -> None:
        with self._lock:
            caller, self._caller = self._caller, None
        if caller is not None:
            caller.close()


class OnlineQueryResult:
    """One row of features: ``get_feature_value(Document.entities)`` or ``to_dict()``."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def get_feature_value(self, feature: Any) -> Any:
        """The plain Python value of ``feature`` (a reference or its fqn)."""
        name = feature_name(feature)
        if name not in self._values:
            raise KeyError(
                f"{name} is not in this result: expected one of {', '.join(self._values)}"
            )
        return self._values[name]

    def to_dict(self) -> dict[str, Any]:
        """Every feature of the result by fully qualified name."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"OnlineQueryResult({self._values!r})"


class Dataset:
    """The rows of an offline query, and what its model calls did.

    ``model_calls`` maps each scaling group the query called to its ``GroupCalls``: ``calls``
    (chunks sent, one gRPC call each), ``rows``, ``endpoints`` (the replicas that answered,
    in the order they first did) and ``retries`` (attempts that failed in transport and went
    to a replica again); ``rows_asked``, ``rows_sent`` and ``dedup_hits`` say how many
    argument rows the calls had, how many were sent to the model (those left once identical
    rows were merged, less the cache's hits), and how many were answered from another row's
    answer; ``cache_hits``, ``cache_misses`` and ``cache_errors`` how many distinct rows were
    answered from the answer cache (features with ``max_staleness``), how many were looked up
    and sent, and how many lookups the store failed; ``cache_bytes`` and ``cache_evictions``
    what the group's answers take in the store after the query and how many the store
    evicted for room while it ran.

    Examples
    --------
    >>> dataset = Dataset(pa.table({"doc.id": [1, 2]}))
    >>> len(dataset), dataset.model_calls
    (2, {})
    """

    def __init__(
        self, table: pa.Table, *, model_calls: Mapping[str, GroupCalls] | None = None
    ) -> None:
        self._table = table
        self.model_calls: dict[str, GroupCalls] = dict(model_calls or {})

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_polars(self) -> pl.DataFrame:
        frame = pl.from_arrow(self._table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def to_pandas(self) -> Any:
        """A pandas DataFrame; pandas must be installed (it is not a dependency)."""
        try:
            importlib.import_module("pandas")
        except ImportError:
            raise ImportError(
                "Dataset.to_pandas needs pandas, which is not installed: pip install pandas, "
                "or use to_polars() / to_arrow()"
            ) from None
        return self._table.to_pandas()

    def __len__(self) -> int:
        return int(self._table.num_rows)


# An offline query runs its rows in blocks of this many: each is chunked and spread over the
# replicas by the model caller, so a block must hold several chunks (bench/README.md,
# bench/engine.py). The progress bar advances by chunks, not blocks.
_BLOCK_ROWS = 1_000_000
# How long an offline query runs before its progress bar shows (as tqdm's delay does).
_BAR_DELAY_S = 0.5


def _progress_console(show_progress: bool | Console) -> Console | None:
    """Where the offline query's bar draws: stderr when it is a terminal, or the given console
    when that is a terminal; None for no bar."""
    if isinstance(show_progress, Console):
        return show_progress if show_progress.is_terminal else None
    if show_progress and sys.stderr.isatty():
        return Console(stderr=True)
    return None


class _QueryBar:
    """An offline query's progress bar over its ``rows``, drawn once ``delay_s`` has passed.

    Rows count as done as the model calls answer them: a chunk of n rows answered advances
    the bar by n / (model calls per row of the plan). A plan without model calls advances by
    blocks (``finished``).
    """

    def __init__(self, console: Console, rows: int, *, delay_s: float = _BAR_DELAY_S) -> None:
        self._progress = Progress(
            TextColumn("offline query"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("offline query", total=rows)
        self._calls_per_row = 0
        self._finished_rows = 0
        self._timer = threading.Timer(delay_s, self._show)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._shown = self._done = False

    def run(self, plan: Plan, table: pa.Table, graph: FeatureGraph, **options: Any) -> pa.Table:
        """``execute``, for ``run_query``: notes the plan's model calls per row first."""
        self._calls_per_row = sum(
            len(model_calls(step.node)) for step in plan.steps if step.node is not None
        )
        return execute(plan, table, graph, **options)

    def answered(self, rows: int) -> None:
        """A chunk of ``rows`` rows was answered (``CallRecorder``'s ``on_rows``)."""
        if self._calls_per_row:
            self._progress.advance(self._task, rows / self._calls_per_row)

    def finished(self, rows: int) -> None:
        """A block of ``rows`` rows is done: the bar stands at the rows so far."""
        with self._lock:
            self._finished_rows += rows
            self._progress.update(self._task, completed=self._finished_rows)

    def _show(self) -> None:
        with self._lock:
            if not self._done:
                self._shown = True
                self._progress.start()

    def __enter__(self) -> _QueryBar:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._shown:
                self._progress.stop()


def _graph_for(inputs: Any, outputs: Sequence[Any]) -> FeatureGraph:
    """The graph of the feature classes a query names (inputs and outputs)."""
    if isinstance(inputs, pl.DataFrame | pa.Table):
        names: list[Any] = list(
            inputs.columns if isinstance(inputs, pl.DataFrame) else inputs.column_names
        )
    else:
        names = list(inputs) if isinstance(inputs, Mapping) else []
    namespaces = frozenset(feature_name(name).split(".", 1)[0] for name in [*names, *outputs])
    return _GRAPHS.of_namespaces(namespaces)


class _Graphs:
    """Graphs by the identity of their classes' definitions, and by the namespaces a query
    named while the process's ``@features`` classes stay the same.

    ``graph_for`` builds a new graph on every query (about a quarter of a one-row query's own
    work before its model call); handing back an earlier graph of the same definitions keeps
    its fingerprint (the plan cache's key: a JSON dump and a hash, about 40 us) computed once.
    A cached graph holds its definitions, and a graph by namespaces the classes it was chosen
    among, so their ids stay unique.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._maxsize = maxsize
        self._graphs: dict[tuple[int, ...], FeatureGraph] = {}
        self._by_namespaces: dict[
            tuple[frozenset[str], tuple[int, ...]], tuple[list[type], FeatureGraph]
        ] = {}
        self._lock = threading.Lock()

    def of_namespaces(self, namespaces: frozenset[str]) -> FeatureGraph:
        """``graph_for(namespaces)``, built again only when a class was defined (or
        redefined) since."""
        classes = feature_classes()
        key = (namespaces, tuple(map(id, classes)))
        with self._lock:
            found = self._by_namespaces.get(key)
        if found is not None:
            return found[1]
        graph = self.reuse(graph_for(namespaces))
        with self._lock:
            if len(self._by_namespaces) >= self._maxsize:
                self._by_namespaces.clear()
            self._by_namespaces[key] = (classes, graph)
        return graph

    def reuse(self, graph: FeatureGraph) -> FeatureGraph:
        key = tuple(id(class_def) for class_def in graph.classes)
        with self._lock:
            found = self._graphs.get(key)
            if found is not None:
                return found
            if len(self._graphs) >= self._maxsize:
                self._graphs.clear()
            self._graphs[key] = graph
        return graph


_GRAPHS = _Graphs()


class _Shapes:
    """One-row queries' shapes (``online_shape``) by their input keys and outputs, while the
    process's ``@features`` classes stay the same: a query of a shape seen before skips the
    name lookups, the graph's choice, the plan cache's key and the result's ordering.

    A query whose shape cannot be worked out (an unknown name, no inputs, a key that is not
    hashable) takes the general path, which raises its error as before.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._shapes: dict[tuple[Any, ...], tuple[list[type], OnlineShape]] = {}

    def of(self, inputs: Any, outputs: Sequence[Any]) -> OnlineShape | None:
        if not isinstance(inputs, dict) or not isinstance(outputs, list | tuple):
            return None
        classes = feature_classes()
        key = (tuple(inputs), tuple(outputs), tuple(map(id, classes)))
        try:
            found = self._shapes.get(key)
        except TypeError:  # an unhashable key or output: the general path says what it is
            return None
        if found is not None:
            return found[1]
        try:
            shape = online_shape(_graph_for(inputs, outputs), inputs, outputs)
        except Exception:  # the general path raises it again, as it always has
            return None
        if len(self._shapes) >= self._maxsize:
            self._shapes.clear()
        self._shapes[key] = (classes, shape)
        return shape


_SHAPES = _Shapes()


def _blocks(table: pa.Table) -> list[pa.Table]:
    if table.num_rows <= _BLOCK_ROWS:
        return [table]
    return [table.slice(start, _BLOCK_ROWS) for start in range(0, table.num_rows, _BLOCK_ROWS)]


def _check_use_cache(use_cache: object) -> None:
    """``use_cache`` is True or False: a string such as "no" would read as true."""
    if not isinstance(use_cache, bool):
        raise ValidationError(
            f"use_cache: expected True or False, got {type(use_cache).__name__} {use_cache!r}"
        )
