"""A model call's two edges: its arguments as the model's input_schema, its answers as the
output_schema's type, both converted only where nothing is lost.

``chalk.engine.validate`` checks a graph's calls with ``check_arguments``; ``ModelCaller``
builds each call's batch with ``argument_batch``; the dispatch types answers with ``typed_answer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from chalk.catalog.records import Endpoint, Route
from chalk.engine.arrow_types import converts_without_loss, type_text
from chalk.engine.errors import (
    ModelArgumentCountError,
    ModelCallError,
    ModelCallTypeError,
    ModelResultError,
)
from chalk.engine.model_call import ModelCall

__all__ = ["argument_batch", "check_arguments", "typed_answer"]

_SAFE_CASTS: Final = "string <-> large_string, a wider int, int -> float64"


def check_arguments(
    feature: str, name: str, route: Route, argument_types: Sequence[pa.DataType]
) -> None:
    """Raise as a call of ``name`` for ``feature`` would with arguments of these types: one
    argument per input_schema field, each converting to its field's type without loss.

    ``chalk apply`` checks a graph's calls with it; ``ModelCaller`` checks each call.

    Examples
    --------
    >>> route = Route("ner", "ner", 1, pa.schema({"text": pa.large_string()}),
    ...               pa.schema({"entities": pa.large_string()}), None, ())
    >>> check_arguments("doc.entities", "model.ner", route, [pa.string()])
    >>> check_arguments("doc.entities", "model.ner", route, [pa.string(), pa.int64()])
    Traceback (most recent call last):
    ...
    chalk.engine.errors.ModelArgumentCountError: doc.entities: catalog_call('model.ner') passes 2 arguments but model ner version 1 takes 1 (text): expected one argument per input_schema field, in that order
    """  # noqa: E501
    fields = list(route.input_schema)
    if len(argument_types) != len(fields):
        call = ModelCall(feature, name, route)
        names = ", ".join(f.name for f in fields)
        plural = "" if len(argument_types) == 1 else "s"
        raise ModelArgumentCountError(
            f"{call.prefix} passes {len(argument_types)} argument{plural} but {call.model} "
            f"takes {len(fields)} ({names}): expected one argument per input_schema field, in "
            f"that order"
        )
    for index, (source, target) in enumerate(zip(argument_types, fields, strict=True)):
        if source != target.type and not converts_without_loss(source, target.type):
            call = ModelCall(feature, name, route)
            where = f"argument {index + 1}"
            raise ModelCallTypeError(
                f"{call.prefix} {where} is {type_text(source)}, but {call.model} takes field "
                f"{target.name!r} ({where}) as {type_text(target.type)}: expected a type that "
                f"converts to {type_text(target.type)} without loss ({_SAFE_CASTS}); convert it "
                f'with cast(..., "{type_text(target.type)}") or change the feature\'s type'
            )


def argument_batch(call: ModelCall, args: Sequence[pa.Array]) -> pa.RecordBatch:
    """The arguments as a batch named and typed by input_schema, argument i as field i."""
    fields = list(call.route.input_schema)
    check_arguments(call.feature, call.name, call.route, [column.type for column in args])
    columns = [_one_array(column) for column in args]
    lengths = {len(column) for column in columns}
    if len(lengths) > 1:
        raise ModelCallError(
            f"{call.prefix} got argument columns of different lengths "
            f"({', '.join(str(len(c)) for c in columns)}): expected one value per row in each"
        )
    cast = [
        _cast_argument(call, index, column, fields[index]) for index, column in enumerate(columns)
    ]
    return pa.RecordBatch.from_arrays(cast, names=[f.name for f in fields])


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        # combine_chunks copies even a single chunk (8 MB for 1M float64 rows).
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _cast_argument(call: ModelCall, index: int, column: pa.Array, target: pa.Field) -> pa.Array:
    source = column.type
    if source == target.type:
        return column
    where = f"argument {index + 1}"
    try:
        return pc.cast(column, target.type, safe=True)
    except pa.ArrowException as error:
        raise ModelCallTypeError(
            f"{call.prefix} {where} cannot be converted from {type_text(source)} to "
            f"{type_text(target.type)} for field {target.name!r} of {call.model} without loss: "
            f"{error}"
        ) from None


def typed_answer(call: ModelCall, endpoint: Endpoint, answer: pa.Array) -> pa.Array:
    """``endpoint``'s answer typed by the output_schema, converted when that loses nothing."""
    target = call.output_type
    if answer.type == target:
        return answer
    # A handler returning Python ints answers int64 for an int32 output: fine when they fit.
    both_ints = pa.types.is_integer(answer.type) and pa.types.is_integer(target)
    error_text = ""
    if both_ints or converts_without_loss(answer.type, target):
        try:
            return pc.cast(answer, target, safe=True)
        except pa.ArrowException as error:
            error_text = f": {error}"
    output = call.route.output_schema.field(0).name
    raise ModelResultError(
        f"{call.prefix}: {call.model} answered {type_text(answer.type)} at {endpoint.target}, but "
        f"its output_schema field {output!r} is {type_text(target)}{error_text}: expected values "
        f"that convert to {type_text(target)} without loss; fix the handler or the output_schema"
    )
