"""Sample a whole processed split with the protocol's clip cutting and aggregate every batch.

For each sequence the evaluation clips (docs/model.md "Clip cutting") go through ``model.sample`` in
batches of ``batch_clips`` clips (batches never cross sequences, as in the reference); every batch
is aggregated at once (P-Best picks one hypothesis per batch: docs/model.md
"Quirks: P-Best per batch"), so the four aggregated poses and the per-batch protocol errors are kept
while the H hypotheses are dropped unless asked for.

Sharing between processes: :func:`shard_sequences` deals the sequences to ranks,
:func:`predict_sequences` samples one share (with ``sequence_generator`` each sequence draws its
own noise) and :func:`assemble_split` puts the shares back in sequence order, giving the arrays of
:func:`predict_split` whatever the shares.

Saved layout (``predictions.npz``, no pickles), frames aligned with the split's frame axis T:
- ``p_best_oracle``, ``p_agg``, ``j_best_oracle``, ``j_agg``: float32 (T, K, J, 3) root-relative
  metres, root 0 (later clips overwrite the overlap of a sequence's last clip);
- ``hypotheses`` (optional): float32 (T, K, H, J, 3);
- ``spread``: float32 (T, J) metres, the per-joint spread over the H hypotheses at the last DDIM
  step (:func:`ddhpose.evaluation.uncertainty.joint_spread`; 0 at the root joint and when H = 1),
  written back like the poses (absent from files written before it existed: None on loading);
- ``batch_seq`` int64 (NB,), ``batch_frames`` int64 (NB,) scored frames, and one float64
  (NB, K) array ``err_<p1|p2>_<aggregation>`` of per-batch mean errors in mm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch

from ddhpose.camera import image_coordinates
from ddhpose.data.clips import sequence_eval_clips
from ddhpose.data.processed import ProcessedSplit
from ddhpose.errors import DataError
from ddhpose.evaluation.aggregate import AGGREGATIONS, aggregate_batch
from ddhpose.evaluation.uncertainty import joint_spread
from ddhpose.io import atomic_open, read_npz

if TYPE_CHECKING:
    from ddhpose.model.ddhpose import DDHPose


@dataclass
class SplitPredictions:
    """Aggregated predictions of a split (see the module docstring for the arrays)."""

    poses: dict[str, np.ndarray]
    batch_seq: np.ndarray
    batch_frames: np.ndarray
    batch_errors: dict[str, np.ndarray]
    hypotheses: np.ndarray | None = None
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    spread: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return int(next(iter(self.poses.values())).shape[1])


@dataclass
class SequencePredictions:
    """Aggregated predictions of one sequence (a share of a split, see :func:`predict_sequences`).

    Attributes:
        index: the sequence's index in the split.
        poses: aggregation -> float32 (N, K, J, 3) root-relative metres over its N frames.
        batch_frames: scored frames of each of its batches, in order.
        batch_errors: key -> one float64 (K,) array of mean errors in mm per batch.
        hypotheses: float32 (N, K, H, J, 3) metres, or None.
        spread: float32 (N, J) metres, the spread over hypotheses at the last DDIM step.
    """

    index: int
    poses: dict[str, np.ndarray]
    batch_frames: list[int]
    batch_errors: dict[str, list[np.ndarray]]
    hypotheses: np.ndarray | None = None
    spread: np.ndarray | None = None


def shard_sequences(lengths: Sequence[int], shards: int) -> list[list[int]]:
    """Deal sequence indices to ``shards`` ranks, balanced by frames (longest first to the least
    loaded rank, ties to the lower rank); each share is sorted. Deterministic; a rank gets an
    empty share when there are more ranks than sequences."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    load = [0] * shards
    out: list[list[int]] = [[] for _ in range(shards)]
    for i in sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i)):
        r = min(range(shards), key=lambda r: (load[r], r))
        out[r].append(i)
        load[r] += int(lengths[i])
    return [sorted(share) for share in out]


def predict_sequences(
    model: DDHPose,
    split: ProcessedSplit,
    indices: Iterable[int],
    *,
    hypotheses: int,
    steps: int,
    batch_clips: int,
    generator: torch.Generator | None = None,
    sequence_generator: Callable[[int], torch.Generator] | None = None,
    save_hypotheses: bool = False,
    protocol2: bool = True,
    progress: Callable[[int], None] | None = None,
    dtype: torch.dtype | None = None,
) -> list[SequencePredictions]:
    """Sample the sequences ``indices`` of ``split`` and aggregate each batch (arguments as
    :func:`predict_split`). With ``sequence_generator`` the noise of sequence i comes from
    ``sequence_generator(i)`` alone, so a sequence's predictions do not depend on which others
    are sampled in the same process (the basis of sharding across ranks)."""
    device = next(model.parameters()).device
    frames = int(model.config.frames)
    skel = split.skeleton
    scale = float(model.unit_scale)  # model unit = metres * scale
    is_3dhp = split.dataset == "3dhp"
    n_joints = split.pose_3d.shape[1]
    out: list[SequencePredictions] = []
    for index in indices:
        seq = split.sequence(int(index))
        gen = sequence_generator(seq.index) if sequence_generator is not None else generator
        clips = sequence_eval_clips(seq.pose_2d, seq.pose_3d, frames, skel, traj=seq.traj,
                                    valid=seq.valid, name=seq.name)
        n_clips = clips.x2d.shape[0]
        seq_poses = {a: np.zeros((n_clips, frames, steps, n_joints, 3), np.float32)
                     for a in AGGREGATIONS}
        seq_hyp = (np.zeros((n_clips, frames, steps, hypotheses, n_joints, 3), np.float32)
                   if save_hypotheses else None)
        seq_spread = np.zeros((n_clips, frames, n_joints), np.float32)
        part = SequencePredictions(seq.index, {}, [], {})
        for lo in range(0, n_clips, batch_clips):
            sl = slice(lo, min(lo + batch_clips, n_clips))
            x2d = torch.from_numpy(clips.x2d[sl]).to(device)
            x2d_flip = torch.from_numpy(clips.x2d_flip[sl]).to(device)
            with torch.inference_mode():
                pred = model.sample(x2d, hypotheses=hypotheses, steps=steps,
                                    generator=gen, x2d_flip=x2d_flip, dtype=dtype)
            pred = pred.float().cpu()  # (b, K, H, F, J, 3) metres * scale
            gt = torch.from_numpy(clips.x3d[sl]) * scale
            traj = torch.from_numpy(clips.traj[sl])[:, :, None, :] * scale
            if is_3dhp:  # pixel JPMA, valid frames only: docs/model.md "Aggregations"
                w, h = (int(v) for v in seq.res)
                target_px = image_coordinates(torch.from_numpy(clips.x2d[sl]), w, h)
                agg = aggregate_batch(pred, gt, traj, target_px, seq.intrinsic_px,
                                      root=skel.root, unit_to_mm=1000.0 / scale,
                                      protocol2=False, mask=clips.valid[sl])
            else:
                agg = aggregate_batch(pred, gt, traj, clips.x2d[sl], seq.intrinsic,
                                      root=skel.root, unit_to_mm=1000.0 / scale,
                                      protocol2=protocol2)
            for name in AGGREGATIONS:  # (b, K, F, J, 3) -> (b, F, K, J, 3) metres
                seq_poses[name][sl] = agg.poses[name].transpose(0, 2, 1, 3, 4) / scale
            # (b, H, F, J, 3) at the last step -> (b, F, H, J, 3) -> (b, F, J) metres
            spread = joint_spread(pred[:, -1].numpy().transpose(0, 2, 1, 3, 4)) / scale
            spread[..., skel.root] = 0.0
            seq_spread[sl] = spread
            if seq_hyp is not None:
                h = pred.numpy().copy()
                h[..., skel.root, :] = 0.0
                seq_hyp[sl] = h.transpose(0, 3, 1, 2, 4, 5) / scale
            part.batch_frames.append(agg.frames)
            for key, value in agg.errors_mm.items():
                part.batch_errors.setdefault(key, []).append(np.asarray(value, np.float64))
        part.poses = {name: clips.write_back(seq_poses[name]) for name in AGGREGATIONS}
        part.spread = clips.write_back(seq_spread)
        if seq_hyp is not None:
            part.hypotheses = clips.write_back(seq_hyp)
        out.append(part)
        if progress is not None:
            progress(seq.num_frames)
    return out


def assemble_split(
    split: ProcessedSplit, parts: Iterable[SequencePredictions], *, hypotheses: int, steps: int,
    save_hypotheses: bool = False, seconds: float = 0.0,
) -> SplitPredictions:
    """The split's predictions from its sequences' parts (from one or several ranks), in
    sequence order: the same arrays whichever way the sequences were shared. Raises ValueError
    if a sequence is missing or given twice."""
    by_index: dict[int, SequencePredictions] = {}
    for part in parts:
        if part.index in by_index:
            raise ValueError(f"sequence {part.index} predicted twice")
        by_index[part.index] = part
    missing = sorted(set(range(split.num_sequences)) - set(by_index))
    if missing:
        raise ValueError(f"sequences {missing[:10]} not predicted")
    t_total = split.num_frames
    n_joints = split.pose_3d.shape[1]
    poses = {a: np.zeros((t_total, steps, n_joints, 3), np.float32) for a in AGGREGATIONS}
    hyp = (np.zeros((t_total, steps, hypotheses, n_joints, 3), np.float32)
           if save_hypotheses else None)
    spread = np.zeros((t_total, n_joints), np.float32)
    batch_seq: list[int] = []
    batch_frames: list[int] = []
    batch_err: dict[str, list[np.ndarray]] = {}
    for index in range(split.num_sequences):
        part = by_index[index]
        lo = int(split.seq_start[index])
        frame_slice = slice(lo, lo + int(split.seq_length[index]))
        for name in AGGREGATIONS:
            poses[name][frame_slice] = part.poses[name]
        if hyp is not None and part.hypotheses is not None:
            hyp[frame_slice] = part.hypotheses
        if part.spread is not None:
            spread[frame_slice] = part.spread
        batch_seq.extend([index] * len(part.batch_frames))
        batch_frames.extend(part.batch_frames)
        for key, values in part.batch_errors.items():
            batch_err.setdefault(key, []).extend(values)
    return SplitPredictions(
        poses=poses,
        batch_seq=np.asarray(batch_seq, np.int64),
        batch_frames=np.asarray(batch_frames, np.int64),
        batch_errors={k: np.stack(v) for k, v in batch_err.items()},
        hypotheses=hyp,
        seconds=seconds,
        spread=spread,
    )


def predict_split(
    model: DDHPose,
    split: ProcessedSplit,
    *,
    hypotheses: int,
    steps: int,
    batch_clips: int,
    generator: torch.Generator | None = None,
    sequence_generator: Callable[[int], torch.Generator] | None = None,
    save_hypotheses: bool = False,
    protocol2: bool = True,
    progress: Callable[[int], None] | None = None,
    dtype: torch.dtype | None = None,
) -> SplitPredictions:
    """Sample every sequence of ``split`` and aggregate each batch.

    Args:
        model: a :class:`ddhpose.model.DDHPose` in eval mode (its device is used).
        split: the processed test split (metres).
        hypotheses, steps: H and K of the DDIM sampler.
        batch_clips: clips per sampler call (and per P-Best choice).
        generator: source of the sampler noise (seeded by the caller for reproducibility), one
            stream through the whole split.
        sequence_generator: ``i -> generator`` of sequence i's noise (replaces ``generator``):
            the draws are tied to the sequence, so the result does not depend on how the
            sequences are shared between processes (the sample stage's choice).
        save_hypotheses: also keep all H hypotheses (T, K, H, J, 3) — large.
        protocol2: also compute P-MPJPE per batch (Human3.6M).
        progress: called with the number of frames done after each sequence.
        dtype: denoiser precision (``torch.bfloat16``: see :meth:`DDHPose.sample`); default the
            model's own (float32).
    """
    start = time.perf_counter()
    parts = predict_sequences(
        model, split, range(split.num_sequences), hypotheses=hypotheses, steps=steps,
        batch_clips=batch_clips, generator=generator, sequence_generator=sequence_generator,
        save_hypotheses=save_hypotheses, protocol2=protocol2, progress=progress, dtype=dtype)
    return assemble_split(split, parts, hypotheses=hypotheses, steps=steps,
                          save_hypotheses=save_hypotheses, seconds=time.perf_counter() - start)


def write_predictions(fh: BinaryIO, pred: SplitPredictions) -> None:
    """Write the ``predictions.npz`` arrays (layout in the module docstring) to an open file."""
    arrays: dict[str, np.ndarray] = dict(pred.poses)
    arrays["batch_seq"] = pred.batch_seq
    arrays["batch_frames"] = pred.batch_frames
    for key, value in pred.batch_errors.items():
        arrays[f"err_{key}"] = value
    if pred.hypotheses is not None:
        arrays["hypotheses"] = pred.hypotheses
    if pred.spread is not None:
        arrays["spread"] = np.asarray(pred.spread, np.float32)
    np.savez(fh, **arrays)


def save_predictions(path: str | Path, pred: SplitPredictions) -> Path:
    """Write ``predictions.npz`` atomically (layout in the module docstring)."""
    with atomic_open(path, "wb") as fh:
        write_predictions(fh, pred)
    return Path(path)


def load_predictions(path: str | Path, split: ProcessedSplit | None = None) -> SplitPredictions:
    """Read ``predictions.npz``; with ``split``, check it covers the split's frames. ``spread``
    is None for a file written before the sample stage kept it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found (run the sample stage first)")
    arrays = read_npz(path, what="predictions archive")
    missing = [a for a in (*AGGREGATIONS, "batch_seq", "batch_frames") if a not in arrays]
    if missing:
        raise DataError(path, f"missing arrays {missing}")
    poses = {a: arrays[a] for a in AGGREGATIONS}
    if split is not None and poses["p_agg"].shape[0] != split.num_frames:
        raise DataError(path, f"{poses['p_agg'].shape[0]} frames, but the test split has "
                              f"{split.num_frames}: rerun the sample stage")
    return SplitPredictions(
        poses=poses,
        batch_seq=arrays["batch_seq"],
        batch_frames=arrays["batch_frames"],
        batch_errors={k[4:]: v for k, v in arrays.items() if k.startswith("err_")},
        hypotheses=arrays.get("hypotheses"),
        spread=arrays.get("spread"),
    )
