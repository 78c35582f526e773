"""The KV caches of sequences decoded together: ragged lengths, left-padded to one, masked per row.

Rows join (after their own prefill) and leave between steps. Each row keeps its own positions, so padding never
shifts them; the mask hides padding from attention. The tensors are numpy arrays here (ONNX Runtime); the torch
backend subclasses the two array operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class KVCache:
    """``past``: per layer key and value ``[rows, kv_heads, length, head_dim]``; ``mask`` ``[rows, length]``
    (0 = padding); ``positions`` ``[rows]``: the position of each row's next token."""

    def __init__(self, past: list[Any], mask: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> None:
        self.past = past
        self.mask = mask
        self.positions = positions

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def step_inputs(self, width: int = 1) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Attention mask ``[rows, length + width]`` and position ids ``[rows, width]`` of the next call."""
        mask = np.concatenate([self.mask, np.ones((len(self), width), np.int64)], axis=1)
        positions = self.positions[:, None] + np.arange(width, dtype=np.int64)
        return mask, positions

    def advance(self, present: list[Any], mask: npt.NDArray[np.int64], width: int = 1) -> None:
        """Take the model's present tensors after a call that appended ``width`` tokens to every row."""
        self.past, self.mask = present, mask
        self.positions = self.positions + width

    def join(self, other: KVCache) -> None:
        """Append ``other``'s rows after this cache's rows; the shorter side is padded on the left."""
        width = max(self.length, other.length)
        self.past = [self._cat([self._pad(mine, width), self._pad(theirs, width)])
                     for mine, theirs in zip(self.past, other.past, strict=True)]
        self.mask = np.concatenate([_pad_mask(self.mask, width), _pad_mask(other.mask, width)])
        self.positions = np.concatenate([self.positions, other.positions])

    def keep(self, rows: list[int]) -> None:
        """Only ``rows``, in that order; leading columns that are padding in every kept row are cut."""
        mask = self.mask[rows]
        start = int(mask.any(axis=0).argmax()) if len(rows) else 0
        self.past = [self._contiguous(tensor[rows][:, :, start:]) for tensor in self.past]
        self.mask = np.ascontiguousarray(mask[:, start:])
        self.positions = self.positions[rows]

    def _pad(self, tensor: Any, width: int) -> Any:
        missing = width - int(tensor.shape[2])
        if missing == 0:
            return tensor
        shape = (tensor.shape[0], tensor.shape[1], missing, tensor.shape[3])
        return self._cat([self._zeros(tensor, shape), tensor], axis=2)

    @staticmethod
    def _cat(tensors: list[Any], axis: int = 0) -> Any:
        return np.concatenate(tensors, axis=axis)

    @staticmethod
    def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
        return np.zeros(shape, like.dtype)

    @staticmethod
    def _contiguous(tensor: Any) -> Any:
        return np.ascontiguousarray(tensor)


def _pad_mask(mask: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int64]:
    return np.pad(mask, ((0, 0), (width - mask.shape[1], 0)))
