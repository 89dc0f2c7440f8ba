"""The in-code descriptors agree with remote_call.proto, the readable contract."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from chalk.shim import _wire

PROTO = Path(_wire.__file__).with_name("remote_call.proto")


def test_declared_descriptor_matches_the_proto_file(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    placed = tmp_path / _wire.PROTO_FILE
    placed.parent.mkdir(parents=True)
    shutil.copy(PROTO, placed)
    out = tmp_path / "descriptor.pb"

    code = protoc.main(["protoc", f"-I{tmp_path}", f"--descriptor_set_out={out}", _wire.PROTO_FILE])

    assert code == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    declared = _wire.file_descriptor_proto()
    for message in (*compiled.message_type, *declared.message_type):
        for field in message.field:
            field.ClearField("json_name")
    assert declared == compiled


def test_messages_round_trip_bytes_unchanged() -> None:
    request = _wire.CallFunctionRequest(name="ner", feather_stream=b"\x00\xff" * 10)

    parsed = _wire.CallFunctionRequest.FromString(request.SerializeToString())

    assert (parsed.name, parsed.feather_stream) == ("ner", b"\x00\xff" * 10)


def test_wire_format_matches_field_numbers() -> None:
    # name = 1 (tag 0x0a), feather_stream = 2 (tag 0x12): the reference's numbering.
    encoded = _wire.CallFunctionRequest(name="a", feather_stream=b"b").SerializeToString()

    assert encoded == b"\x0a\x01a\x12\x01b"
    assert _wire.CallFunctionResponse(feather_stream=b"r").SerializeToString() == b"\x0a\x01r"
