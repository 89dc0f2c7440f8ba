"""GPU listing through a fake ``nvidia-smi`` on the search path, and the count-based allocator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from chalk.deploy.local.gpus import (
    Gpu,
    GpuAllocator,
    GpuError,
    cuda_visible_devices,
    gpu_environment,
    list_gpus,
    parse_cuda_visible_devices,
)

A100 = "NVIDIA A100-SXM4-40GB"
T4 = "Tesla T4"


def gpu(index: int, name: str = A100) -> Gpu:
    return Gpu(index, name, f"GPU-{index:08x}-5f1c-4d3e-9a2b-000000000000")


def listing_line(card: Gpu) -> str:
    return f"GPU {card.index}: {card.name} (UUID: {card.uuid})"


def fake_nvidia_smi(directory: Path, script: str) -> Path:
    """An executable ``nvidia-smi`` in ``directory`` that runs ``script`` (sh) on ``-L``."""
    directory.mkdir(parents=True, exist_ok=True)
    executable = directory / "nvidia-smi"
    executable.write_text(
        f'#!/bin/sh\nif [ "$1" != "-L" ]; then echo "unexpected: $*" >&2; exit 2; fi\n{script}\n'
    )
    executable.chmod(0o755)
    return executable


def printing(lines: list[str]) -> str:
    return "".join(f"echo '{line}'\n" for line in lines)


@pytest.mark.parametrize(
    "cards",
    [
        pytest.param([], id="zero_gpus"),
        pytest.param([gpu(0)], id="one_gpu"),
        pytest.param([gpu(0), gpu(1), gpu(2, T4), gpu(3, T4)], id="four_gpus"),
    ],
)
def test_list_gpus_reads_every_listed_gpu(tmp_path: Path, cards: list[Gpu]) -> None:
    fake_nvidia_smi(tmp_path / "bin", printing([listing_line(card) for card in cards]))

    assert list_gpus(path=str(tmp_path / "bin")) == cards


def test_list_gpus_finds_nvidia_smi_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvidia_smi(tmp_path / "bin", printing([listing_line(gpu(0)), listing_line(gpu(1))]))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    assert list_gpus() == [gpu(0), gpu(1)]
    assert GpuAllocator.detect().total == 2


def test_list_gpus_sorts_by_index_and_keeps_the_first_of_a_repeated_index(
    tmp_path: Path,
) -> None:
    lines = [listing_line(gpu(2)), listing_line(gpu(0)), listing_line(gpu(2, T4))]
    fake_nvidia_smi(tmp_path / "bin", printing(lines))

    assert list_gpus(path=str(tmp_path / "bin")) == [gpu(0), gpu(2)]


def test_list_gpus_skips_lines_it_cannot_read(tmp_path: Path) -> None:
    lines = [
        "No devices were found",
        listing_line(gpu(0)),
        "  MIG 3g.20gb     Device  0: (UUID: MIG-0a1b2c3d-0000-0000-0000-000000000000)",
        "",
        "GPU x: Broken Card (UUID: GPU-1)",
        "GPU 1: Card Without Uuid",
        "GPU 2: (UUID: GPU-2)",
        listing_line(gpu(3, "NVIDIA GeForce RTX 3090 (rev a1)")),
    ]
    fake_nvidia_smi(tmp_path / "bin", printing(lines))

    assert list_gpus(path=str(tmp_path / "bin")) == [
        gpu(0),
        gpu(3, "NVIDIA GeForce RTX 3090 (rev a1)"),
    ]


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param("missing", id="no_nvidia_smi"),
        pytest.param("exit_9", id="exits_9"),
        pytest.param("not_executable", id="not_executable"),
        pytest.param("bad_interpreter", id="cannot_start"),
    ],
)
def test_list_gpus_finds_none_when_nvidia_smi_cannot_tell(tmp_path: Path, setup: str) -> None:
    directory = tmp_path / "bin"
    directory.mkdir()
    card_line = printing([listing_line(gpu(0))])
    if setup == "exit_9":
        fake_nvidia_smi(directory, f"{card_line}exit 9")
    elif setup == "not_executable":
        fake_nvidia_smi(directory, card_line).chmod(0o644)
    elif setup == "bad_interpreter":
        executable = fake_nvidia_smi(directory, card_line)
        executable.write_text(f"#!{tmp_path / 'no-such-shell'}\n{card_line}")

    assert list_gpus(path=str(directory)) == []


def test_list_gpus_gives_up_on_a_slow_nvidia_smi(tmp_path: Path) -> None:
    # exec, so the timeout kills the sleeper itself and leaves no orphan behind.
    slow = f"import time; time.sleep(30); print({listing_line(gpu(0))!r})"
    fake_nvidia_smi(tmp_path / "bin", f'exec "{sys.executable}" -c "{slow}"')

    assert list_gpus(path=str(tmp_path / "bin"), timeout_s=0.5) == []


def four_gpus() -> GpuAllocator:
    return GpuAllocator([gpu(0), gpu(1), gpu(2, T4), gpu(3, T4)])


def test_allocate_hands_out_the_lowest_free_indices_and_release_frees_them() -> None:
    allocator = four_gpus()

    first = allocator.allocate("r1", 2)
    second = allocator.allocate("r2", 1)

    assert first == [gpu(0), gpu(1)]
    assert second == [gpu(2, T4)]
    assert allocator.held_by("r1") == first
    assert allocator.free_count == 1

    assert allocator.release("r1") == first
    assert allocator.held_by("r1") == []
    assert allocator.free_count == 3
    assert allocator.allocate("r3", 3) == [gpu(0), gpu(1), gpu(3, T4)]


def test_allocate_without_enough_free_gpus_allocates_nothing() -> None:
    allocator = four_gpus()
    assert allocator.allocate("r1", 3) is not None

    assert allocator.allocate("r2", 2) is None
    assert allocator.held_by("r2") == []
    assert allocator.held_by("r1") == [gpu(0), gpu(1), gpu(2, T4)]
    assert allocator.free_count == 1


def test_allocate_more_than_the_machine_has_returns_none() -> None:
    assert GpuAllocator([gpu(0)]).allocate("r1", 2) is None
    assert GpuAllocator([]).allocate("r1", 1) is None


def test_allocate_zero_gpus_holds_none() -> None:
    allocator = four_gpus()

    assert allocator.allocate("r1", 0) == []
    assert allocator.free_count == 4


def test_allocate_again_with_the_same_count_returns_the_same_gpus() -> None:
    allocator = four_gpus()
    first = allocator.allocate("r1", 2)

    assert allocator.allocate("r1", 2) == first
    assert allocator.free_count == 2


@pytest.mark.parametrize(
    ("held", "count", "match"),
    [
        pytest.param(
            0, -1, r"impossible number of GPUs: expected a whole number >= 0, got -1", id="negative"
        ),
        pytest.param(0, True, r"got True", id="bool"),
        pytest.param(
            2,
            1,
            r"replica r1 already holds GPUs 0,1: expected 2 .* got 1; release",
            id="different_count",
        ),
    ],
)
def test_allocate_refuses_a_count_it_cannot_honour(held: int, count: int, match: str) -> None:
    allocator = four_gpus()
    allocator.allocate("r1", held)

    with pytest.raises(GpuError, match=match):
        allocator.allocate("r1", count)
    assert allocator.free_count == 4 - held


def test_release_of_a_replica_holding_nothing_frees_nothing() -> None:
    allocator = four_gpus()
    allocator.allocate("r1", 1)

    assert allocator.release("r2") == []
    assert allocator.free_count == 3


def test_claim_records_an_adopted_replicas_gpus() -> None:
    allocator = four_gpus()

    assert allocator.claim("adopted", [2, 0]) == [gpu(0), gpu(2, T4)]
    assert allocator.allocate("new", 2) == [gpu(1), gpu(3, T4)]
    assert allocator.free_count == 0


def test_claim_of_gpus_the_replica_already_holds_changes_nothing() -> None:
    allocator = four_gpus()
    allocator.claim("adopted", [1])

    assert allocator.claim("adopted", [1]) == [gpu(1)]
    assert allocator.free_count == 3


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        pytest.param([1, 7], r"does not have: expected indices among 0,1,2,3, got 7", id="unknown"),
        pytest.param(
            [0, 3],
            r"another replica holds: expected free GPUs, got GPU 0 by r1",
            id="held_by_another",
        ),
    ],
)
def test_claim_refuses_gpus_it_cannot_give_and_records_nothing(
    indices: list[int], match: str
) -> None:
    allocator = four_gpus()
    allocator.allocate("r1", 1)

    with pytest.raises(GpuError, match=match):
        allocator.claim("adopted", indices)
    assert allocator.held_by("adopted") == []
    assert allocator.free_count == 3


def test_a_restarted_controller_claims_back_what_the_environment_says() -> None:
    before = four_gpus()
    before.allocate("r1", 1)
    given = before.allocate("r2", 2)
    assert given is not None
    environment = gpu_environment(given)

    after = four_gpus()
    after.claim("r2", parse_cuda_visible_devices(environment["CUDA_VISIBLE_DEVICES"]))

    assert after.held_by("r2") == given
    assert environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


@pytest.mark.parametrize(
    ("cards", "held", "count", "gpu_type", "expected"),
    [
        pytest.param(
            [gpu(0)],
            1,
            2,
            "t4",
            "asked for 2 GPUs (type t4, noted, not matched locally) per replica; "
            "this machine has 1 (NVIDIA A100-SXM4-40GB), 0 free",
            id="typed_more_than_the_machine_has",
        ),
        pytest.param(
            [gpu(0), gpu(1), gpu(2, T4), gpu(3, T4)],
            3,
            2,
            None,
            "asked for 2 GPUs per replica; "
            "this machine has 4 (2 x NVIDIA A100-SXM4-40GB, 2 x Tesla T4), 1 free",
            id="untyped_others_hold_them",
        ),
        pytest.param(
            [gpu(0), gpu(1, T4)],
            0,
            3,
            "nvidia-tesla-t4",
            "asked for 3 GPUs (type nvidia-tesla-t4, noted, not matched locally) per replica; "
            "this machine has 2 (NVIDIA A100-SXM4-40GB, Tesla T4), 2 free",
            id="mixed_names",
        ),
        pytest.param(
            [],
            0,
            1,
            None,
            "asked for 1 GPU per replica; this machine has none (nvidia-smi -L lists no GPU)",
            id="no_gpus",
        ),
    ],
)
def test_shortfall_reason_says_what_was_asked_and_what_exists(
    cards: list[Gpu], held: int, count: int, gpu_type: str | None, expected: str
) -> None:
    allocator = GpuAllocator(cards)
    allocator.allocate("other", held)

    assert allocator.shortfall_reason(count, gpu_type) == expected


def test_the_allocator_refuses_two_gpus_with_one_index() -> None:
    with pytest.raises(GpuError, match=r"GPU index 1 is listed twice: expected one GPU per index"):
        GpuAllocator([gpu(1), gpu(1, T4)])


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        pytest.param([], "", id="none"),
        pytest.param([gpu(3)], "3", id="one"),
        pytest.param([gpu(2), gpu(0)], "0,2", id="sorted"),
    ],
)
def test_cuda_visible_devices_names_gpus_by_index(cards: list[Gpu], expected: str) -> None:
    assert cuda_visible_devices(cards) == expected
    assert parse_cuda_visible_devices(expected) == sorted(card.index for card in cards)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("GPU-5f1c2d3e", id="uuid"),
        pytest.param("0,,1", id="empty_entry"),
        pytest.param("-1", id="negative"),
    ],
)
def test_parse_cuda_visible_devices_refuses_what_it_never_writes(value: str) -> None:
    with pytest.raises(GpuError, match=r"expected indices such as '0,2', got"):
        parse_cuda_visible_devices(value)
