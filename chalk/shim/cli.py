"""``chalk-remote-call``: the model runtime's command line, flag for flag the reference's.

It imports the server, and with it gRPC, only after setting ``GRPC_EXPERIMENTS``: gRPC reads
that variable once, when it loads. The experiments it turns off route every socket read and
write of the server through EventEngine threads of their own; without them the thread that
polls gRPC's completion queue does the I/O itself, which saves about a fifth of the server's
CPU per small call (bench/README.md). A ``GRPC_EXPERIMENTS`` set by the user is left as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Final

from chalk.common.arguments import register_number_types
from chalk.common.bounds import check_bound
from chalk.common.errors import ValidationError
from chalk.shim.arrow_io import InputArgsError, parse_input_args
from chalk.shim.config import SERVER_CORES, ServerConfig
from chalk.shim.logs import configure_logging

__all__ = ["GRPC_EXPERIMENTS", "build_parser", "config_from_args", "main"]

GRPC_EXPERIMENTS: Final = "-event_engine_listener,-event_engine_for_all_other_endpoints"


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; defaults come from ``env`` (``CHALK_REMOTE_CALL_*``)."""
    parser = argparse.ArgumentParser(
        prog="chalk-remote-call",
        description="Serve handler(event, context) as chalk.runtime.v1.RemoteCallService.",
    )
    register_number_types(parser)
    parser.add_argument("--handler", required=True, help="dotted path, e.g. model.handler")
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int(env, "CHALK_REMOTE_CALL_PORT", 6666),
        help="port to listen on; 0 picks a free one (default 6666, env CHALK_REMOTE_CALL_PORT)",
    )
    parser.add_argument(
        "--host",
        default=env.get("CHALK_REMOTE_CALL_HOST") or "[::]",
        help='address to bind (default "[::]", env CHALK_REMOTE_CALL_HOST)',
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_env_int(env, "CHALK_REMOTE_CALL_WORKERS", 10),
        help="threads running the handler (default 10, env CHALK_REMOTE_CALL_WORKERS)",
    )
    parser.add_argument("--on-startup", help="dotted path of a function run before serving")
    parser.add_argument("--on-shutdown", help="dotted path of a function run after draining")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long SIGTERM waits for in-flight calls before cancelling them (default 30)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int(env, "CHALK_REMOTE_CALL_METRICS_PORT", None),
        help="serve Prometheus metrics on this port (env CHALK_REMOTE_CALL_METRICS_PORT)",
    )
    parser.add_argument(
        "--server-core",
        choices=SERVER_CORES,
        default=env.get("CHALK_REMOTE_CALL_SERVER_CORE") or SERVER_CORES[0],
        help="gRPC server core: cython (grpcio's Cython layer, the faster) or grpcio (its "
        "public API) (default cython, env CHALK_REMOTE_CALL_SERVER_CORE)",
    )
    return parser


def config_from_args(argv: Sequence[str], env: Mapping[str, str]) -> ServerConfig:
    """Parse flags and environment into a ``ServerConfig`` (argparse exits 2 on bad flags)."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    for bound, flag, value in (
        ("workers", "--workers", args.workers),
        ("grace_period_seconds", "--grace-period", args.grace_period),
        ("port", "--port", args.port or 1),  # 0 picks a free port
        ("port", "--metrics-port", args.metrics_port or 1),
    ):
        try:
            check_bound(bound, value, what=flag)
        except ValidationError as error:
            parser.error(str(error))
    if args.server_core not in SERVER_CORES:
        # argparse checks choices of flags given, not of defaults from the environment.
        parser.error(
            f"CHALK_REMOTE_CALL_SERVER_CORE must be one of {', '.join(SERVER_CORES)}, "
            f"got {args.server_core!r}"
        )
    try:
        input_args = parse_input_args(env.get("CHALK_INPUT_ARGS"))
    except InputArgsError as error:
        parser.error(str(error))
    return ServerConfig(
        handler=args.handler,
        host=args.host,
        port=args.port,
        workers=args.workers,
        on_startup=args.on_startup,
        on_shutdown=args.on_shutdown,
        grace_period_s=args.grace_period,
        metrics_port=args.metrics_port,
        input_args=input_args,
        log_level=args.log_level,
        server_core=args.server_core,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``chalk-remote-call`` console script."""
    config = config_from_args(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(config.log_level)
    with _set_while_importing(os.environ, "GRPC_EXPERIMENTS", GRPC_EXPERIMENTS):
        serve: Callable[[ServerConfig], int] = importlib.import_module("chalk.shim.server").serve
    sys.exit(serve(config))


@contextlib.contextmanager
def _set_while_importing(env: MutableMapping[str, str], name: str, value: str) -> Iterator[None]:
    # Only for the import: the handler and the processes it starts see the environment as the
    # user set it.
    if name in env:
        yield
        return
    env[name] = value
    try:
        yield
    finally:
        del env[name]


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        sys.exit(f"chalk-remote-call: {name} must be an integer, got {raw!r}")
