"""Lift a 2D keypoint sequence of any length to root-relative 3D with a DDHPose model.

Windows: the model sees F = ``model.config.frames`` frames at a time. A sequence of T frames is
cut into windows starting at 0, s, 2s, ... (stride s, default F // 2) plus one window ending at
the last frame; a sequence shorter than F is right-padded by repeating its last frame (as the
reference's evaluation does) and cropped back. Windows are blended with linear cross-fade (tent)
weights ``w(i) = min(i + 1, F - i)``, normalised per frame, so a frame covered by one window gets
exactly that window's output. Flip test-time augmentation happens inside the sampler.

Aggregation (per window, then blended; only the last DDIM step is used):

- ``p_agg``: mean of the H hypotheses (needs nothing but the 2D input);
- ``j_agg`` (JPMA): per joint, the hypothesis whose pinhole reprojection ``pose + t`` is closest
  to the input keypoints (pixels), with :func:`ddhpose.evaluation.aggregate.jpma_index`. The
  camera is the
  given pixel intrinsics (fx, fy, cx, cy) or :func:`default_intrinsic` (focal = 1.2 × image
  width, principal point = image centre, no distortion). The root translation t per frame is
  estimated by :func:`estimate_root_translation` from the mean pose over hypotheses.

Outputs are metres, root joint = 0. ``hypotheses`` are blended hypothesis by hypothesis (at
window seams a blended hypothesis mixes two independent draws); ``spread`` (the uncertainty,
also :attr:`InferResult.uncertainty`) is the per-window spread over hypotheses of each joint's
position (:func:`ddhpose.evaluation.uncertainty.joint_spread`: the norm of the per-axis standard
deviation), blended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ddhpose.camera import normalize_screen_coordinates
from ddhpose.evaluation.aggregate import gather_hypotheses, jpma_index
from ddhpose.evaluation.uncertainty import joint_spread
from ddhpose.inference.limits import MAX_HYPOTHESES

AGGREGATES = ("p_agg", "j_agg")
DEFAULT_FOCAL_PER_WIDTH = 1.2


@dataclass
class InferResult:
    """The lifted sequence.

    Attributes:
        poses_3d: (T, 17, 3) float32 metres, root-relative (root joint = 0).
        hypotheses: (T, H, 17, 3) float32 metres, root-relative, or None if not kept.
        spread: (T, 17) float32 metres, per joint the spread over hypotheses
            (:func:`~ddhpose.evaluation.uncertainty.joint_spread`; 0 when H = 1); also
            :attr:`uncertainty`.
        aggregate: ``p_agg`` or ``j_agg``.
        root_translation: (T, 3) metres camera-space root estimate (``j_agg`` only).
        intrinsic_px: (9,) pixel camera used for ``j_agg`` (else None).
        windows: (start, stop) frame ranges of the windows in the (padded) sequence.
        frames: the model's receptive field F.
    """

    poses_3d: np.ndarray
    hypotheses: np.ndarray | None
    spread: np.ndarray
    aggregate: str
    root_translation: np.ndarray | None
    intrinsic_px: np.ndarray | None
    windows: list[tuple[int, int]]
    frames: int

    @property
    def uncertainty(self) -> np.ndarray:
        """(T, 17) float32 metres: :attr:`spread` (the same array) under the name ``ddhpose
        infer`` and the served model give it."""
        return self.spread


# --- windows and blending -------------------------------------------------------------------------


def window_starts(length: int, frames: int, stride: int | None = None) -> list[int]:
    """Start frames of the windows covering ``length`` >= ``frames`` frames."""
    if length < frames:
        raise ValueError(f"sequence of {length} frames is shorter than the window ({frames})")
    stride = max(1, frames // 2) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, length - frames + 1, stride))
    if starts[-1] != length - frames:
        starts.append(length - frames)
    return starts


def blend_weights(frames: int) -> np.ndarray:
    """(F,) linear cross-fade (tent) weights, all positive: ``min(i + 1, F - i)``."""
    i = np.arange(frames)
    return np.minimum(i + 1, frames - i).astype(np.float64)


def blend_windows(values: np.ndarray, starts: list[int], length: int) -> np.ndarray:
    """Blend per-window values (W, F, ...) into a sequence (length, ...), tent-weighted."""
    frames = values.shape[1]
    w = blend_weights(frames)
    out = np.zeros((length, *values.shape[2:]), dtype=np.float64)
    total = np.zeros(length, dtype=np.float64)
    shape = (frames,) + (1,) * (values.ndim - 2)
    for v, s in zip(values, starts, strict=True):
        out[s:s + frames] += v * w.reshape(shape)
        total[s:s + frames] += w
    return out / total.reshape((length,) + (1,) * (values.ndim - 2))


# --- camera and root translation ------------------------------------------------------------------


def default_intrinsic(image_size: tuple[float, float], focal: float | None = None) -> np.ndarray:
    """(9,) pixel camera [f, f, w/2, h/2, 0, 0, 0, 0, 0]; ``focal`` defaults to 1.2 × width."""
    w, h = image_size
    f = DEFAULT_FOCAL_PER_WIDTH * w if focal is None else float(focal)
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"focal length must be a positive number of pixels, got {focal}")
    return np.array([f, f, w / 2, h / 2, 0, 0, 0, 0, 0], dtype=np.float64)


def _intrinsic9(intrinsic: Any, image_size: tuple[float, float]) -> np.ndarray:
    if intrinsic is None:
        return default_intrinsic(image_size)
    cam = np.asarray(intrinsic, dtype=np.float64).reshape(-1)
    if cam.shape == (4,):
        cam = np.concatenate([cam, np.zeros(5)])
    if cam.shape != (9,) or not np.all(np.isfinite(cam)) or np.any(cam[:2] <= 0):
        raise ValueError(f"intrinsic must be (fx, fy, cx, cy) or a 9-vector in pixels with "
                         f"positive focal lengths, got {np.asarray(intrinsic).tolist()}")
    return cam


def estimate_root_translation(
    poses_rel: np.ndarray, keypoints_px: np.ndarray, intrinsic: Any,
    weights: np.ndarray | None = None, min_depth: float = 0.1,
) -> np.ndarray:
    """Per-frame camera-space root position by linear least squares (pinhole, no distortion).

    For a root-relative joint X = (x, y, z) (metres) seen at pixel (u, v), the pinhole model
    ``u = fx (x + tx) / (z + tz) + cx`` (same for v with fy, cy) multiplied out gives two
    equations linear in t = (tx, ty, tz):

        fx·tx − (u − cx)·tz = (u − cx)·z − fx·x
        fy·ty − (v − cy)·tz = (v − cy)·z − fy·y

    The 2J equations of a frame are solved in the least-squares sense (optionally weighted per
    joint); tz is clamped to at least ``min_depth`` metres.

    Args:
        poses_rel: (T, J, 3) root-relative poses, metres (camera axes: x right, y down, z ahead).
        keypoints_px: (T, J, 2) observed pixels.
        intrinsic: (fx, fy, cx, cy) or the (9,) vector, pixels.
        weights: optional (T, J) or (J,) non-negative joint weights.
    Returns:
        (T, 3) root translations t, metres.
    """
    cam = np.asarray(intrinsic, dtype=np.float64).reshape(-1)
    fx, fy, cx, cy = cam[:4]
    x = np.asarray(poses_rel, dtype=np.float64)
    uv = np.asarray(keypoints_px, dtype=np.float64)
    if x.shape[:-1] != uv.shape[:-1] or x.shape[-1] != 3 or uv.shape[-1] != 2 or x.ndim != 3:
        raise ValueError(f"poses (T, J, 3) and keypoints (T, J, 2) must match, got "
                         f"{x.shape} and {uv.shape}")
    du, dv = uv[..., 0] - cx, uv[..., 1] - cy  # (T, J)
    zeros = np.zeros_like(du)
    rows_u = np.stack([np.full_like(du, fx), zeros, -du], axis=-1)  # (T, J, 3)
    rows_v = np.stack([zeros, np.full_like(dv, fy), -dv], axis=-1)
    a = np.concatenate([rows_u, rows_v], axis=1)  # (T, 2J, 3)
    b = np.concatenate([du * x[..., 2] - fx * x[..., 0], dv * x[..., 2] - fy * x[..., 1]], axis=1)
    if weights is not None:
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), du.shape)
        sw = np.sqrt(np.concatenate([w, w], axis=1))
        a, b = a * sw[..., None], b * sw
    t = np.stack([np.linalg.lstsq(a_f, b_f, rcond=None)[0] for a_f, b_f in zip(a, b,
                                                                                strict=True)])
    t[:, 2] = np.maximum(t[:, 2], min_depth)
    return t


# --- the sampler over windows ---------------------------------------------------------------------


def _sample_windows(
    model: Any, x2d: np.ndarray, starts: list[int], hypotheses: int, steps: int,
    generator: torch.Generator | None, batch_windows: int, dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Sampler output of every window, last step, root zeroed: (W, H, F, J, 3) float32 metres."""
    frames = model.config.frames
    # a DDHPose: its parameters' device; an exported graph (ddhpose.deploy.onnx_runtime): .device
    device = getattr(model, "device", None) or next(model.parameters()).device
    clips = np.stack([x2d[s:s + frames] for s in starts]).astype(np.float32)  # (W, F, J, 2)
    root = model.skeleton.root
    out = []
    with torch.inference_mode():
        for i in range(0, len(clips), batch_windows):
            batch = torch.from_numpy(clips[i:i + batch_windows]).to(device)
            pred = model.sample(batch, hypotheses=hypotheses, steps=steps, generator=generator,
                                dtype=dtype)
            last = pred[:, -1].float().cpu().numpy() / model.unit_scale  # (b, H, F, J, 3)
            out.append(last - last[..., root:root + 1, :])
    return np.concatenate(out)


def infer(
    model: Any,
    keypoints_px: np.ndarray,
    image_size: tuple[float, float],
    *,
    hypotheses: int = 1,
    steps: int = 1,
    aggregate: str = "p_agg",
    intrinsic: Any = None,
    generator: torch.Generator | None = None,
    batch_windows: int = 4,
    stride: int | None = None,
    keep_hypotheses: bool = True,
    dtype: torch.dtype | None = None,
) -> InferResult:
    """Lift (T, 17, 2) pixel keypoints in the model's joint order to (T, 17, 3) metres.

    Args:
        model: a :class:`ddhpose.model.ddhpose.DDHPose` (:func:`infer_h36m17` takes Human3.6M-17
            keypoints for a model of either skeleton), or an exported graph on onnxruntime
            (:class:`ddhpose.deploy.onnx_runtime.OnnxLifter`: same ``sample``, ``config``,
            ``skeleton``, ``unit_scale``, and a ``device``).
        keypoints_px: (T, 17, 2) pixels in the model's joint order, all finite (see
            :mod:`ddhpose.keypoints`).
        image_size: (w, h) pixels, for the normalisation (and the default camera).
        hypotheses, steps: H (at most :data:`~ddhpose.inference.limits.MAX_HYPOTHESES`) and K
            of the DDIM sampler (the last step's poses are returned).
        aggregate: ``p_agg`` or ``j_agg`` (oracle aggregations need ground truth: not here).
        intrinsic: ``j_agg`` camera, (fx, fy, cx, cy) or 9-vector in pixels; default
            :func:`default_intrinsic`.
        generator: torch RNG for the sampler's noise (reproducible runs).
        batch_windows: windows per sampler call.
        stride: window stride in frames (default F // 2).
        keep_hypotheses: return the blended (T, H, 17, 3) hypotheses.
        dtype: denoiser precision (``torch.bfloat16``: faster on CPUs with bf16 units, see
            :meth:`DDHPose.sample`); default the model's (float32).
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES} (oracle aggregations need "
                         f"ground truth), got {aggregate!r}")
    skel = model.skeleton
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (skel.num_joints, 2) or kp.shape[0] < 1:
        raise ValueError(f"keypoints must be (T, {skel.num_joints}, 2) pixels, got {kp.shape}")
    if not np.all(np.isfinite(kp)):
        raise ValueError("keypoints contain NaN/inf: fill gaps first (ddhpose.keypoints)")
    if batch_windows < 1:
        raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
    if not 1 <= hypotheses <= MAX_HYPOTHESES:
        raise ValueError(f"hypotheses must be between 1 and {MAX_HYPOTHESES}, got {hypotheses}")
    if not 1 <= steps <= model.config.timesteps:
        raise ValueError(f"steps must be between 1 and the model's {model.config.timesteps} "
                         f"diffusion timesteps, got {steps}")
    w, h = image_size
    t_len, frames = kp.shape[0], int(model.config.frames)
    padded = max(t_len, frames)
    kp_pad = np.concatenate([kp, np.repeat(kp[-1:], padded - t_len, axis=0)])
    x2d = normalize_screen_coordinates(kp_pad.astype(np.float32), w, h)
    starts = window_starts(padded, frames, stride)
    hyp = _sample_windows(model, x2d, starts, hypotheses, steps, generator, batch_windows,
                          dtype)
    mean = hyp.mean(axis=1)  # (W, F, J, 3)
    spread = joint_spread(np.moveaxis(hyp, 1, 2))  # (W, F, H, J, 3) -> (W, F, J)

    traj = cam = None
    chosen = mean
    if aggregate == "j_agg":
        cam = _intrinsic9(intrinsic, (w, h))
        traj = estimate_root_translation(blend_windows(mean, starts, padded), kp_pad, cam)
        clips_px = np.stack([kp_pad[s:s + frames] for s in starts])  # (W, F, J, 2)
        clips_t = np.stack([traj[s:s + frames, None, :] for s in starts])  # (W, F, 1, 3)
        pred = torch.from_numpy(hyp[:, None])  # (W, 1, H, F, J, 3)
        index = jpma_index(pred, clips_t, clips_px, cam)  # (W, 1, F, J)
        chosen = gather_hypotheses(pred, index)[:, 0].numpy()

    def crop(a: np.ndarray) -> np.ndarray:
        return blend_windows(a, starts, padded)[:t_len].astype(np.float32)

    poses = crop(chosen)
    poses[:, skel.root] = 0.0
    kept = None
    if keep_hypotheses:
        kept = crop(np.moveaxis(hyp, 1, 2))  # (T, H, J, 3)
        kept[:, :, skel.root] = 0.0
    return InferResult(
        poses_3d=poses, hypotheses=kept, spread=crop(spread), aggregate=aggregate,
        root_translation=None if traj is None else traj[:t_len].astype(np.float32),
        intrinsic_px=cam, windows=[(s, s + frames) for s in starts], frames=frames,
    )


# For each MPI-INF-3DHP joint (3dhp17 order), the Human3.6M-17 joint of the same meaning:
# head_top = head, neck = thorax, head = neck/nose; limbs, pelvis and spine correspond directly.
H36M17_TO_3DHP17 = (10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9)


def infer_h36m17(model: Any, keypoints_px: np.ndarray, image_size: tuple[float, float],
                 **kwargs: Any) -> InferResult:
    """:func:`infer` with input and output in the Human3.6M-17 order for a model of either
    skeleton: a 3DHP model gets the keypoints reordered by :data:`H36M17_TO_3DHP17` and its
    poses (T, 17, 3), hypotheses (T, H, 17, 3) and spread (T, 17) reordered back."""
    if model.skeleton.name == "h36m17":
        return infer(model, keypoints_px, image_size, **kwargs)
    if model.skeleton.name != "3dhp17":
        raise ValueError(f"no Human3.6M-17 correspondence for the '{model.skeleton.name}' "
                         "skeleton")
    to_model = np.asarray(H36M17_TO_3DHP17)
    back = np.argsort(to_model)
    res = infer(model, np.asarray(keypoints_px)[:, to_model], image_size, **kwargs)
    res.poses_3d = res.poses_3d[:, back]
    res.spread = res.spread[:, back]
    if res.hypotheses is not None:
        res.hypotheses = res.hypotheses[:, :, back]
    return res


__all__ = [
    "AGGREGATES",
    "DEFAULT_FOCAL_PER_WIDTH",
    "H36M17_TO_3DHP17",
    "InferResult",
    "blend_weights",
    "blend_windows",
    "default_intrinsic",
    "estimate_root_translation",
    "infer",
    "infer_h36m17",
    "window_starts",
]
