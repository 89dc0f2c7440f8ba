"""``chalk offline-query``: features for every row of a Parquet file or folder, into a Parquet
file, block by block (memory bounded whatever the input's size), in process on the applied
graph or through ``chalk serve`` (``--server``).

The output is written to a hidden file beside it and renamed at the end, so a run that is
interrupted (Ctrl-C, SIGTERM) or fails leaves nothing under the output's name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from chalk.cli.query import add_no_cache_flag

# pyarrow, the catalog and the engine are imported where the query runs, so that
# `chalk offline-query --help` loads none of them (see chalk.cli's docstring).
if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    from rich.progress import Progress

    from chalk.features.graph import FeatureGraph

__all__ = ["register"]

# In process, rows are run in blocks of about this many bytes of input: each is chunked over
# the model's replicas, and a million rows already take several blocks, so memory at a million
# rows is what it is at any larger size. (Through a server, blocks are ChalkClient's.)
_LOCAL_BLOCK_BYTES: Final = 4 << 20
# Rows read from the input at a time (the reader's batches; blocks gather several).
_READ_BATCH_ROWS: Final = 65_536
# What a Parquet file's name may end with (a name without a suffix is taken as it is).
_PARQUET_SUFFIXES: Final = (".parquet", ".pq", ".parq")


def register(subparsers: Any) -> None:
    """Add ``chalk offline-query``."""
    parser = subparsers.add_parser(
        "offline-query",
        help="compute features for every row of a Parquet file or folder, into a Parquet file",
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="a Parquet file, or a folder of them (read in path order); columns named by feature",
    )
    parser.add_argument("--output", required=True, metavar="PATH", help="the Parquet file to write")
    parser.add_argument(
        "--out",
        dest="outputs",
        action="append",
        required=True,
        metavar="FEATURE",
        help="a feature to compute (repeatable), e.g. --out document.entities",
    )
    parser.add_argument(
        "--block-rows",
        type=_block_rows,
        metavar="N",
        help=(
            "at most N rows per block (default: a few MiB of input, or less when the "
            "server's body limit is lower); memory grows with the block"
        ),
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="run on this `chalk serve` (its token from $CHALK_API_TOKEN) instead of in process",
    )
    add_no_cache_flag(parser)
    parser.set_defaults(run=_offline_query)


def _offline_query(args: argparse.Namespace) -> int:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from chalk.common.errors import ValidationError  # noqa: PLC0415

    started = time.perf_counter()
    repeated = [name for index, name in enumerate(args.outputs) if name in args.outputs[:index]]
    if repeated:
        raise ValidationError(f"--out {repeated[0]} is given twice: expected each feature once")
    dataset = _open_input(Path(args.input))
    output = Path(args.output)
    _check_output(output, Path(args.input))
    total = dataset.count_rows()
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    written = 0
    writer: pq.ParquetWriter | None = None
    results = _results(args, dataset)
    with _sigterm_as_interrupt(), _progress(total) as advance, contextlib.closing(results):
        try:
            for result in results:
                if writer is None:
                    writer = pq.ParquetWriter(partial, result.schema)
                same = result if result.schema == writer.schema else result.cast(writer.schema)
                writer.write_table(same)
                written += result.num_rows
                advance(result.num_rows)
                del result, same  # not held while the next block runs
            if writer is not None:
                writer.close()
            os.replace(partial, output)
        except BaseException as error:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            partial.unlink(missing_ok=True)
            if isinstance(error, pa.ArrowException | OSError):
                # A file that turned out unreadable half-way, or a full disk.
                raise ValidationError(
                    f"offline-query --input {args.input} --output {output}: {error}"
                ) from None
            raise
    elapsed = time.perf_counter() - started
    print(f"wrote {written:,} rows to {output} in {elapsed:.1f} s")
    return 0


def _results(args: argparse.Namespace, dataset: ds.Dataset) -> Generator[pa.Table]:
    """The output blocks, in input order: from the server, or from the engine here."""
    from chalk.client_http import cut_blocks  # noqa: PLC0415

    tables = _read(dataset)
    if args.server:
        yield from _remote(args.server, tables, args.outputs, args.block_rows, args.use_cache)
        return
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.engine.cache import open_answer_store  # noqa: PLC0415
    from chalk.engine.calls import ModelCaller  # noqa: PLC0415
    from chalk.engine.query import input_table, run_query  # noqa: PLC0415

    project = find_project()
    catalog = open_catalog(project, create=False)
    graph = _applied_graph(catalog)
    _check_names(graph, dataset, args.input, args.outputs)
    answers = open_answer_store(project.config.online_store)
    with ModelCaller(catalog, answers=answers) as caller:
        for block in cut_blocks(tables, lambda: _LOCAL_BLOCK_BYTES, max_rows=args.block_rows):
            table = input_table(graph, block, online=False)
            result = run_query(
                graph, table, args.outputs, model_caller=caller, use_cache=args.use_cache
            )
            del block, table  # not held while the next block is read
            yield result


def _remote(
    url: str,
    tables: Iterable[pa.Table],
    outputs: Sequence[str],
    max_rows: int | None,
    use_cache: bool,
) -> Iterator[pa.Table]:
    from chalk.client_http import ApiServerClient  # noqa: PLC0415
    from chalk.features import FeatureGraph  # noqa: PLC0415

    client = ApiServerClient(url)
    try:
        # This process defines no features: the server checks every name against its graph.
        yield from client.offline_blocks(
            FeatureGraph(()), tables, outputs, max_rows=max_rows, use_cache=use_cache
        )
    finally:
        client.close()


def _block_rows(text: str) -> int:
    from chalk.common.bounds import check_bound  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows above 0, got {text!r}")
    try:
        check_bound("block_rows", value, what="the rows per block")
    except ValidationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _read(dataset: ds.Dataset) -> Iterator[pa.Table]:
    """The input's rows in order, a batch at a time (an empty table first: with no rows at
    all, it still says which columns there are).

    File by file and a row group at a time, on this thread: the dataset's own scanner reads
    ahead (row groups, files, pre-buffered column chunks), which costs memory that grows with
    the input's size.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    schema = dataset.schema
    yield schema.empty_table()
    for path in dataset.files:
        with pq.ParquetFile(path, pre_buffer=False) as source:
            _check_columns(path, source.schema_arrow, schema)
            for batch in source.iter_batches(
                batch_size=_READ_BATCH_ROWS, columns=schema.names, use_threads=False
            ):
                table = pa.Table.from_batches([batch])
                yield table if table.schema == schema else table.cast(schema)


def _check_columns(path: str, found: pa.Schema, expected: pa.Schema) -> None:
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    missing = [name for name in expected.names if name not in found.names]
    if missing:
        raise ValidationError(
            f"--input {path} lacks the columns {', '.join(missing)}: expected every file to "
            f"have the first file's columns ({', '.join(expected.names)})"
        )


def _open_input(path: Path) -> ds.Dataset:
    """The Parquet file at ``path``, or the Parquet files under it in path order."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.dataset as ds  # noqa: PLC0415

    from chalk.common.errors import ValidationError  # noqa: PLC0415

    if not path.exists():
        raise ValidationError(
            f"--input {path}: no such file or folder: expected a Parquet file or a folder of them"
        )
    try:
        found = ds.dataset(path, format="parquet")
        files = sorted(found.files)
        if not files:
            raise ValidationError(
                f"--input {path}: the folder holds no Parquet files: expected *.parquet files"
            )
        # Every file read as the first one's columns (path order is the rows' order).
        first = ds.dataset(files[0], format="parquet").schema
        return ds.dataset(files, schema=first, format="parquet")
    except (pa.ArrowInvalid, OSError) as error:
        raise ValidationError(
            f"--input {path}: cannot read it as Parquet ({error}): expected a Parquet file or a "
            f"folder of them"
        ) from None


def _check_output(output: Path, input_path: Path) -> None:
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    if not output.parent.is_dir():
        raise ValidationError(
            f"--output {output}: the folder {output.parent} does not exist: expected a file in "
            f"an existing folder"
        )
    if output.is_dir():
        raise ValidationError(f"--output {output} is a folder: expected a file name")
    if output.suffix and output.suffix.lower() not in _PARQUET_SUFFIXES:
        raise ValidationError(
            f"--output {output}: offline-query writes Parquet, not {output.suffix}: expected a "
            f"name ending in .parquet, e.g. {output.with_suffix('.parquet')}"
        )
    if output.resolve() == input_path.resolve() or output.resolve().is_relative_to(
        input_path.resolve()
    ):
        raise ValidationError(
            f"--output {output} is inside --input {input_path}: expected another path, so the "
            f"input is not overwritten"
        )


def _applied_graph(catalog: Any) -> FeatureGraph:
    from chalk.catalog.errors import NotFoundError  # noqa: PLC0415
    from chalk.features.graph import FeatureGraph  # noqa: PLC0415

    active = catalog.graphs.active()
    if active is None:
        raise NotFoundError(
            "no feature graph has been applied to this project: run `chalk apply` first"
        )
    return FeatureGraph.from_json(active.graph)


def _check_names(
    graph: FeatureGraph, dataset: ds.Dataset, input_path: str, outputs: Sequence[str]
) -> None:
    """Each input column and each --out names a feature of the applied graph (the graph's
    error names the closest one)."""
    from chalk.common.errors import ValidationError  # noqa: PLC0415
    from chalk.features.graph import GraphError  # noqa: PLC0415

    for name in dataset.schema.names:
        try:
            graph.feature(name)
        except GraphError as error:
            raise ValidationError(
                f"--input {input_path}: column {name!r} is not an input feature: {error}"
            ) from None
    for name in outputs:
        try:
            graph.feature(name)
        except GraphError as error:
            raise ValidationError(f"--out {name}: {error}") from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does (the partial output removed, exit 130)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` rows on stderr when it is a terminal; yields the
    function that advances it."""
    from rich.console import Console  # noqa: PLC0415

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda rows: None
        return
    progress = _bar(console)
    task = progress.add_task("offline query", total=total)
    with progress:
        yield lambda rows: progress.advance(task, rows)


def _bar(console: Any) -> Progress:
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("offline query"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
