"""The four multi-hypothesis aggregations of DDHPose (docs/model.md "Aggregations").

A prediction is ``(B, K, H, F, J, 3)`` (clips, DDIM steps, hypotheses, frames, joints, xyz); the
ground truth is ``(B, F, J, 3)``; both root-relative in the same unit (metres for Human3.6M, mm for
MPI-INF-3DHP). Two aggregations are deployable:

- ``p_agg``: the mean pose over hypotheses;
- ``j_agg`` (JPMA): per joint, the hypothesis whose reprojection ``project(pred + traj)`` is
  closest to the input 2D (first minimum); ``traj`` is the ground-truth root trajectory, as in
  the reference.

and two look at the ground truth, hence the ``oracle`` in their names:

- ``p_best_oracle``: one hypothesis per step for the *whole batch* (lowest mean error);
- ``j_best_oracle``: per joint, the hypothesis with the lowest 3D error.

Reprojections and selections run in torch in the prediction's dtype (float32 in the reference);
errors are accumulated in float64. Protocol #2 aligns every hypothesis pose separately (NumPy,
float64) and reuses the protocol #1 JPMA selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddhpose.camera import image_coordinates, mpi3dhp_test_intrinsic_px, project_to_2d
from ddhpose.evaluation import AGGREGATIONS, ORACLE
from ddhpose.evaluation.metrics import joint_errors, procrustes_align

PROTOCOLS = ("p1", "p2")


def _t(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.from_numpy(np.ascontiguousarray(x))


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _check_shapes(pred: torch.Tensor, gt: torch.Tensor | None = None) -> None:
    if pred.ndim != 6 or pred.shape[-1] != 3:
        raise ValueError(f"prediction must be (B, K, H, F, J, 3), got {tuple(pred.shape)}")
    if gt is not None:
        b, _, _, f, j, _ = pred.shape
        if tuple(gt.shape) != (b, f, j, 3):
            raise ValueError(
                f"ground truth must be (B, F, J, 3) = {(b, f, j, 3)}, got {tuple(gt.shape)}"
            )


def zero_root(x: Any, root: int) -> torch.Tensor:
    """A copy of poses (..., J, 3) with joint ``root`` set to 0, as the protocol does."""
    out = _t(x).clone()
    out[..., root, :] = 0
    return out


def gather_hypotheses(pred: Any, index: Any) -> torch.Tensor:
    """Pick per (b, k, f, j) the hypothesis ``index``: (B,K,H,F,J,3), (B,K,F,J) -> (B,K,F,J,3)."""
    pred, index = _t(pred), _t(index).long()
    idx = index[:, :, None, :, :, None].expand(-1, -1, 1, -1, -1, pred.shape[-1])
    return torch.gather(pred, 2, idx).squeeze(2)


def p_agg(pred: Any) -> torch.Tensor:
    """Mean pose over hypotheses: (B, K, H, F, J, 3) -> (B, K, F, J, 3)."""
    pred = _t(pred)
    _check_shapes(pred)
    return pred.mean(2)


def p_best_oracle(pred: Any, gt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle P-Best: per step, the one hypothesis with the lowest mean error over the batch.

    Args:
        pred: (B, K, H, F, J, 3); gt: (B, F, J, 3) (root already zeroed in both).
    Returns:
        poses (B, K, F, J, 3) and the chosen hypothesis per step (K,) (first minimum).
    """
    pred, gt = _t(pred), _t(gt)
    _check_shapes(pred, gt)
    err = joint_errors(pred.double(), gt.double()[:, None, None]).mean(dim=(0, 3, 4))  # (K, H)
    best = err.argmin(dim=1)
    poses = pred[:, torch.arange(pred.shape[1]), best]  # (B, K, F, J, 3)
    return poses, best


def j_best_oracle(pred: Any, gt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle J-Best: per joint, the hypothesis with the lowest 3D error.

    Returns poses (B, K, F, J, 3) and the hypothesis index (B, K, F, J).
    """
    pred, gt = _t(pred), _t(gt)
    _check_shapes(pred, gt)
    index = joint_errors(pred, gt.to(pred.dtype)[:, None, None]).argmin(dim=2)
    return gather_hypotheses(pred, index), index


def reproject(pred: Any, traj: Any, intrinsic: Any) -> torch.Tensor:
    """Project the absolute poses ``pred + traj`` with the full camera model (docs/model.md
    "Cameras and projection").

    Args:
        pred: (B, K, H, F, J, 3) root-relative poses (root zeroed).
        traj: (B, F, 1, 3) ground-truth camera-space root positions, same unit as ``pred``.
        intrinsic: (9,) or (B, 9) [fx, fy, cx, cy, k1, k2, k3, p1, p2]: normalised units give
            normalised screen coordinates (Human3.6M), pixels give pixels (MPI-INF-3DHP).
    Returns:
        (B, K, H, F, J, 2) reprojections, in the prediction's dtype.
    """
    pred = _t(pred)
    _check_shapes(pred)
    traj = _t(traj).to(pred.dtype)
    if traj.ndim != 4 or traj.shape[0] != pred.shape[0] or traj.shape[-1] != 3:
        raise ValueError(f"traj must be (B, F, 1, 3), got {tuple(traj.shape)}")
    cam = _t(intrinsic).to(pred.dtype)
    if cam.shape[-1] != 9 or cam.ndim > 2:
        raise ValueError(f"intrinsic must be (9,) or (B, 9), got {tuple(cam.shape)}")
    if cam.ndim == 2:
        cam = cam[:, None, None, None, None, :]
    return project_to_2d(pred + traj[:, None, None], cam)


def jpma_index(pred: Any, traj: Any, x2d: Any, intrinsic: Any) -> torch.Tensor:
    """JPMA selection: per joint the hypothesis whose reprojection is closest to ``x2d``.

    Args:
        x2d: (B, F, J, 2) the unflipped network input, in the units of ``intrinsic``.
    Returns:
        (B, K, F, J) hypothesis indices (first minimum).
    """
    r = reproject(pred, traj, intrinsic)
    target = _t(x2d).to(r.dtype)
    if tuple(target.shape) != (r.shape[0], *r.shape[3:]):
        raise ValueError(f"x2d must be (B, F, J, 2), got {tuple(target.shape)}")
    dist = torch.linalg.vector_norm(r - target[:, None, None], dim=-1)
    return dist.argmin(dim=2)


def j_agg(pred: Any, traj: Any, x2d: Any, intrinsic: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """J-Agg (JPMA) poses (B, K, F, J, 3) and the chosen hypothesis per joint (B, K, F, J)."""
    index = jpma_index(pred, traj, x2d, intrinsic)
    return gather_hypotheses(pred, index), index


@dataclass
class BatchAggregation:
    """The four aggregations of one batch.

    Attributes:
        poses: aggregation name -> (B, K, F, J, 3) selected poses (root zeroed, input unit).
        errors_mm: ``{p1,p2}_{aggregation}`` -> (K,) float64 mean error of the batch in mm.
        j_agg_index: (B, K, F, J) JPMA hypothesis per joint.
        p_best_index: (K,) the oracle P-Best hypothesis per step.
    """

    poses: dict[str, np.ndarray]
    errors_mm: dict[str, np.ndarray]
    j_agg_index: np.ndarray
    p_best_index: np.ndarray
    frames: int = field(default=0)


def _procrustes_errors(
    pred: np.ndarray, agg_pose: np.ndarray, gt: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint P2 errors of every hypothesis (B,K,H,F,J) and of the mean pose (B,K,F,J).

    Aligned one step at a time (float64) to bound the memory at paper scale.
    """
    gt64 = gt.astype(np.float64)
    b, k, h, f, j, _ = pred.shape
    e2 = np.empty((b, k, h, f, j))
    e2_agg = np.empty((b, k, f, j))
    for step in range(k):
        hyp = pred[:, step].astype(np.float64)  # (B, H, F, J, 3)
        target = np.broadcast_to(gt64[:, None], hyp.shape)
        e2[:, step] = np.linalg.norm(procrustes_align(hyp, target) - target, axis=-1)
        mean = agg_pose[:, step].astype(np.float64)  # (B, F, J, 3)
        e2_agg[:, step] = np.linalg.norm(procrustes_align(mean, gt64) - gt64, axis=-1)
    return torch.from_numpy(e2), torch.from_numpy(e2_agg)


def aggregate_batch(
    pred: Any,
    gt: Any,
    traj: Any,
    x2d: Any,
    intrinsic: Any,
    *,
    root: int = 0,
    unit_to_mm: float = 1000.0,
    protocol2: bool = True,
    mask: Any | None = None,
) -> BatchAggregation:
    """All four aggregations of a batch, with their P1 (and P2) errors per step.

    Args:
        pred: (B, K, H, F, J, 3) sampler output (root not necessarily zeroed).
        gt: (B, F, J, 3) root-relative ground truth.
        traj: (B, F, 1, 3) ground-truth root trajectory (camera space), same unit.
        x2d: (B, F, J, 2) network 2D input in the units of ``intrinsic``.
        intrinsic: (9,) or (B, 9) camera 9-vector.
        root: root joint (0 for Human3.6M, 14 for MPI-INF-3DHP); zeroed before scoring.
        unit_to_mm: factor from the input unit to mm (1000 for metres, 1 for mm).
        protocol2: also compute the Procrustes-aligned (P2) errors.
        mask: optional (B, F) bool frames to score (e.g. 3DHP valid frames); selections still
            use every frame, as the reference does.
    Returns:
        a :class:`BatchAggregation`; ``frames`` is the number of scored frames (B·F unmasked).
    """
    pred = zero_root(pred, root)
    gt = zero_root(gt, root)
    _check_shapes(pred, gt)
    b, k, _, f, j, _ = pred.shape
    m = torch.ones(b, f, dtype=torch.bool) if mask is None else _t(mask).bool()
    if tuple(m.shape) != (b, f):
        raise ValueError(f"mask must be (B, F) = {(b, f)}, got {tuple(m.shape)}")
    frames = int(m.sum())

    def mean_bfj(err: torch.Tensor) -> torch.Tensor:
        # err: (B, K, [H,] F, J) float64 -> mean over masked b, f and all j.
        if err.ndim == 5:  # (B, K, H, F, J)
            w = m.double()[:, None, None, :, None]
            return (err * w).sum(dim=(0, 3, 4)) / (frames * j)
        w = m.double()[:, None, :, None]  # (B, K, F, J)
        return (err * w).sum(dim=(0, 2, 3)) / (frames * j)

    gt64 = gt.double()[:, None, None]
    e = joint_errors(pred.double(), gt64)  # (B, K, H, F, J)
    per_h = mean_bfj(e)  # (K, H), scored frames only
    # The reference picks the P-Best pose on every frame of the batch (valid or not: docs/model.md
    # "Quirks: P-Best per batch").
    p_best_idx = (per_h if mask is None else e.mean(dim=(0, 3, 4))).argmin(dim=1)
    agg_pose = pred.mean(2)
    jpma = jpma_index(pred, traj, x2d, intrinsic)
    jb_idx = joint_errors(pred, gt.to(pred.dtype)[:, None, None]).argmin(dim=2)

    poses = {
        "j_best_oracle": gather_hypotheses(pred, jb_idx),
        "p_best_oracle": pred[:, torch.arange(k), p_best_idx],
        "p_agg": agg_pose,
        "j_agg": gather_hypotheses(pred, jpma),
    }
    errors = {
        "p1_j_best_oracle": mean_bfj(e.gather(2, jb_idx[:, :, None]).squeeze(2)),
        "p1_p_best_oracle": per_h.min(dim=1).values,
        "p1_p_agg": mean_bfj(joint_errors(agg_pose.double(), gt64[:, :, 0])),
        "p1_j_agg": mean_bfj(e.gather(2, jpma[:, :, None]).squeeze(2)),
    }
    if protocol2:
        e2, e2_agg = _procrustes_errors(_np(pred), _np(agg_pose), _np(gt))
        errors.update({
            "p2_j_best_oracle": mean_bfj(e2.min(dim=2).values),
            "p2_p_best_oracle": mean_bfj(e2).min(dim=1).values,
            "p2_p_agg": mean_bfj(e2_agg),
            "p2_j_agg": mean_bfj(e2.gather(2, jpma[:, :, None]).squeeze(2)),
        })
    return BatchAggregation(
        poses={name: _np(p) for name, p in poses.items()},
        errors_mm={name: _np(v).astype(np.float64) * unit_to_mm for name, v in errors.items()},
        j_agg_index=_np(jpma),
        p_best_index=_np(p_best_idx),
        frames=frames,
    )


def evaluate_batch(
    pred: Any,
    gt: Any,
    traj: Any,
    x2d: Any,
    intrinsic: Any,
    *,
    root: int = 0,
    unit_to_mm: float = 1000.0,
    protocol2: bool = True,
) -> dict[str, np.ndarray]:
    """P1/P2 errors (mm) of the four aggregations: ``{"p1_j_agg": (K,), "p2_p_best_oracle": ...}``.

    See :func:`aggregate_batch` for the arguments.
    """
    return aggregate_batch(
        pred, gt, traj, x2d, intrinsic, root=root, unit_to_mm=unit_to_mm, protocol2=protocol2
    ).errors_mm


def aggregate_batch_3dhp(
    pred_mm: Any, gt_mm: Any, traj_mm: Any, x2d: Any, sequence: str, valid: Any | None = None
) -> BatchAggregation:
    """The MPI-INF-3DHP variant (docs/model.md "Aggregations"): root 14, mm, pixel JPMA with the
    sequence's camera.

    Args:
        pred_mm: (B, K, H, F, 17, 3); gt_mm: (B, F, 17, 3); traj_mm: (B, F, 1, 3).
        x2d: (B, F, 17, 2) the network input in normalised screen coordinates; converted back
            to pixels with the sequence's image size as the JPMA target.
        sequence: "TS1".."TS6" (selects the pixel intrinsics and the image size).
        valid: optional (B, F) valid-frame flags: errors over valid frames only.
    """
    cam, w, h = mpi3dhp_test_intrinsic_px(sequence)
    target_px = image_coordinates(_t(x2d), w, h)
    return aggregate_batch(
        pred_mm, gt_mm, traj_mm, target_px, cam, root=14, unit_to_mm=1.0, protocol2=False,
        mask=valid,
    )


__all__ = [
    "AGGREGATIONS",
    "ORACLE",
    "PROTOCOLS",
    "BatchAggregation",
    "aggregate_batch",
    "aggregate_batch_3dhp",
    "evaluate_batch",
    "gather_hypotheses",
    "j_agg",
    "j_best_oracle",
    "jpma_index",
    "p_agg",
    "p_best_oracle",
    "reproject",
    "zero_root",
]
