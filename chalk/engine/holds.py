"""Calls held while their scaling group has no ready replica (starting, scaled to zero,
waiting for capacity; on Kubernetes, its Service resolving to no pod): re-resolved every
``HOLD_POLL_S`` until a replica is ready, within a time bound and a per-process count bound
(DESIGN.md, "Scale to zero").

``ModelCaller`` owns one ``HeldCalls``; its counts are part of the caller's demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from chalk.catalog.errors import ResolveError
from chalk.common.bounds import check_bound
from chalk.engine.addresses import AddressCounts, retrieved, service_without_pods
from chalk.engine.errors import ModelUnavailableError, TooManyHeldCallsError

if TYPE_CHECKING:  # the defaults are read by chalk serve's settings, which load no pyarrow
    from chalk.catalog.records import Route
    from chalk.engine.routes import Resolver

__all__ = [
    "DEFAULT_HOLD_TIMEOUT_S",
    "DEFAULT_MAX_HELD_CALLS",
    "HOLD_POLL_S",
    "HeldCalls",
    "aside",
    "check_hold_bounds",
]

# How long a call waits for a replica of a group that has none ready (at most the call's
# own deadline), and how many calls one process holds at once.
DEFAULT_HOLD_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_HELD_CALLS: Final = 1000
# How often a held call reads its group's route again (the route cache's second is bypassed).
HOLD_POLL_S: Final = 0.1
# Group statuses that no wait clears: the call fails at once, with the group's reason.
_FAIL_AT_ONCE: Final = frozenset(
    {
        "CrashLoopBackOff",
        "Failed",
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_NO_CAPACITY: Final = "Pending"
# Where a user raises each bound (named in the errors).
_HOLD_SETTING: Final = "hold_timeout_s on ChalkClient, --hold-timeout on chalk serve"
_COUNT_SETTING: Final = "max_held_calls on ChalkClient, --max-held-calls on chalk serve"


def check_hold_bounds(
    hold_timeout_s: float,
    max_held_calls: int,
    *,
    names: tuple[str, str] = ("hold_timeout_s", "max_held_calls"),
) -> None:
    """Raise ``ValidationError`` (naming ``names``: the setting's or flag's) for a bound
    outside chalk.common.bounds' table."""
    check_bound("hold_timeout_seconds", hold_timeout_s, what=names[0])
    check_bound("max_held_calls", max_held_calls, what=names[1])


class HoldRecorder(Protocol):
    """Where a held call's wait is kept (``chalk.engine.recorder.CallRecorder``)."""

    def held(self, group: str, why: str) -> None: ...

    def held_why(self, group: str, why: str) -> None: ...

    def released(self, group: str) -> None: ...


class _Unrecorded:
    """A ``HoldRecorder`` that keeps nothing: a call made without a recorder."""

    def held(self, group: str, why: str) -> None:
        pass

    def held_why(self, group: str, why: str) -> None:
        pass

    def released(self, group: str) -> None:
        pass


_UNRECORDED: Final = _Unrecorded()


class HeldCalls:
    """The calls of one process held for a group with no ready replica, counted per group.

    A held call reads the group's route every ``HOLD_POLL_S`` until it has endpoints, and,
    when they are all ``dns:`` targets (a Kubernetes group's Service), counts their addresses
    again (``addresses``) until one has an address: a headless Service lists only ready pods.
    The calls held for one group share each read and count: a read started after a call
    began its wait serves it, so a thousand held calls make about ten reads (and lookups) a
    second, not ten thousand. A call fails with ``ModelUnavailableError`` once ``bound_s``
    passed (the hold timeout or the call's deadline, the smaller), or at once when the
    group's status says no wait helps (crash-looping, failed); never so for a Service with no
    pod: a Kubernetes group's stored status is only as fresh as the last command that
    observed it, and the Service is read live. ``max_held`` bounds the calls held at once:
    the next one fails at once with ``TooManyHeldCallsError``. Used on the caller's event
    loop; ``counts`` may be read from any thread.
    """

    def __init__(
        self,
        catalog: Resolver,
        *,
        hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S,
        max_held: int = DEFAULT_MAX_HELD_CALLS,
        poll_s: float = HOLD_POLL_S,
        addresses: AddressCounts | None = None,
    ) -> None:
        check_hold_bounds(hold_timeout_s, max_held)
        self._catalog = catalog
        self._addresses = AddressCounts() if addresses is None else addresses
        self.hold_timeout_s = hold_timeout_s
        self.max_held = max_held
        self._poll_s = poll_s
        self._held = 0
        # Calls held now, by group name.
        self.counts: dict[str, int] = {}
        # The latest read of each held name's route: when it started, and the read (the route,
        # and its Service's name when that resolves to no pod).
        self._reads: dict[str, tuple[float, asyncio.Task[tuple[Route, str]]]] = {}

    async def until_ready(
        self,
        feature: str,
        name: str,
        route: Route,
        *,
        no_pod: str = "",
        deadline_s: float,
        held: Callable[[str], None] = lambda _group: None,
        recorder: HoldRecorder | None = None,
    ) -> tuple[Route, float]:
        """The route of ``name`` once it has a ready replica, and when it was read; ``route``:
        the one just read, with no endpoint, or with ``no_pod`` (its Service's DNS name)
        resolving to no address. ``held(group)`` is told when the call starts waiting;
        ``recorder`` (the call's query's) keeps the wait, and why the group has no replica as
        last read, until a replica is ready: a call that ends otherwise (cancelled with its
        request, failed) stays on it."""
        group = route.group
        started = time.monotonic()
        if not no_pod:
            _refuse_at_once(feature, name, route, started)
        if self._held >= self.max_held:
            raise TooManyHeldCallsError(
                f"{feature}: catalog_call({name!r}): scaling group {group!r} has no ready "
                f"replica{_why_none(route, no_pod)}, and this process already holds "
                f"{self._held} call{'' if self._held == 1 else 's'} waiting for one: expected "
                f"at most {self.max_held} at once; raise the bound ({_COUNT_SETTING})",
                group=group,
                waited_s=0.0,
                status=route.status,
                reason=route.reason,
            )
        bound_s = min(self.hold_timeout_s, deadline_s)
        self._held += 1
        self.counts[group] = self.counts.get(group, 0) + 1
        recorder = recorder or _UNRECORDED
        try:
            recorder.held(group, _why(route, no_pod))
            held(group)
            while True:
                left_s = bound_s - (time.monotonic() - started)
                if left_s <= 0:
                    waited_s = time.monotonic() - started
                    raise _timed_out(feature, name, route, no_pod, waited_s, bound_s)
                waited_from = time.monotonic()
                await asyncio.sleep(min(self._poll_s, left_s))
                left_s = bound_s - (time.monotonic() - started)
                try:
                    # A slow lookup waits only as long as the bound leaves (the read goes on
                    # for the other held calls).
                    read_at, (route, no_pod) = await asyncio.wait_for(
                        self._read_since(name, waited_from), max(left_s, 0.0)
                    )
                except ResolveError as error:
                    raise type(error)(f"{feature}: {error}") from None
                except TimeoutError:
                    waited_s = time.monotonic() - started
                    raise _timed_out(feature, name, route, no_pod, waited_s, bound_s) from None
                if route.endpoints and not no_pod:
                    recorder.released(group)
                    return route, read_at
                recorder.held_why(group, _why(route, no_pod))
                if not no_pod:
                    _refuse_at_once(feature, name, route, started)
        finally:
            self._held -= 1
            left = self.counts[group] - 1
            if left:
                self.counts[group] = left
            else:
                del self.counts[group]
                self._reads.pop(name, None)

    async def _read_since(self, name: str, since: float) -> tuple[float, tuple[Route, str]]:
        """A read of ``name``'s route started at ``since`` or later (another held call's, or
        a new one), and when it started."""
        found = self._reads.get(name)
        if found is None or found[0] < since:
            now = time.monotonic()
            task = asyncio.get_running_loop().create_task(self._read(name, now))
            task.add_done_callback(retrieved)
            found = (now, task)
            self._reads[name] = found
        # Shielded: a call cancelled while waiting leaves the read to the others.
        return found[0], await asyncio.shield(found[1])

    async def _read(self, name: str, started: float) -> tuple[Route, str]:
        """``name``'s route, and its Service's name when that resolves to no pod now."""
        # The catalog reads a database: off the loop, once for every call waiting now.
        route = await asyncio.to_thread(self._catalog.resolve, name)
        return route, await service_without_pods(route.endpoints, self._addresses, since=started)


def _refuse_at_once(feature: str, name: str, route: Route, started: float) -> None:
    """Fail a call to a group whose status no wait clears (crash-looping, failed)."""
    if route.status not in _FAIL_AT_ONCE:
        return
    what = "is crash-looping" if route.status == "CrashLoopBackOff" else "cannot start"
    reason = f": {route.reason}" if route.reason else ""
    raise ModelUnavailableError(
        f"{feature}: catalog_call({name!r}): scaling group {route.group!r} has no ready "
        f"replica and {what} (status {route.status}{reason}); failed after "
        f"{_seconds(time.monotonic() - started)} without waiting: expected a replica that "
        f"starts; its last log lines are in `chalk scaling-group get --name {route.group}`",
        group=route.group,
        waited_s=time.monotonic() - started,
        status=route.status,
        reason=route.reason,
    )


def _timed_out(
    feature: str, name: str, route: Route, no_pod: str, waited_s: float, bound_s: float
) -> ModelUnavailableError:
    group = route.group
    fix = f"; `chalk scaling-group get --name {group}` shows its pods" if no_pod else ""
    if no_pod:
        why = _no_pod(route, no_pod)
    elif route.status == _NO_CAPACITY:
        why = f"it waits for capacity: {route.reason or 'no resources free'}"
    else:
        why = f"{route.starting} starting; status {route.status or 'unknown'}" + (
            f": {route.reason}" if route.reason else ""
        )
    return ModelUnavailableError(
        f"{feature}: catalog_call({name!r}): no replica of {group!r} became ready within "
        f"{_seconds(waited_s)} ({why}): expected one within the hold bound of "
        f"{_seconds(bound_s)} (the hold timeout or the call's deadline, the smaller; "
        f"{_HOLD_SETTING}){fix}",
        group=group,
        waited_s=waited_s,
        status=route.status,
        reason=route.reason,
    )


def _why_none(route: Route, no_pod: str) -> str:
    """Why ``route``'s group has no ready replica, as an aside: its Service's, or its status."""
    return aside(_why(route, no_pod))


def aside(why: str) -> str:
    """``why`` a group has no ready replica, as an aside after its name ("" when unknown).

    >>> aside("status Idle"), aside("")
    (' (status Idle)', '')
    """
    return f" ({why})" if why else ""


def _why(route: Route, no_pod: str) -> str:
    """Why ``route``'s group has no ready replica: its Service's, its status, or "" (unknown)."""
    if no_pod:
        return _no_pod(route, no_pod)
    if not route.status:
        return ""
    return f"status {route.status}" + (f": {route.reason}" if route.reason else "")


def _no_pod(route: Route, service: str) -> str:
    """Why a Kubernetes group whose Service ``service`` resolves to no address has no ready
    replica; its stored status (as the last command that observed the cluster left it) is
    only a hint."""
    last = ""
    if route.status:
        reason = f": {route.reason}" if route.reason else ""
        last = f"; its status when last observed: {route.status}{reason}"
    return f"its Service {service} resolves to no pod: scaled to zero, or no pod ready yet{last}"


def _seconds(value: float) -> str:
    """``value`` seconds as a person reads it: ``60 s``, ``0.3 s``.

    Examples
    --------
    >>> _seconds(60.02), _seconds(0.25), _seconds(2.0)
    ('60 s', '0.2 s', '2 s')
    """
    return (
        f"{value:.0f} s" if value >= 10 or float(f"{value:.1f}").is_integer() else f"{value:.1f} s"
    )
