"""What every runtime is: where models run (device), with how many CPU threads, in which dtype, and over which
memory allocator the process runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

RuntimeName = Literal["onnx", "torch"]
Dtype = Literal["fp32", "bf16", "fp16"]


class DeviceError(RuntimeError):
    """The requested device or dtype cannot be honoured: the service must not start."""


class Runtime(ABC):
    """Where and how models run: device, CPU threads per inference, dtype."""

    name: ClassVar[RuntimeName]

    def __init__(self, device: str, threads: int, dtype: str = "fp32") -> None:
        self.device = device
        self.threads = threads
        self.dtype = dtype
        self.allocator = allocator()
        """The process's malloc: fixed when the process starts (``LD_PRELOAD``), so read once."""

    @classmethod
    @abstractmethod
    def cuda_available(cls) -> bool:
        """Whether this runtime can run on a CUDA device here."""

    @classmethod
    def dtypes(cls, device: str) -> tuple[Dtype, ...]:
        """The dtypes this runtime runs in on ``device`` here."""
        return ("fp32",)

    @classmethod
    def resolve_device(cls, requested: str, dtype: str) -> str:
        """``auto`` -> cuda when available; an explicit but unavailable cuda (or dtype) is a `DeviceError`."""
        cuda = cls.cuda_available()
        if requested == "cuda" and not cuda:
            raise DeviceError(f"device 'cuda' requested but the {cls.name} runtime has no CUDA device here")
        device = "cuda" if requested == "cuda" or (requested == "auto" and cuda) else "cpu"
        if dtype not in cls.dtypes(device):
            raise DeviceError(f"dtype {dtype!r} cannot run on the {cls.name} runtime on {device} here (it runs "
                              f"{', '.join(cls.dtypes(device))}): bf16 needs the torch runtime on cuda or on a CPU "
                              "with avx512_bf16 or AMX, fp16 the torch runtime on cuda")
        return device

    @property
    def info(self) -> dict[str, Any]:
        """What /v1/models reports about where a model runs."""
        return {"backend": self.name, "device": self.device, "threads": self.threads, "allocator": self.allocator,
                **self._info()}

    @abstractmethod
    def _info(self) -> dict[str, Any]: ...


PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def allocator(maps: Path = Path("/proc/self/maps")) -> str:
    """The malloc this process runs on: a preloaded one (``LD_PRELOAD``, as ``make run`` and the image set it) by
    the library mapped into the process, else ``system`` (glibc's, which keeps the freed memory of the tensors of
    every batch shape seen: benchmarks/README.md, "Memory under varied batch shapes")."""
    try:
        mapped = maps.read_text()
    except OSError:
        return "system"
    return next((name for name in PRELOADED_ALLOCATORS if f"/lib{name}" in mapped), "system")
