"""How batches are shared across ranks (training/distributed.py), and the strategy overlays each verb reads."""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import StrategyRegistry
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from training.classification.data import LengthGroupedBatchSampler
from training.distributed import (
    EpochBatches,
    RequireShardedBatches,
    fixed_batches,
    shard_batches,
    shard_count,
    single_process,
    unsharded,
)
from training.verbs.distill import distill
from training.verbs.lm import lm
from training.verbs.sentiment import sentiment

OVERLAYS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs" / "distributed").glob("*.yaml"))


def shares(batches: list[list[int]], world: int) -> list[list[list[int]]]:
    return [shard_batches(batches, rank, world) for rank in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n,size", [(256, 16), (250, 16), (33, 8), (17, 32), (5, 1), (7, 2)])
def test_shares_partition_the_examples_in_equally_many_batches(n: int, size: int, world: int) -> None:
    order = list(range(n))
    random.Random(n).shuffle(order)
    batches = fixed_batches(order, size)
    parts = shares(batches, world)
    seen = [i for part in parts for batch in part for i in batch]
    assert {len(part) for part in parts} == {shard_count(len(batches), world)}  # same number of steps everywhere
    assert all(batch for part in parts for batch in part)  # no empty batch
    assert all(len(batch) <= size for part in parts for batch in part)
    if n >= world * shard_count(len(batches), world):  # enough examples for one per batch: an exact partition
        assert sorted(seen) == list(range(n)), "an example was repeated or lost"
    else:  # (batches of one example) DistributedSampler-like padding: nothing lost, fewer than world repeats
        assert set(seen) == set(order) and len(seen) - n < world


def test_one_rank_keeps_the_batches_as_they_are() -> None:
    batches = [[3, 1], [0, 2], [4]]
    assert shard_batches(batches, 0, 1) == batches


def test_too_few_examples_for_the_ranks_repeat_rather_than_leave_a_rank_idle() -> None:
    parts = shares([[7]], 3)
    assert parts == [[[7]], [[7]], [[7]]]


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        shard_batches([[0]], 2, 2)


def test_every_rank_builds_the_same_epoch_and_a_new_one_each_time() -> None:
    lengths = [(i * 7919) % 60 + 1 for i in range(1000)]
    samplers = [LengthGroupedBatchSampler(lengths, 16, window=10, seed=3, rank=r, world=2) for r in range(2)]
    for _ in range(2):  # two epochs
        epoch = [list(s) for s in samplers]
        assert len(epoch[0]) == len(epoch[1]) == len(samplers[0]) == 32
        flat = sorted(i for part in epoch for batch in part for i in batch)
        assert flat == list(range(1000))
    first = list(EpochBatches(lambda e: [[e]], 1))
    assert first == [[0]]


def test_the_single_process_batches_are_unchanged() -> None:
    lengths = [(i * 31) % 40 + 1 for i in range(100)]
    alone = LengthGroupedBatchSampler(lengths, 8, window=5, seed=1)
    assert list(alone) == alone.batches(0) and list(alone) == alone.batches(1)


def test_conversions_record_one_process() -> None:
    assert single_process("why") == {"world_size": 1, "strategy": None, "note": "why"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
@pytest.mark.parametrize("verb", [sentiment, distill, lm], ids=lambda f: f.__name__)
def test_each_strategy_overlay_is_read_by_each_training_verb(overlay: Path, verb: Callable[..., Path]) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(verb)
    recipe = OVERLAYS[0].parents[1] / f"{verb.__name__}-quick.yaml"
    parsed = parser.instantiate_classes(parser.parse_args(["--config", str(recipe), "--config", str(overlay)]))
    trainer = parsed.trainer
    wanted = yaml.safe_load(overlay.read_text())["trainer"]
    assert trainer.strategy == wanted["strategy"] and trainer.accelerator == wanted["accelerator"]
    assert trainer.strategy in StrategyRegistry, f"Lightning has no strategy {trainer.strategy!r}"
    budget = yaml.safe_load(recipe.read_text())["trainer"]  # the recipe's training budget stays
    assert (trainer.max_epochs, trainer.max_steps) == (budget["max_epochs"], budget.get("max_steps", -1))


def test_overlays_cover_ddp_fsdp_and_deepspeed() -> None:
    strategies = {yaml.safe_load(p.read_text())["trainer"]["strategy"] for p in OVERLAYS}
    assert strategies == {"ddp", "fsdp", "deepspeed_stage_2"}
    gpu = [p for p in OVERLAYS if p.stem.endswith("-gpu")]
    assert gpu and all(yaml.safe_load(p.read_text())["trainer"]["precision"] == "bf16-mixed" for p in gpu)


def test_the_slurm_script_parses_and_names_files_that_exist() -> None:
    script = OVERLAYS[0].parents[3] / "deploy" / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "srun" in text and "--trainer.num_nodes" in text and "torchrun" in text
    named = set(re.findall(r"training/configs/[\w/.-]+\.yaml", text))
    assert named and all((OVERLAYS[0].parents[3] / path).is_file() for path in named), named


def test_a_fit_over_processes_refuses_a_loader_that_does_not_shard() -> None:
    data = TensorDataset(torch.arange(8))
    plain = DataLoader(data, batch_size=2, shuffle=True)
    ours = DataLoader(data, batch_sampler=EpochBatches(lambda _: fixed_batches(range(8), 2), 4, 0, 2))
    theirs = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=0), batch_size=2)
    assert unsharded([ours, theirs]) == [] and len(unsharded({"a": plain, "b": ours})) == 1
    guard = RequireShardedBatches()
    guard.on_train_start(SimpleNamespace(world_size=1, train_dataloader=plain), None)  # one process: fine
    guard.on_train_start(SimpleNamespace(world_size=2, train_dataloader=ours), None)
    with pytest.raises(RuntimeError, match="not sharded"):
        guard.on_train_start(SimpleNamespace(world_size=2, train_dataloader=plain), None)


@pytest.mark.parametrize("fails", [False, True])
def test_the_command_line_destroys_the_process_group_a_fit_left(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                fails: bool) -> None:
    """A gloo group alive at interpreter exit can abort a finished rank; `main` destroys it, after errors too."""
    import torch.distributed as dist

    import training.__main__ as entry

    def fit(*_: object, **__: object) -> None:  # stands in for a verb whose Lightning fit left its group behind
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        assert dist.is_initialized()
        if fails:
            raise RuntimeError("the verb failed")

    monkeypatch.setattr(entry, "CLI", fit)
    if fails:
        with pytest.raises(RuntimeError, match="the verb failed"):
            entry.main()
    else:
        entry.main()
    assert not dist.is_initialized()
