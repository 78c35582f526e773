"""Training across processes: which rank this process is, how each rank's batches are chosen, what a manifest
records about it.

Lightning's own distributed sampler is switched off (``use_distributed_sampler=False`` in `training.trainer`):
every datamodule shards its batches here instead, so that the length-grouped batches of the classifiers and the
packed blocks of the language model are split the same way under ddp, fsdp and deepspeed, launched by Lightning,
torchrun or SLURM. The rule (`shard_batches`): every rank builds the same global list of batches (same seed, same
epoch), then takes every world-th batch; when the count does not divide, the largest batches are halved until it
does. The ranks' examples are then an exact partition of the split (none repeated, none lost) and every rank
runs the same number of steps, which DDP's gradient all-reduce needs.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler

log = logging.getLogger(__name__)


def rank_and_world(trainer: Any) -> tuple[int, int]:
    """(global rank, world size) of the trainer a datamodule is attached to; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def launch_rank() -> int:
    """This process's rank as its launcher set it, before any process group exists: RANK (torchrun), then
    LOCAL_RANK/NODE_RANK (the processes Lightning starts itself; unique, not the global rank, off node 0),
    then SLURM_PROCID (srun); 0 for a single process and for the process that launches the others."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if "LOCAL_RANK" in os.environ:
        return int(os.environ.get("NODE_RANK", "0")) * 1000 + int(os.environ["LOCAL_RANK"])
    return int(os.environ.get("SLURM_PROCID", "0"))


def release_process_group() -> None:
    """Destroy this process's process group, if a fit left one: Lightning does not, and a gloo group still alive
    when the interpreter finalises can abort the process ("terminate called without an active exception") after
    its work is done. Local (no collective): a rank that finished may release while rank 0 still exports."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def written_by_rank_zero(folder: Path, write: Callable[[Path], None], timeout_s: float = 900) -> Path:
    """``folder``, written once by rank 0 unless it exists already (``write`` fills a temporary folder that is then
    renamed into place), so that every rank reads the same files and no rank reads a half-written one. The
    other ranks wait for it: across nodes the run folder must be shared, as it must be for resuming."""
    if launch_rank() == 0:
        if not folder.exists():
            tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            write(tmp)
            tmp.rename(folder)
        return folder
    deadline = time.monotonic() + timeout_s
    while not folder.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {launch_rank()} waited {timeout_s:.0f} s for rank 0 to write {folder} "
                               "(is the run folder shared between the nodes?)")
        time.sleep(0.2)
    return folder


def shard_batches(batches: Sequence[Sequence[int]], rank: int, world: int) -> list[list[int]]:
    """Rank ``rank``'s share of ``batches`` (the same list on every rank): batches rank, rank + world, ...

    When len(batches) is not a multiple of ``world``, the largest batches are split in two (order kept) until it
    is, so the shares partition the examples and are equally long. Only when there are fewer examples than
    ranks can that fail: then batches are repeated from the start (at most world - 1 of them), as
    DistributedSampler pads.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    out = [list(batch) for batch in batches if len(batch)]
    if world == 1 or not out:
        return out
    while len(out) % world:
        largest = max(range(len(out)), key=lambda i: len(out[i]), default=-1)
        if largest < 0 or len(out[largest]) < 2:
            break
        batch = out.pop(largest)
        half = len(batch) // 2
        out[largest:largest] = [batch[:half], batch[half:]]
    padding = (-len(out)) % world
    out += [list(out[i % len(out)]) for i in range(padding)]
    return out[rank::world]


def shard_count(batches: int, world: int) -> int:
    """How many batches `shard_batches` gives each rank out of ``batches`` (non-empty) batches."""
    return math.ceil(batches / world)


class EpochBatches(Sampler[list[int]]):
    """This rank's batches of an epoch: ``make(epoch)`` builds the global batches, `shard_batches` picks.

    The epoch advances by one per iteration; every rank iterates its loader equally often, so every rank builds
    the same global list.
    """

    def __init__(self, make: Callable[[int], list[list[int]]], count: int, rank: int = 0, world: int = 1) -> None:
        self.make, self.count, self.rank, self.world = make, count, rank, world
        self.epoch = 0

    def __len__(self) -> int:
        return shard_count(self.count, self.world)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        yield from shard_batches(self.make(epoch), self.rank, self.world)


def unsharded(loaders: Any) -> list[str]:
    """The training loaders (one, or a list/dict of them) that would give every rank all the data: neither an
    `EpochBatches` batch sampler nor a DistributedSampler."""
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    elif not isinstance(loaders, list | tuple):
        loaders = [loaders]
    sharded = [isinstance(getattr(loader, "batch_sampler", None), EpochBatches)
               or isinstance(getattr(loader, "sampler", None), DistributedSampler) for loader in loaders]
    return [repr(loader) for loader, ok in zip(loaders, sharded, strict=True) if not ok]


class RequireShardedBatches(Callback):
    """Stops a fit on more than one process whose training loader does not shard its batches: Lightning's own
    distributed sampler is off (`training.trainer.make_trainer`), so such a loader would silently train every rank
    on all the data. A new datamodule shards with `EpochBatches` (or a DistributedSampler of its own)."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if int(trainer.world_size) > 1 and (found := unsharded(trainer.train_dataloader)):
            raise RuntimeError(f"training loaders not sharded across the {trainer.world_size} processes: {found} "
                               "(use training.distributed.EpochBatches or a DistributedSampler)")


def fixed_batches(indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` cut into batches of ``size`` (the last one shorter)."""
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def distributed_facts(trainer: Any, requested_strategy: str) -> dict[str, Any]:
    """What a manifest's ``training.distributed`` records: world size, strategy (as asked and as resolved),
    nodes, devices per node, accelerator, precision and the process-group backend."""
    strategy = trainer.strategy
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    return {
        "world_size": int(trainer.world_size),
        "strategy": requested_strategy,
        "strategy_class": type(strategy).__name__,
        "num_nodes": int(trainer.num_nodes),
        "devices_per_node": int(trainer.num_devices),
        "accelerator": accelerator,
        "precision": str(trainer.precision),
        "process_group_backend": getattr(strategy, "process_group_backend", None)
        or getattr(strategy, "_process_group_backend", None),
    }


def single_process(reason: str) -> dict[str, Any]:
    """``training.distributed`` of an artifact no distributed fit produced (a conversion, an export)."""
    return {"world_size": 1, "strategy": None, "note": reason}
