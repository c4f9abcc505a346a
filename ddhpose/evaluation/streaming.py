"""Live (streaming) lifting: the window policies, their per-frame noise, and their accuracy cost.

A DDHPose model sees a window of F = ``model.config.frames`` frames. A live frame t needs a
policy for the frames it cannot see yet:

- ``centred``: frame t sits at position ``c = F // 2`` of its window ``[t - c, t - c + F - 1]``;
  it is served once frame ``t + F - 1 - c`` has arrived (latency ``F - 1 - c`` frames: F // 2
  for an odd F, the model's window centred on t);
- ``causal``: frame t is the last frame of its window ``[t - F + 1, t]``; it is served as soon as
  it arrives (latency 0 frames, no look-ahead).

Frames outside the known ones are padded by repeating the edge frame: before frame 0 frame 0
is repeated (both policies, at the start of a stream), after the last frame the last one (the
``centred`` policy at the end of a stream, :meth:`ddhpose.inference.stream.StreamLifter.flush`).
The window of a frame never changes once served, so each frame is lifted exactly once.

Noise: every served frame draws its own sampler noise from a generator seeded from its own
integers (:func:`noise_generator`), so a frame's pose does not depend on which other windows are
sampled in the same call (:func:`sample_served_frames` batches several).

:func:`stream_policy_errors` is the evaluate stage's measurement: for ``eval.stream_frames``
test frames, evenly spaced over the split, it samples the window each policy serves them with
(H, K and ``seed`` of the sample stage; frame t of sequence i draws from
``noise_generator(seed, i, t, STREAM_EVAL_NOISE)``, as the sample stage draws sequence i from
``(seed, i, 4)``) and scores MPJPE (protocol #1, mm) of J-Agg and P-Agg at the last DDIM step
per policy, next to the offline clip predictions (``predictions.npz``) on the same frames. J-Agg
reprojects with the ground-truth root trajectory, as the offline protocol does.

This module imports the model layer only (not :mod:`ddhpose.inference`), so the stage and the
live lifter share one definition of the policies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.camera import image_coordinates
from ddhpose.evaluation.aggregate import gather_hypotheses, jpma_index
from ddhpose.evaluation.metrics import joint_errors
from ddhpose.evaluation.temporal_report import Report, write_csv

POLICIES = ("centred", "causal")
STREAM_AGGREGATIONS = ("j_agg", "p_agg")
STREAM_EVAL_NOISE = 5  # noise_generator(seed, sequence, frame, 5): the sample stage uses 4


# --- the policies -----------------------------------------------------------------------------


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`POLICIES`, else ValueError."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    return policy


def window_offset(policy: str, frames: int) -> int:
    """Position of the served frame t inside its window of ``frames`` (F) frames:
    ``F // 2`` (centred) or ``F - 1`` (causal)."""
    check_policy(policy)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return frames // 2 if policy == "centred" else frames - 1


def latency_frames(policy: str, frames: int) -> int:
    """Frames that must arrive after frame t before it is served: ``F - 1 - offset``
    (F // 2 for centred with an odd F, 0 for causal)."""
    return frames - 1 - window_offset(policy, frames)


def window_indices(t: int, policy: str, frames: int, last: int | None = None) -> np.ndarray:
    """(F,) int64 source frame of each window position for served frame ``t``: the window
    ``[t - offset, t - offset + F - 1]`` clipped to ``[0, last]`` (edge frames repeated;
    ``last=None``: no end, the look-ahead frames must exist)."""
    start = int(t) - window_offset(policy, frames)
    idx = np.arange(start, start + frames, dtype=np.int64)
    return np.clip(idx, 0, None if last is None else int(last))


def frames_ready(available: int, policy: str, frames: int) -> int:
    """How many frames (0 .. n-1) can be served once ``available`` frames have arrived."""
    return max(0, int(available) - latency_frames(policy, frames))


# --- noise and sampling -----------------------------------------------------------------------


def noise_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from the integers ``parts`` (order-sensitive, well
    mixed through ``numpy.random.SeedSequence``)."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1))
    return gen


def window_noise(generators: Sequence[torch.Generator]) -> Callable[[tuple[int, ...]], Any]:
    """The sampler's noise callable for a batch of windows: row b of every draw (shape
    ``(B, ...)``, B = ``len(generators)``) comes from ``generators[b]`` alone."""
    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        if shape[0] != len(generators):
            raise ValueError(f"noise for {shape[0]} windows asked of {len(generators)} "
                             "generators")
        return torch.stack([torch.randn(shape[1:], generator=g) for g in generators])
    return draw


def sample_served_frames(
    model: Any, x2d: np.ndarray, generators: Sequence[torch.Generator], *, hypotheses: int,
    steps: int, offset: int, flip: np.ndarray | None = None, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Sample B windows in one ``model.sample`` call and keep the served frame of each.

    Args:
        model: a :class:`ddhpose.model.ddhpose.DDHPose` (its device is used).
        x2d: (B, F, J, 2) normalised screen coordinates of the windows.
        generators: B generators, one per window (:func:`window_noise`).
        hypotheses, steps: H and K of the DDIM sampler.
        offset: the served frame's position in the window (:func:`window_offset`).
        flip: optional (B, F, J, 2) flipped input (default: the model flips ``x2d``).
        dtype: denoiser precision (default the model's).
    Returns:
        (B, K, H, J, 3) float32 CPU tensor, the model's unit (metres x ``model.unit_scale``),
        root NOT zeroed.
    """
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(x2d, dtype=np.float32)).to(device)
    batch_flip = None if flip is None else torch.from_numpy(
        np.ascontiguousarray(flip, dtype=np.float32)).to(device)
    with torch.inference_mode():
        pred = model.sample(batch, hypotheses=hypotheses, steps=steps,
                            noise=window_noise(generators), x2d_flip=batch_flip, dtype=dtype)
    return pred[:, :, :, offset].float().cpu().clone()  # (B, K, H, J, 3), a normal tensor


# --- the evaluate stage's measurement ---------------------------------------------------------


@dataclass
class StreamingErrors:
    """MPJPE (P1, mm, last DDIM step) per policy on the same test frames.

    Attributes:
        rows: one dict per (policy, aggregation): ``policy``, ``latency_frames``,
            ``aggregation``, ``p1_mm``, ``frames``; policy ``offline`` is the sample stage's
            clip predictions on the same frames (latency: the rest of the sequence).
        frames: test frames scored. window: F. seconds: wall time of the sampling.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    window: int = 0
    hypotheses: int = 0
    steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """``{"frames", "window", "hypotheses", "steps", "seconds", "unit", "<policy>":
        {"latency_frames", "p1_<aggregation>_mm", ...}}`` for ``metrics.json``."""
        out: dict[str, Any] = {"frames": self.frames, "window": self.window,
                               "hypotheses": self.hypotheses, "steps": self.steps,
                               "seconds": round(self.seconds, 3), "unit": "mm (MPJPE, P1)"}
        for row in self.rows:
            entry = out.setdefault(row["policy"], {"latency_frames": row["latency_frames"]})
            entry[f"p1_{row['aggregation']}_mm"] = row["p1_mm"]
        return out

    def metrics(self) -> dict[str, float]:
        """MLflow metrics ``stream_<policy>_<aggregation>_p1_mm``."""
        return {f"stream_{r['policy']}_{r['aggregation']}_p1_mm": float(r["p1_mm"])
                for r in self.rows}


def evaluation_frames(seq_lengths: Sequence[int], count: int,
                      valid: np.ndarray | None = None) -> list[tuple[int, int]]:
    """``count`` (sequence, frame) pairs evenly spaced over the split's concatenated frame axis
    (distinct, in order); with ``valid`` (T,) bool only valid frames are taken (the nearest
    valid frame at or after each spaced position)."""
    lengths = np.asarray(seq_lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    if count <= 0 or total == 0:
        return []
    pool = np.arange(total) if valid is None else np.flatnonzero(np.asarray(valid, bool))
    if len(pool) == 0:
        return []
    picks = np.unique(pool[np.linspace(0, len(pool) - 1, min(count, len(pool))).round()
                           .astype(np.int64)])
    seq = np.searchsorted(starts, picks, side="right") - 1
    return [(int(s), int(g - starts[s])) for s, g in zip(seq, picks, strict=True)]


def stream_policy_errors(
    model: Any, split: Any, offline_poses: dict[str, np.ndarray], *, count: int,
    hypotheses: int, steps: int, seed: int, batch: int = 16, dtype: torch.dtype | None = None,
) -> StreamingErrors:
    """Score each policy (and the offline predictions) on ``count`` test frames.

    Args:
        model: the evaluated :class:`ddhpose.model.ddhpose.DDHPose`, eval mode.
        split: the processed test split (:class:`ddhpose.data.processed.ProcessedSplit`,
            metres; 2D in normalised screen coordinates).
        offline_poses: aggregation -> (T, K, J, 3) metres of ``predictions.npz``.
        count: frames to score (evenly spaced, :func:`evaluation_frames`); 0 = none.
        hypotheses, steps, seed: the sample stage's H, K and seed.
        batch: windows per sampler call.
    Returns:
        :class:`StreamingErrors` (no rows when ``count`` is 0).
    """
    frames = int(model.config.frames)
    out = StreamingErrors(window=frames, hypotheses=hypotheses, steps=steps)
    is_3dhp = split.dataset == "3dhp"
    picks = evaluation_frames([int(n) for n in split.seq_length], count,
                              split.valid if is_3dhp else None)
    if not picks:
        return out
    skel, scale = split.skeleton, float(model.unit_scale)
    start_time = time.perf_counter()
    gt = np.stack([split.sequence(s).pose_3d[t] for s, t in picks]).astype(np.float64)
    gt[:, skel.root] = 0.0  # (N, J, 3) metres
    sums: dict[tuple[str, str], float] = {}
    for policy in POLICIES:
        offset = window_offset(policy, frames)
        for lo in range(0, len(picks), batch):
            chunk = picks[lo:lo + batch]
            views = [split.sequence(s) for s, _ in chunk]
            idx = [window_indices(t, policy, frames, v.num_frames - 1)
                   for (_, t), v in zip(chunk, views, strict=True)]
            x2d = np.stack([v.pose_2d[i] for v, i in zip(views, idx, strict=True)])
            gens = [noise_generator(seed, s, t, STREAM_EVAL_NOISE) for s, t in chunk]
            pred = sample_served_frames(model, x2d, gens, hypotheses=hypotheses, steps=steps,
                                        offset=offset, dtype=dtype)[:, -1:]
            pred[..., skel.root, :] = 0.0  # (b, 1, H, J, 3) model unit
            traj = torch.from_numpy(np.stack([v.traj[t] for (_, t), v in zip(
                chunk, views, strict=True)]).astype(np.float32))[:, None, None, :] * scale
            served = x2d[:, offset][:, None]  # (b, 1, J, 2)
            if is_3dhp:  # pixel JPMA with the sequence's camera, as the sample stage
                target = np.stack([image_coordinates(served[i], *v.res)
                                   for i, v in enumerate(views)])
                cams = np.stack([v.intrinsic_px for v in views])
            else:
                target, cams = served, np.stack([v.intrinsic for v in views])
            hyp = pred[:, :, :, None]  # (b, 1, H, 1, J, 3)
            chosen = {
                "j_agg": gather_hypotheses(hyp, jpma_index(hyp, traj, target, cams))[:, 0, 0],
                "p_agg": hyp.mean(2)[:, 0, 0],
            }
            truth = torch.from_numpy(gt[lo:lo + len(chunk)])
            for agg, pose in chosen.items():
                err = joint_errors(pose.double() / scale, truth).mean(dim=-1)  # (b,) metres
                sums[(policy, agg)] = sums.get((policy, agg), 0.0) + float(err.sum())
    out.seconds = time.perf_counter() - start_time
    n = len(picks)
    rows = [(p, latency_frames(p, frames)) for p in POLICIES]
    global_index = np.asarray([int(split.seq_start[s]) + t for s, t in picks])
    for agg in STREAM_AGGREGATIONS:
        offline = offline_poses[agg][global_index, -1].astype(np.float64)
        offline[:, skel.root] = 0.0
        err = joint_errors(torch.from_numpy(offline), torch.from_numpy(gt)).mean(dim=-1)
        sums[("offline", agg)] = float(err.sum())
    for policy, latency in [*rows, ("offline", None)]:
        for agg in STREAM_AGGREGATIONS:
            out.rows.append({"policy": policy, "latency_frames": latency, "aggregation": agg,
                             "p1_mm": 1000.0 * sums[(policy, agg)] / n, "frames": n})
    out.frames = n
    return out


def streaming_report(checkpoint: Path, split: Any, offline_poses: dict[str, np.ndarray],
                     sample_meta: Mapping[str, Any], eval_dir: Path, count: int) -> Report:
    """The evaluate stage's streaming measurement (``eval.stream_frames`` = ``count``; 0 = off):
    ``checkpoint`` (``models/best.pt``) loaded as the sample stage does, on its device and
    precision (``meta.json``), scored by :func:`stream_policy_errors` with its H, K and seed ->
    ``<eval_dir>/streaming.csv`` (policy, latency_frames, aggregation, p1_mm, frames), the
    metrics.json key ``streaming`` and MLflow metrics ``stream_<policy>_<aggregation>_p1_mm``."""
    from ddhpose.model.checkpoint import load_model
    from ddhpose.model.precision import sample_dtype

    rep = Report()
    if count <= 0:
        return rep
    import pandas as pd

    device = torch.device(str(sample_meta.get("device", "cpu")))
    if device.type == "cuda" and not torch.cuda.is_available():
        device = torch.device("cpu")
    model = load_model(checkpoint, dataset=split.dataset, map_location="cpu").to(device).eval()
    dtype = sample_dtype(str(sample_meta.get("dtype", "float32")), device)
    res = stream_policy_errors(model, split, offline_poses, count=count,
                               hypotheses=int(sample_meta["hypotheses"]),
                               steps=int(sample_meta["steps"]), seed=int(sample_meta["seed"]),
                               dtype=dtype)
    rep.files.append(write_csv(pd.DataFrame(res.rows), Path(eval_dir) / "streaming.csv"))
    rep.metrics["streaming"] = res.as_dict()
    rep.mlflow.update(res.metrics())
    rep.mlflow["stream_seconds"] = round(res.seconds, 3)
    by = {(r["policy"], r["aggregation"]): r["p1_mm"] for r in res.rows}
    rep.lines.append(f"evaluate: streaming on {res.frames} test frames (F = {res.window}, "
                     f"{res.seconds:.1f} s) P1 " + ", ".join(
                         f"{p} J-Agg {by[(p, 'j_agg')]:.2f} / P-Agg {by[(p, 'p_agg')]:.2f} mm"
                         for p in (*POLICIES, "offline")))
    return rep


__all__ = [
    "POLICIES",
    "STREAM_AGGREGATIONS",
    "STREAM_EVAL_NOISE",
    "StreamingErrors",
    "check_policy",
    "evaluation_frames",
    "frames_ready",
    "latency_frames",
    "noise_generator",
    "sample_served_frames",
    "stream_policy_errors",
    "streaming_report",
    "window_indices",
    "window_noise",
]
