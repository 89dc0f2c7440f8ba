"""The machine's GPUs as ``nvidia-smi -L`` lists them, and which local replica holds which.

The local controller hands GPUs out by count (a cloud type such as ``nvidia-tesla-t4`` is
noted, not matched: local names differ) and passes them on through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from chalk.deploy.errors import DeployError

__all__ = [
    "Gpu",
    "GpuAllocator",
    "GpuError",
    "cuda_visible_devices",
    "gpu_environment",
    "list_gpus",
    "parse_cuda_visible_devices",
]

# `GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5f1c...)`. MIG devices are listed under their GPU as
# indented `MIG ...` lines; they do not match and are skipped.
_GPU_LINE: Final = re.compile(r"GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)\s]+)\)")


class GpuError(DeployError, ValueError):
    """A GPU request or claim that the allocator cannot honour as asked."""


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU of this machine, as ``nvidia-smi -L`` names it.

    Examples
    --------
    >>> Gpu(0, "NVIDIA A100-SXM4-40GB", "GPU-5f1c2d3e")
    Gpu(index=0, name='NVIDIA A100-SXM4-40GB', uuid='GPU-5f1c2d3e')
    """

    index: int
    name: str
    uuid: str


def list_gpus(*, path: str | None = None, timeout_s: float = 5.0) -> list[Gpu]:
    """The GPUs that ``nvidia-smi -L`` lists, by index; an empty list when it cannot tell.

    Parameters
    ----------
    path
        The search path for ``nvidia-smi`` (``os.pathsep``-separated, as ``PATH``); ``None``
        uses ``PATH``.
    timeout_s
        How long ``nvidia-smi`` may take before the machine counts as having no GPUs.

    Returns
    -------
    list[Gpu]
        Sorted by index. Empty when ``nvidia-smi`` is missing, exits non-zero or times out:
        a machine whose GPUs cannot be listed has none to hand out. Lines that are not
        ``GPU <index>: <name> (UUID: <uuid>)`` are skipped.

    Examples
    --------
    >>> list_gpus(path="")
    []
    """
    executable = shutil.which("nvidia-smi", path=path)
    if executable is None:
        return []
    try:
        listed = subprocess.run(
            [executable, "-L"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    return _parse_listing(listed.stdout)


def _parse_listing(text: str) -> list[Gpu]:
    found: dict[int, Gpu] = {}
    for line in text.splitlines():
        match = _GPU_LINE.fullmatch(line.strip())
        if match is None:
            continue
        index = int(match["index"])
        found.setdefault(index, Gpu(index, match["name"], match["uuid"]))
    return [found[index] for index in sorted(found)]


def cuda_visible_devices(gpus: Iterable[Gpu]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value naming ``gpus`` by index; ``""`` hides every GPU.

    Indices rather than UUIDs: every CUDA framework reads them (some tools parse the value as
    integers), they read back without a lookup when a restarted controller adopts a replica
    (``parse_cuda_visible_devices``), and they are what ``nvidia-smi`` shows a person. The catch
    is that CUDA numbers devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so pass
    ``gpu_environment`` to a replica, which sets both.

    Examples
    --------
    >>> cuda_visible_devices([Gpu(2, "T4", "GPU-b"), Gpu(0, "T4", "GPU-a")])
    '0,2'
    >>> cuda_visible_devices([])
    ''
    """
    return ",".join(str(index) for index in sorted(gpu.index for gpu in gpus))


def gpu_environment(gpus: Iterable[Gpu]) -> dict[str, str]:
    """The environment variables that give a replica exactly ``gpus``, numbered as listed.

    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA number devices as ``nvidia-smi`` does, so the
    indices in ``CUDA_VISIBLE_DEVICES`` mean the GPUs the allocator handed out.

    Examples
    --------
    >>> gpu_environment([Gpu(1, "T4", "GPU-b")])
    {'CUDA_DEVICE_ORDER': 'PCI_BUS_ID', 'CUDA_VISIBLE_DEVICES': '1'}
    """
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpus)}


def parse_cuda_visible_devices(value: str) -> list[int]:
    """The GPU indices in a ``CUDA_VISIBLE_DEVICES`` value that ``cuda_visible_devices`` wrote.

    Raises
    ------
    GpuError
        When an entry is not a GPU index (a UUID or other text this controller never writes).

    Examples
    --------
    >>> parse_cuda_visible_devices("0,2")
    [0, 2]
    >>> parse_cuda_visible_devices("")
    []
    >>> parse_cuda_visible_devices("GPU-5f1c")
    Traceback (most recent call last):
    ...
    chalk.deploy.local.gpus.GpuError: CUDA_VISIBLE_DEVICES is not a list of GPU indices: \
expected indices such as '0,2', got 'GPU-5f1c'
    """
    entries = [entry.strip() for entry in value.split(",")] if value.strip() else []
    if not all(entry.isdecimal() for entry in entries):
        error = GpuError(
            "CUDA_VISIBLE_DEVICES is not a list of GPU indices: "
            f"expected indices such as '0,2', got {value!r}"
        )
        raise error
    return [int(entry) for entry in entries]


class GpuAllocator:
    """This machine's GPUs and the replica holding each; GPUs go out by count, lowest first.

    Owned by the controller's reconcile loop and not thread-safe.

    Parameters
    ----------
    gpus
        The machine's GPUs, usually ``list_gpus()`` (see ``detect``).

    Raises
    ------
    GpuError
        When two GPUs share an index.

    Examples
    --------
    >>> allocator = GpuAllocator([Gpu(0, "T4", "GPU-a"), Gpu(1, "T4", "GPU-b")])
    >>> allocator.allocate("r1", 1)
    [Gpu(index=0, name='T4', uuid='GPU-a')]
    >>> allocator.allocate("r2", 2) is None
    True
    >>> allocator.free_count, allocator.total
    (1, 2)
    """

    def __init__(self, gpus: Iterable[Gpu]) -> None:
        by_index: dict[int, Gpu] = {}
        for gpu in gpus:
            if gpu.index in by_index:
                error = GpuError(
                    f"GPU index {gpu.index} is listed twice: "
                    f"expected one GPU per index, got {by_index[gpu.index]} and {gpu}"
                )
                raise error
            by_index[gpu.index] = gpu
        self._gpus: dict[int, Gpu] = {index: by_index[index] for index in sorted(by_index)}
        self._holder: dict[int, str] = {}

    @classmethod
    def detect(cls, *, path: str | None = None, timeout_s: float = 5.0) -> GpuAllocator:
        """An allocator over the GPUs ``list_gpus`` finds (none when it finds none).

        Examples
        --------
        >>> GpuAllocator.detect(path="").total
        0
        """
        return cls(list_gpus(path=path, timeout_s=timeout_s))

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """Every GPU of the machine, by index."""
        return tuple(self._gpus.values())

    @property
    def total(self) -> int:
        """How many GPUs the machine has."""
        return len(self._gpus)

    @property
    def free_count(self) -> int:
        """How many GPUs no replica holds."""
        return len(self._gpus) - len(self._holder)

    def held_by(self, replica_id: str) -> list[Gpu]:
        """The GPUs ``replica_id`` holds, by index (empty when it holds none).

        Examples
        --------
        >>> allocator = GpuAllocator([Gpu(0, "T4", "GPU-a")])
        >>> allocator.held_by("r1")
        []
        """
        return [gpu for index, gpu in self._gpus.items() if self._holder.get(index) == replica_id]

    def allocate(self, replica_id: str, count: int) -> list[Gpu] | None:
        """Hand ``count`` free GPUs (lowest indices first) to ``replica_id``.

        Parameters
        ----------
        replica_id
            The replica that will hold them until ``release``.
        count
            GPUs per replica; 0 hands out none.

        Returns
        -------
        list[Gpu] | None
            The GPUs now held, by index; ``None`` when fewer than ``count`` are free, and then
            nothing is allocated (``shortfall_reason`` says why). A replica that already
            holds ``count`` GPUs gets the same ones back, so a repeated pass changes nothing.

        Raises
        ------
        GpuError
            When ``count`` is negative, or the replica already holds a different number.

        Examples
        --------
        >>> allocator = GpuAllocator([Gpu(0, "T4", "GPU-a"), Gpu(1, "T4", "GPU-b")])
        >>> [gpu.index for gpu in allocator.allocate("r1", 2)]
        [0, 1]
        >>> allocator.allocate("r1", 2) == allocator.held_by("r1")
        True
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            error = GpuError(
                f"replica {replica_id} asked for an impossible number of GPUs: "
                f"expected a whole number >= 0, got {count!r}"
            )
            raise error
        held = self.held_by(replica_id)
        if held:
            if len(held) != count:
                error = GpuError(
                    f"replica {replica_id} already holds GPUs {cuda_visible_devices(held)}: "
                    f"expected {len(held)} to be asked for again, got {count}; "
                    "release them first"
                )
                raise error
            return held
        free = [index for index in self._gpus if index not in self._holder]
        if len(free) < count:
            return None
        for index in free[:count]:
            self._holder[index] = replica_id
        return self.held_by(replica_id)

    def claim(self, replica_id: str, indices: Iterable[int]) -> list[Gpu]:
        """Record that ``replica_id`` holds the GPUs at ``indices``; for adopted replicas.

        A restarted controller reads an adopted replica's ``CUDA_VISIBLE_DEVICES`` (see
        ``parse_cuda_visible_devices``) and claims those GPUs back, so they are not handed out
        twice. Nothing is recorded when the claim fails.

        Returns
        -------
        list[Gpu]
            Every GPU the replica now holds, by index.

        Raises
        ------
        GpuError
            When an index is not a GPU of this machine, or another replica holds it.

        Examples
        --------
        >>> allocator = GpuAllocator([Gpu(0, "T4", "GPU-a"), Gpu(1, "T4", "GPU-b")])
        >>> [gpu.index for gpu in allocator.claim("r1", [1])]
        [1]
        >>> [gpu.index for gpu in allocator.allocate("r2", 1)]
        [0]
        """
        wanted = sorted(set(indices))
        unknown = [index for index in wanted if index not in self._gpus]
        if unknown:
            error = GpuError(
                f"replica {replica_id} was started with GPUs this machine does not have: "
                f"expected indices among {_index_list(self._gpus)}, got {_index_list(unknown)}"
            )
            raise error
        taken = {index: self._holder[index] for index in wanted if index in self._holder}
        others = {index: holder for index, holder in taken.items() if holder != replica_id}
        if others:
            owners = ", ".join(f"GPU {index} by {holder}" for index, holder in others.items())
            error = GpuError(
                f"replica {replica_id} claims GPUs another replica holds: "
                f"expected free GPUs, got {owners}"
            )
            raise error
        for index in wanted:
            self._holder[index] = replica_id
        return self.held_by(replica_id)

    def release(self, replica_id: str) -> list[Gpu]:
        """Free every GPU ``replica_id`` holds; the ones freed (empty when it held none).

        Examples
        --------
        >>> allocator = GpuAllocator([Gpu(0, "T4", "GPU-a")])
        >>> _ = allocator.allocate("r1", 1)
        >>> [gpu.index for gpu in allocator.release("r1")], allocator.free_count
        ([0], 1)
        """
        held = self.held_by(replica_id)
        for gpu in held:
            del self._holder[gpu.index]
        return held

    def shortfall_reason(self, count: int, gpu_type: str | None) -> str:
        """Why a replica asking for ``count`` GPUs cannot start: the Pending reason.

        Parameters
        ----------
        count
            GPUs per replica, as the group asks.
        gpu_type
            The group's cloud GPU type, or ``None``; it is named, never matched.

        Examples
        --------
        >>> allocator = GpuAllocator([Gpu(0, "NVIDIA A100-SXM4-40GB", "GPU-a")])
        >>> _ = allocator.allocate("r1", 1)
        >>> allocator.shortfall_reason(2, "t4")
        'asked for 2 GPUs (type t4, noted, not matched locally) per replica; this machine has \
1 (NVIDIA A100-SXM4-40GB), 0 free'
        >>> GpuAllocator([]).shortfall_reason(1, None)
        'asked for 1 GPU per replica; this machine has none (nvidia-smi -L lists no GPU)'
        """
        noted = "" if gpu_type is None else f" (type {gpu_type}, noted, not matched locally)"
        asked = f"asked for {_gpus_text(count)}{noted} per replica"
        if not self._gpus:
            return f"{asked}; this machine has none (nvidia-smi -L lists no GPU)"
        names = Counter(gpu.name for gpu in self._gpus.values())
        kinds = ", ".join(name if n == 1 else f"{n} x {name}" for name, n in names.items())
        return f"{asked}; this machine has {self.total} ({kinds}), {self.free_count} free"


def _gpus_text(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def _index_list(indices: Iterable[int]) -> str:
    return ",".join(str(index) for index in indices) or "none"
