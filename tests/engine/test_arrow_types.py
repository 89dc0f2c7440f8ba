"""The Arrow type rules: which casts lose nothing, and the string predicates' two meanings."""

from __future__ import annotations

import pyarrow as pa
import pytest

from chalk.engine.arrow_types import converts_without_loss, is_string_or_null, is_text

INT, FLOAT = pa.int64(), pa.float64()


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        pytest.param(pa.int8(), INT, True, id="int_widening"),
        pytest.param(pa.uint32(), INT, True, id="unsigned_to_wider_signed"),
        pytest.param(pa.uint32(), pa.int32(), False, id="unsigned_to_same_width_signed"),
        pytest.param(pa.int32(), pa.uint64(), False, id="signed_to_unsigned"),
        pytest.param(pa.float32(), FLOAT, True, id="float_widening"),
        pytest.param(FLOAT, pa.float32(), False, id="float_narrowing"),
        pytest.param(pa.binary(), pa.large_binary(), True, id="binary_to_large_binary"),
        pytest.param(pa.list_(pa.int32()), pa.list_(INT), True, id="list_of_widening"),
        pytest.param(pa.list_(INT), pa.list_(pa.int32()), False, id="list_of_narrowing"),
        pytest.param(
            pa.timestamp("us", "UTC"), pa.timestamp("ns", "UTC"), True, id="finer_timestamp"
        ),
        pytest.param(pa.timestamp("us", "UTC"), pa.timestamp("us"), False, id="other_time_zone"),
        pytest.param(pa.bool_(), INT, False, id="bool_to_int"),
    ],
)
def test_converts_without_loss(source: pa.DataType, target: pa.DataType, expected: bool) -> None:
    assert converts_without_loss(source, target) is expected


@pytest.mark.parametrize(
    ("arrow_type", "text", "string_or_null"),
    [
        pytest.param(pa.string(), True, True, id="string"),
        pytest.param(pa.large_string(), True, True, id="large_string"),
        pytest.param(pa.string_view(), True, False, id="string_view"),
        pytest.param(pa.null(), False, True, id="null"),
        pytest.param(pa.binary(), False, False, id="binary"),
    ],
)
def test_text_types_and_what_string_functions_take(
    arrow_type: pa.DataType, text: bool, string_or_null: bool
) -> None:
    assert (is_text(arrow_type), is_string_or_null(arrow_type)) == (text, string_or_null)
