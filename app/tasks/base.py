"""The contract of a task, in the spirit of LitServe's LitAPI: a `Task` names what is computed, which admission
loop serves it and how its `Model` is made on a runtime; a `Model` loads (setup), warms up and computes.

Adding a task = a folder under `app/tasks/` with a `TASK` and one line in `app/tasks/__init__.py`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from app.runtimes import Runtime
from contract import Artifact

Loop = Literal["batch", "stream"]
"""How requests reach the model: ``batch``, texts of concurrent requests share model calls (`Batcher`);
``stream``, generations decoded together step by step (`Scheduler`)."""
Capability = Literal["attention"]


class Model(ABC):
    """A model of one artifact on one runtime; HTTP never reaches below this interface."""

    capabilities: ClassVar[tuple[Capability, ...]] = ()

    def __init__(self, artifact: Artifact, runtime: Runtime) -> None:
        self.artifact = artifact
        self.runtime = runtime

    @abstractmethod
    def load(self) -> None:
        """Read the artifact's weights and tokenizer (start-up or reload only)."""

    @abstractmethod
    def warmup(self) -> None:
        """Run the model once so that the first request pays no one-off costs."""

    @property
    def info(self) -> dict[str, Any]:
        return {**self.runtime.info, **self._info()}

    def _info(self) -> dict[str, Any]:
        return {}

    def variants(self) -> list[str]:
        """Names of the artifact's other graphs this model can serve (ONNX variants such as int8)."""
        return []

    def with_variant(self, variant: str) -> Model:
        """This model on its ``variant`` graph, sharing what it can with this one."""
        raise ValueError(f"{self.artifact.name} has no {variant!r} variant on the {self.runtime.name} runtime")


class BatchModel(Model):
    """A model of a ``batch`` task: one call computes one result per row, in order. A row is a text, or what
    the task makes of texts before they are batched (a classifier's windows of token ids)."""

    call_overhead: int = 64
    """The fixed cost of one call in units of a row's ``len()``; the batcher cuts rounds into calls of least padded
    work. A guess until `measure_call_overhead` (at warm-up) times it: it differs by runtime and dtype (SST-2
    sentences on MiniLM-L6: about 16 tokens on ONNX Runtime fp32, over 100 on torch bf16)."""

    def measure_call_overhead(self, row: Any, size: int = 16, repeats: int = 3,
                              clock: Callable[[], float] = time.perf_counter) -> int:
        """Sets `call_overhead` from timed calls of one ``row`` and of ``size`` copies of it (the fastest of
        ``repeats`` each): a call's time less ``size`` rows' time, in units of ``len(row)``, within 1..4096."""
        def fastest(rows: list[Any]) -> float:
            times = []
            for _ in range(repeats):
                began = clock()
                self.predict(rows)
                times.append(clock() - began)
            return min(times)

        one, many = fastest([row]), fastest([row] * size)
        per_row = max((many - one) / (size - 1), 1e-9)
        self.call_overhead = max(1, min(round(max(one - per_row, 0.0) / per_row * len(row)), 4096))
        return self.call_overhead

    @abstractmethod
    def predict(self, rows: Sequence[Any]) -> list[Any]: ...


@dataclass(frozen=True)
class Task:
    """What a task is to the service: its name in manifests, its admission loop, how its model is made."""

    name: str
    loop: Loop
    create: Callable[[Artifact, Runtime], Model]
    """A not yet loaded model of ``artifact`` on ``runtime``."""
