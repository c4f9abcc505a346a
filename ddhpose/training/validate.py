"""End-of-epoch validation (docs/model.md "Validation"): H = 1, K = 1 sampling over the
evaluation clips (docs/model.md "Clip cutting").

Metric: MPJPE in mm after zeroing the root of prediction and ground truth, frame-weighted: the
sum of per-frame errors over every clip frame divided by the number of clip frames. The last clip
of a sequence is its last F frames, so frames it shares with the previous clip are counted twice,
as in the reference. For 3DHP only valid frames count (split ``valid`` flags, clipped the same way).

The sampler noise of batch i comes from a generator seeded from ``(seed, epoch, i)``; batches are
dealt round-robin to the ranks and the sums all-reduced, so the value does not depend on the number
of ranks, and validation never touches the global RNG (training is identical with or without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ddhpose.model.transfer import to_device
from ddhpose.training.distributed import DistInfo, all_reduce_sum
from ddhpose.training.state import seeded_generator

_VAL_STREAM = 3


@dataclass(frozen=True)
class EvalBatch:
    """Evaluation clips of one sampler call.

    Attributes:
        x2d / x2d_flip: (b, F, J, 2) normalised 2D input and its flipped copy.
        x3d: (b, F, J, 3) root-relative ground truth in metres (root joint zeroed or not).
        valid: (b, F) bool, frames that are scored.
    """

    x2d: Tensor
    x2d_flip: Tensor
    x3d: Tensor
    valid: Tensor


def frame_errors_mm(pred_m: Tensor, target_m: Tensor, root: int) -> Tensor:
    """Per-frame MPJPE in mm of (b, F, J, 3) metres after zeroing ``root`` -> (b, F) float64."""
    pred = pred_m.double().clone()
    gt = target_m.double().clone()
    pred[..., root, :] = 0.0
    gt[..., root, :] = 0.0
    return torch.linalg.vector_norm(pred - gt, dim=-1).mean(dim=-1) * 1000.0


@torch.no_grad()
def validation_mpjpe(
    model: nn.Module,
    batches: Sequence[EvalBatch],
    *,
    root: int,
    seed: int,
    epoch: int,
    info: DistInfo,
) -> float:
    """Frame-weighted MPJPE (mm) of one-step, one-hypothesis sampling over ``batches``.

    ``model`` is the bare DDHPose (not the DDP wrapper); it takes and returns metres ×
    ``model.unit_scale``. Returns NaN when no frame is valid.
    """
    was_training = model.training
    model.eval()
    scale = float(getattr(model, "unit_scale", 1.0))
    sums = torch.zeros(2, dtype=torch.float64)
    try:
        for i, batch in enumerate(batches):
            if i % info.world_size != info.rank:
                continue
            gen = seeded_generator(seed, epoch, i, _VAL_STREAM)
            x2d = to_device(batch.x2d, info.device, torch.float32)
            x2d_flip = to_device(batch.x2d_flip, info.device, torch.float32)
            out = model.sample(x2d, hypotheses=1, steps=1, generator=gen, x2d_flip=x2d_flip)
            pred = out[:, -1, 0].float().cpu() / scale  # (b, F, J, 3) metres
            err = frame_errors_mm(pred, batch.x3d.cpu(), root)
            valid = batch.valid.cpu().bool()
            sums[0] += err[valid].sum()
            sums[1] += valid.sum()
    finally:
        model.train(was_training)
    sums = all_reduce_sum(sums.to(info.device if info.device.type == "cuda" else "cpu"), info)
    total, frames = float(sums[0]), float(sums[1])
    return total / frames if frames > 0 else float("nan")
