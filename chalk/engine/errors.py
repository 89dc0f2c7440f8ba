"""The engine's errors: a query that cannot run, and a ``catalog_call`` that failed.

The executor, the compiler and the model caller raise them; every one is an ``EngineError``
(planning and query-shape errors have their own classes in plan.py and query.py; all of them
are ``ChalkError``s). This module imports nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from chalk.common.errors import ChalkError

__all__ = [
    "EngineError",
    "EngineTypeError",
    "ModelArgumentCountError",
    "ModelCallError",
    "ModelCallNotWiredError",
    "ModelCallTypeError",
    "ModelHandlerError",
    "ModelResultError",
    "ModelTransportError",
    "ModelUnavailableError",
    "TooManyHeldCallsError",
]


class EngineError(ChalkError, ValueError):
    """A planned query that cannot run; the message names the feature."""


class EngineTypeError(EngineError, TypeError):
    """An expression applied to values of the wrong type; names the feature and both types."""


class ModelCallNotWiredError(EngineError, NotImplementedError):
    """``catalog_call`` reached an executor that was given no ``ModelCaller``."""


class ModelCallError(EngineError):
    """A ``catalog_call`` that failed; the message names the feature and the scaling group."""


class ModelArgumentCountError(ModelCallError):
    """The call passes a different number of arguments than the model's input_schema has."""


class ModelCallTypeError(ModelCallError, EngineTypeError):
    """An argument cannot be converted to its input_schema field's type without loss."""


class ModelHandlerError(ModelCallError):
    """The model's handler raised; carries the remote kind, message and traceback.

    Never retried: the same rows would fail the same way on any replica.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        remote_message: str,
        remote_traceback: str,
        endpoint: str,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.endpoint = endpoint


class ModelTransportError(ModelCallError):
    """Rows that no replica could be reached for, after every attempt; names the endpoints."""

    def __init__(self, message: str, *, endpoints: Sequence[str]) -> None:
        super().__init__(message)
        self.endpoints = tuple(endpoints)


class ModelResultError(ModelCallError):
    """The model answered the wrong number of values, or values its output_schema cannot hold."""


class ModelUnavailableError(ModelCallError):
    """No replica of the group became ready for a held call: still starting past the hold
    bound, crash-looping (at once), or waiting for capacity. Names the group, the time
    waited, and the group's status and reason."""

    def __init__(
        self, message: str, *, group: str, waited_s: float, status: str, reason: str
    ) -> None:
        super().__init__(message)
        self.group = group
        self.waited_s = waited_s
        self.status = status
        self.reason = reason


class TooManyHeldCallsError(ModelUnavailableError):
    """A call that found no ready replica while the process already held its most calls."""
