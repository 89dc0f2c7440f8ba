"""The RemoteCallService wire contract as protobuf descriptors, built once at import.

``remote_call.proto`` beside this package is the readable contract; this module declares the
same file in code so that no generated module pins a protobuf runtime version, and keeps it in
a private descriptor pool so that it never collides with another copy of the same messages
(the reference runtime's, say) in a user's process. ``tests/shim/test_wire.py`` checks that
the two declarations agree.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

__all__ = [
    "CALL_FUNCTION_METHOD",
    "MAX_MESSAGE_BYTES",
    "PROTO_FILE",
    "SERVICE_NAME",
    "CallFunctionRequest",
    "CallFunctionResponse",
    "channel_options",
    "file_descriptor_proto",
    "pool",
]

PACKAGE: Final = "chalk.runtime.v1"
SERVICE_NAME: Final = f"{PACKAGE}.RemoteCallService"
CALL_FUNCTION_METHOD: Final = f"/{SERVICE_NAME}/CallFunction"
PROTO_FILE: Final = "chalk/runtime/v1/remote_call.proto"

# gRPC caps a message at 2 GiB - 1 (a signed 32-bit length); 1 GiB leaves room for framing
# while staying well above the 256 MiB a large Arrow batch may need.
MAX_MESSAGE_BYTES: Final = 1 << 30

_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of ``remote_call.proto``, declared field by field.

    Examples
    --------
    >>> [m.name for m in file_descriptor_proto().message_type]
    ['CallFunctionRequest', 'CallFunctionResponse']
    """
    proto = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE, package=PACKAGE, syntax="proto3")
    request = proto.message_type.add(name="CallFunctionRequest")
    request.field.add(name="name", number=1, type=_STRING, label=_OPTIONAL, json_name="name")
    request.field.add(
        name="feather_stream", number=2, type=_BYTES, label=_OPTIONAL, json_name="featherStream"
    )
    response = proto.message_type.add(name="CallFunctionResponse")
    response.field.add(
        name="feather_stream", number=1, type=_BYTES, label=_OPTIONAL, json_name="featherStream"
    )
    service = proto.service.add(name="RemoteCallService")
    service.method.add(
        name="CallFunction",
        input_type=f".{PACKAGE}.CallFunctionRequest",
        output_type=f".{PACKAGE}.CallFunctionResponse",
        client_streaming=True,
        server_streaming=True,
    )
    return proto


def _build_pool() -> descriptor_pool.DescriptorPool:
    # Reflection answers from one pool, so the health and reflection files join ours in it.
    built = descriptor_pool.DescriptorPool()
    for module in (health_pb2, reflection_pb2):
        built.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    built.AddSerializedFile(file_descriptor_proto().SerializeToString())
    return built


pool: Final = _build_pool()
CallFunctionRequest: Final[Any] = message_factory.GetMessageClass(
    pool.FindMessageTypeByName(f"{PACKAGE}.CallFunctionRequest")
)
CallFunctionResponse: Final[Any] = message_factory.GetMessageClass(
    pool.FindMessageTypeByName(f"{PACKAGE}.CallFunctionResponse")
)


def channel_options() -> list[tuple[str, int]]:
    """gRPC options shared by our server and client: message size limits both ways."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
