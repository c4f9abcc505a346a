"""Training losses (docs/model.md "Losses"): MPJPE + bone-length MSE + bone-direction squared
distance.

Unit-agnostic: the losses are computed in whatever unit the tensors carry. The reference trains
Human3.6M in metres and MPI-INF-3DHP in millimetres (its model outputs mm: docs/model.md
"Quirks: 3DHP units"), so for 3DHP pass mm tensors (the model's ``forward`` output and the mm ground
truth) to follow it: MPJPE in mm, length term in mm², direction term unitless.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddhpose.skeleton import Skeleton, joints_to_bones


def pose_losses(
    pred: Tensor, target: Tensor, skel: Skeleton, w_len: float = 1.0, w_dir: float = 1.0
) -> dict[str, Tensor]:
    """Losses of a predicted pose batch against its ground truth.

    Args:
        pred, target: (B, F, J, 3) root-relative poses (root included; GT root = 0).
    Returns:
        dict of scalars: ``pos`` = mean_{b,f,j} ‖pred − target‖₂;
        ``length`` = w_len · mean_{b,k} (mean_f l_k(target) − mean_f l_k(pred))²;
        ``dir`` = w_dir · mean_{b,f,k} Σ_xyz (d_k(target) − d_k(pred))²;
        ``total`` = pos + length + dir.
    """
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"pred and target must both be (B,F,J,3), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    pos = torch.mean(torch.norm(pred - target, dim=-1))
    d_gt, l_gt = joints_to_bones(target, skel)
    d_pr, l_pr = joints_to_bones(pred, skel)
    length = w_len * torch.mean((l_gt.mean(dim=1) - l_pr.mean(dim=1)) ** 2)
    direction = w_dir * torch.mean(torch.sum((d_gt - d_pr) ** 2, dim=-1))
    return {"total": pos + length + direction, "pos": pos, "length": length, "dir": direction}


def backward_loss(total: Tensor, loss_scaled_grad: bool = True) -> None:
    """Back-propagate ``total``.

    ``loss_scaled_grad=True`` reproduces the reference's ``total.backward(total.detach())``: every
    gradient is multiplied by the loss value (the gradient of ½·total²). ``False`` is the plain
    ``total.backward()``.
    """
    if loss_scaled_grad:
        total.backward(total.detach())
    else:
        total.backward()


__all__ = ["backward_loss", "pose_losses"]
