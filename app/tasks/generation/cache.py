"""The KV caches of sequences decoded together: ragged lengths, left-padded to one, masked per row.

Prompts that arrive together are prefilled in one call (`left_pad`); their rows join the running ones and leave
between steps. Each row keeps its own positions, so padding never shifts them; the mask hides padding from
attention. The tensors are numpy arrays here (ONNX Runtime); the torch backend subclasses the array operations.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def step_inputs(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Attention mask ``[rows, length + 1]`` and position ids ``[rows, 1]`` of the next decoding step."""
        mask = np.concatenate([self.mask, np.ones((len(self), 1), np.int64)], axis=1)
        return mask, self.positions[:, None]

    def advance(self, present: list[Any], mask: npt.NDArray[np.int64]) -> None:
        """Take the model's present tensors after a step that appended one token to every row."""
        self.past, self.mask = present, mask
        self.positions = self.positions + 1

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


def left_pad(prompts: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                         npt.NDArray[np.int64]]:
    """Prompts of different lengths as one prefill call, padded on the left to the longest: input ids, attention
    mask (0 = padding) and position ids (each row counts from 0 at its first token; 0 on padding), all
    ``[rows, longest]``. The cache after that call has this mask and the prompt lengths as its positions."""
    width = max(len(prompt) for prompt in prompts)
    ids = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    return ids, mask, np.maximum(mask.cumsum(axis=1) - 1, 0)


def _pad_mask(mask: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int64]:
    return np.pad(mask, ((0, 0), (width - mask.shape[1], 0)))
