"""Training and evaluation clips of a processed split.

Training (docs/model.md "Training clips", the reference ``ChunkedGenerator_Seq``): a sequence of N
frames gives n = ceil(N / F) chunks ``[i·F − o, (i+1)·F − o)``, o = (n·F − N) // 2; frames outside
``[0, N)`` are edge-padded (first / last frame repeated). The pair list holds, sequence by sequence,
every chunk unflipped and then (``augment``) every chunk flipped. Each epoch permutes the pair list
with one ``np.random.RandomState(seed)`` whose state persists across epochs
(:meth:`TrainClips.get_state` / :meth:`TrainClips.set_state` for an exact resume); batches are
consecutive slices of ``batch_clips`` pairs, the last one smaller. Flip = negate x of 2D and 3D and
swap left/right.

DDP: ``batch_clips`` is the GLOBAL batch. Rank r of W takes the contiguous share
:func:`rank_share` of every global batch of n clips — ``n // W`` clips, one more for the first
``n % W`` ranks — so W ranks with ``b`` clips each together see exactly the single-process batch
of ``W·b`` clips, in order (a last batch smaller than W leaves some ranks an empty share).

Evaluation (docs/model.md "Clip cutting"): per sequence, non-overlapping F-frame clips plus one
final clip of the last F frames (overlapping the previous one unless F divides N); a sequence
shorter than F is right-padded with its last frame. :meth:`EvalClips.write_back` puts per-clip
values back on the frames (later clips overwrite the overlap).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ddhpose.skeleton import Skeleton, flip_joints

DEFAULT_SHUFFLE_SEED = 1234


def rank_share(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """(offset, count) of ``rank``'s contiguous share of a global batch of ``n`` clips."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(n, world_size)
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


def chunk_starts(n_frames: int, frames: int) -> np.ndarray:
    """Training chunk starts of one sequence (may be < 0): ``i·F − (n·F − N)//2``. (n,) int64."""
    if n_frames < 1 or frames < 1:
        raise ValueError(f"need n_frames >= 1 and frames >= 1, got {n_frames}, {frames}")
    n = -(-n_frames // frames)
    return np.arange(n, dtype=np.int64) * frames - (n * frames - n_frames) // 2


def _flip_rows(x: np.ndarray, rows: np.ndarray, skel: Skeleton) -> None:
    """Flip (negate x, swap left/right) the clips ``rows`` of (b, F, J, C) in place."""
    if rows.any():
        x[rows] = flip_joints(x[rows], skel)


@dataclass(frozen=True)
class EpochPlan:
    """The pair order of one epoch and its batches.

    Attributes:
        order: (P,) pair indices in epoch order. batch_clips: global batch size.
    """

    order: np.ndarray
    batch_clips: int

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_clips)

    def global_batches(self) -> list[np.ndarray]:
        """Pair indices of every global batch (consecutive slices; the last may be smaller)."""
        b = self.batch_clips
        return [self.order[i : i + b] for i in range(0, len(self.order), b)]

    def rank_batches(self, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
        """``rank``'s contiguous share (:func:`rank_share`) of every global batch."""
        out = []
        for batch in self.global_batches():
            offset, count = rank_share(len(batch), rank, world_size)
            out.append(batch[offset : offset + count])
        return out


class TrainClips(Dataset):
    """Training clips of a processed split as a map-style dataset over the pair list.

    ``dataset[i]`` -> (x2d (F, J, 2), x3d (F, J, 3)) float32 tensors of pair i (x3d root-relative,
    root 0); ``dataset.__getitems__(indices)`` gathers a whole batch with one fancy index ->
    ((b, F, J, 2), (b, F, J, 3)). Use :meth:`plan` once per epoch, then :meth:`loader` or
    :meth:`gather`.
    """

    def __init__(
        self,
        split: Any,
        skel: Skeleton | None = None,
        *,
        frames: int,
        augment: bool = True,
        shuffle: bool = True,
        shuffle_seed: int = DEFAULT_SHUFFLE_SEED,
    ) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.skel = split.skeleton if skel is None else skel
        self.frames, self.augment, self.shuffle = frames, augment, shuffle
        self.pose_2d, self.pose_3d = split.pose_2d, split.pose_3d
        lengths = np.asarray(split.seq_length, dtype=np.int64)
        n_chunks = -(-lengths // frames)
        chunk_seq = np.repeat(np.arange(len(lengths)), n_chunks)
        first = np.cumsum(n_chunks) - n_chunks
        k = np.arange(int(n_chunks.sum())) - first[chunk_seq]
        offset = (n_chunks * frames - lengths) // 2
        #: (C,) local start frame of every chunk (may be < 0) and its sequence.
        self.chunk_start = k * frames - offset[chunk_seq]
        self.chunk_seq = chunk_seq
        local = np.clip(self.chunk_start[:, None] + np.arange(frames), 0,
                        (lengths[chunk_seq] - 1)[:, None])
        #: (C, F) global frame index of every chunk position (edge padding by clipping).
        self.chunk_index = local + np.asarray(split.seq_start, dtype=np.int64)[chunk_seq, None]
        c = np.arange(len(chunk_seq))
        cc = np.concatenate([c, c]) if augment else c
        ff = np.repeat([0, 1] if augment else [0], len(c))
        order = np.lexsort((cc, ff, chunk_seq[cc]))  # by sequence, then unflipped/flipped, chunk
        self.pair_chunk, self.pair_flip = cc[order], ff[order].astype(bool)
        self._rng = np.random.RandomState(shuffle_seed)

    def __len__(self) -> int:
        return len(self.pair_chunk)

    @property
    def pairs(self) -> np.ndarray:
        """(P, 4) int64 reference-style pairs: sequence, start, end (local frames), flip."""
        ch = self.pair_chunk
        start = self.chunk_start[ch]
        return np.stack([self.chunk_seq[ch], start, start + self.frames,
                         self.pair_flip.astype(np.int64)], axis=1)

    # --- shuffling --------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The shuffler's RandomState state (a dict; store it in checkpoints)."""
        return self._rng.get_state(legacy=False)

    def set_state(self, state: dict[str, Any] | tuple) -> None:
        """Restore a state from :meth:`get_state` (or the reference's legacy tuple)."""
        self._rng.set_state(state)

    def epoch_order(self) -> np.ndarray:
        """Draw this epoch's pair order (advances the shuffler when shuffling). (P,) int64."""
        if self.shuffle:
            return self._rng.permutation(len(self))
        return np.arange(len(self))

    def plan(self, batch_clips: int) -> EpochPlan:
        """Draw the next epoch's order and return its batches of ``batch_clips`` pairs."""
        if batch_clips < 1:
            raise ValueError(f"batch_clips must be >= 1, got {batch_clips}")
        return EpochPlan(self.epoch_order(), batch_clips)

    # --- gathering --------------------------------------------------------------------------------

    def gather(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``indices`` (b,) -> x2d (b, F, J, 2), x3d (b, F, J, 3) float32 NumPy arrays."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        frames = self.chunk_index[self.pair_chunk[idx]]
        x2d = np.asarray(self.pose_2d[frames], dtype=np.float32)
        x3d = np.asarray(self.pose_3d[frames], dtype=np.float32)
        flip = self.pair_flip[idx]
        _flip_rows(x2d, flip, self.skel)
        _flip_rows(x3d, flip, self.skel)
        x3d[..., self.skel.root, :] = 0.0
        return x2d, x3d

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x2d, x3d = self.gather([index])
        return torch.from_numpy(x2d[0]), torch.from_numpy(x3d[0])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x2d, x3d = self.gather(indices)
        return torch.from_numpy(x2d), torch.from_numpy(x3d)

    def epoch_batches(self, batch_clips: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Draw the epoch order now; yield the global batches (x2d, x3d) lazily, in order."""
        batches = self.plan(batch_clips).global_batches()
        return (self.gather(b) for b in batches)

    def loader(
        self, plan: EpochPlan, rank: int = 0, world_size: int = 1, num_workers: int = 0
    ) -> DataLoader:
        """A DataLoader over ``rank``'s share of the batches of ``plan`` (order kept)."""
        return DataLoader(self, batch_sampler=plan.rank_batches(rank, world_size),
                          collate_fn=passthrough, num_workers=num_workers)


def passthrough(batch: Any) -> Any:
    """Collate function for :meth:`TrainClips.__getitems__` batches (already stacked)."""
    return batch


# --- evaluation clips (docs/model.md "Clip cutting") ------------------------------------------


def eval_clip_index(n_frames: int, frames: int) -> np.ndarray:
    """(C, F) local frame index of every evaluation clip: ``[i·F, (i+1)·F)`` for all but the
    last clip, ``[N − F, N)`` for the last; positions past N (only when N < F) repeat N − 1."""
    if n_frames < 1 or frames < 1:
        raise ValueError(f"need n_frames >= 1 and frames >= 1, got {n_frames}, {frames}")
    n = -(-n_frames // frames)
    starts = np.arange(n, dtype=np.int64) * frames
    starts[-1] = max(n_frames - frames, 0)
    return np.minimum(starts[:, None] + np.arange(frames), n_frames - 1)


@dataclass(frozen=True)
class EvalClips:
    """The evaluation clips of one sequence.

    Attributes:
        x2d / x2d_flip: (C, F, J, 2) input and its flip. x3d: (C, F, J, 3) root-relative, root 0.
        traj: (C, F, 3) camera-space root. valid: (C, F) bool. frame_index: (C, F) int64 local
        frame of every position. n_frames: N. name: sequence name (or None).
    """

    x2d: np.ndarray
    x2d_flip: np.ndarray
    x3d: np.ndarray
    traj: np.ndarray
    valid: np.ndarray
    frame_index: np.ndarray
    n_frames: int
    name: str | None = None

    @property
    def starts(self) -> np.ndarray:
        return self.frame_index[:, 0]

    def write_back(self, values: Any) -> np.ndarray:
        """Per-clip values (C, F, ...) -> per-frame (N, ...); later clips overwrite overlaps.

        Padding positions (N < F) are dropped.
        """
        values = np.asarray(values)
        if values.shape[:2] != self.frame_index.shape:
            raise ValueError(f"expected values of shape {self.frame_index.shape} + (...), "
                             f"got {values.shape}")
        out = np.empty((self.n_frames, *values.shape[2:]), dtype=values.dtype)
        for c, idx in enumerate(self.frame_index):
            real = min(len(idx), self.n_frames - int(idx[0]))
            out[idx[:real]] = values[c, :real]
        return out


def sequence_eval_clips(
    pose_2d: np.ndarray,
    pose_3d: np.ndarray,
    frames: int,
    skel: Skeleton,
    traj: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    name: str | None = None,
) -> EvalClips:
    """Cut one sequence ((N, J, 2), (N, J, 3) root-relative, traj (N, 3), valid (N,)) into clips."""
    n = len(pose_2d)
    if len(pose_3d) != n or (traj is not None and len(traj) != n) or (
        valid is not None and len(valid) != n
    ):
        raise ValueError(f"sequence {name}: arrays disagree on the frame count {n}")
    idx = eval_clip_index(n, frames)
    flipped = flip_joints(np.asarray(pose_2d), skel)  # whole sequence first, then clipped
    x3d = np.array(pose_3d[idx], dtype=np.float32)
    x3d[..., skel.root, :] = 0.0
    return EvalClips(
        x2d=np.asarray(pose_2d[idx], dtype=np.float32),
        x2d_flip=np.asarray(flipped[idx], dtype=np.float32),
        x3d=x3d,
        traj=np.zeros((*idx.shape, 3), np.float32) if traj is None else np.asarray(
            traj[idx], dtype=np.float32),
        valid=np.ones(idx.shape, bool) if valid is None else np.asarray(valid, bool)[idx],
        frame_index=idx,
        n_frames=n,
        name=name,
    )


def eval_clips(split: Any, skel: Skeleton | None = None, *, frames: int) -> Iterator[EvalClips]:
    """:func:`sequence_eval_clips` of every sequence of a processed split, in order."""
    skel = split.skeleton if skel is None else skel
    for seq in split.sequences():
        yield sequence_eval_clips(seq.pose_2d, seq.pose_3d, frames, skel, traj=seq.traj,
                                  valid=seq.valid, name=seq.name)


__all__ = [
    "DEFAULT_SHUFFLE_SEED",
    "EpochPlan",
    "EvalClips",
    "TrainClips",
    "chunk_starts",
    "eval_clip_index",
    "eval_clips",
    "passthrough",
    "rank_share",
    "sequence_eval_clips",
]
