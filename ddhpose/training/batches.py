"""Batches for the training loop: this rank's share of every global batch, and evaluation batches.

Thin adapter over :mod:`ddhpose.data.clips` (chunking, flip augmentation and shuffling per
docs/model.md "Training clips"; evaluation clips per "Clip cutting") that adds what the loop needs
for DDP: the size of the global batch and the offset of this rank's clips inside it
(:func:`ddhpose.data.clips.rank_share`).

A rank whose share of a global batch is empty (a last batch smaller than the world size) still
runs one dummy clip (the batch's first) with loss weight 0, so that every rank takes part in every
gradient all-reduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ddhpose.data.clips import EpochPlan, TrainClips, eval_clips, rank_share
from ddhpose.skeleton import Skeleton
from ddhpose.training.validate import EvalBatch


@dataclass(frozen=True)
class LocalBatch:
    """This rank's part of one global batch.

    Attributes:
        x2d: (b, F, J, 2) normalised 2D; x3d: (b, F, J, 3) root-relative metres (root = 0).
        global_clips: clips in the global batch; offset: index of this rank's first clip in it;
        local_clips: clips of this rank that count (0 for a dummy batch, whose b is 1).
    """

    x2d: Tensor
    x3d: Tensor
    global_clips: int
    offset: int
    local_clips: int

    @property
    def rows(self) -> int:
        """Clips actually run through the model (>= 1)."""
        return int(self.x2d.shape[0])


class EpochBatches:
    """A sized iterable over this rank's :class:`LocalBatch` es of one epoch (order kept).

    With ``num_workers`` > 0 the clips are gathered by a torch DataLoader's worker processes.
    """

    def __init__(self, clips: TrainClips, plan: EpochPlan, rank: int, world_size: int,
                 num_workers: int = 0) -> None:
        self.clips, self.plan = clips, plan
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers

    def __len__(self) -> int:
        return len(self.plan)

    def _local_arrays(self) -> Iterator[tuple[Any, Any]]:
        if self.num_workers > 0:
            yield from self.clips.loader(self.plan, self.rank, self.world_size, self.num_workers)
        else:
            for idx in self.plan.rank_batches(self.rank, self.world_size):
                yield self.clips.gather(idx)

    def __iter__(self) -> Iterator[LocalBatch]:
        batches = self.plan.global_batches()
        for batch, (x2d, x3d) in zip(batches, self._local_arrays(), strict=True):
            n = len(batch)
            offset, count = rank_share(n, self.rank, self.world_size)
            if count == 0:
                offset, (x2d, x3d) = 0, self.clips.gather(batch[:1])
            yield LocalBatch(
                x2d=torch.as_tensor(np.asarray(x2d), dtype=torch.float32),
                x3d=torch.as_tensor(np.asarray(x3d), dtype=torch.float32),
                global_clips=n, offset=offset, local_clips=count,
            )


def _plain(value: Any) -> Any:
    """NumPy arrays/scalars inside a RandomState state dict -> plain Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"uint32_array": [int(v) for v in value.astype(np.uint32)]}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _numpy(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"uint32_array"}:
            return np.asarray(value["uint32_array"], dtype=np.uint32)
        return {k: _numpy(v) for k, v in value.items()}
    return value


class TrainBatches:
    """Training clips of a split (:class:`ddhpose.data.clips.TrainClips`); one shuffle per epoch."""

    def __init__(self, split: Any, skel: Skeleton, *, frames: int, batch_clips: int, flip: bool,
                 shuffle_seed: int, num_workers: int = 0) -> None:
        self.clips = TrainClips(split, skel, frames=frames, augment=flip,
                                shuffle_seed=shuffle_seed)
        self.batch_clips, self.num_workers = batch_clips, num_workers

    def epoch(self, rank: int, world_size: int) -> EpochBatches:
        """Shuffle (advancing the shuffler) and return this epoch's batches for ``rank``."""
        return EpochBatches(self.clips, self.clips.plan(self.batch_clips), rank, world_size,
                            self.num_workers)

    def shuffler_state(self) -> dict[str, Any]:
        """The shuffler's state as plain values (storable in a weights-only checkpoint)."""
        return _plain(self.clips.get_state())

    def set_shuffler_state(self, state: dict[str, Any]) -> None:
        self.clips.set_state(_numpy(state))


def eval_batches(split: Any, skel: Skeleton, frames: int, batch_clips: int) -> list[EvalBatch]:
    """Evaluation clips of every sequence of ``split`` (docs/model.md "Clip cutting"),
    ``batch_clips`` per batch."""
    out: list[EvalBatch] = []
    for seq in eval_clips(split, skel, frames=frames):
        n = seq.x2d.shape[0]
        for lo in range(0, n, batch_clips):
            sl = slice(lo, lo + batch_clips)
            out.append(EvalBatch(
                x2d=torch.as_tensor(seq.x2d[sl], dtype=torch.float32),
                x2d_flip=torch.as_tensor(seq.x2d_flip[sl], dtype=torch.float32),
                x3d=torch.as_tensor(seq.x3d[sl], dtype=torch.float32),
                valid=torch.as_tensor(seq.valid[sl], dtype=torch.bool),
            ))
    return out
