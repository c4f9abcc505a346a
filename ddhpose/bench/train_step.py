"""One training step as the benchmark and the ablation time it, in switchable variants.

A step is what :mod:`ddhpose.training.loop` does per batch: the drop-path masks of the step
(:class:`~ddhpose.training.draws.GlobalDropPath`), the train-mode forward (one t and the noise
per clip from a CPU generator), the three losses, the loss-scaled backward and one AdamW step.

Variants, cumulative (each switches one change on over the previous one):

1. ``original``: the original code's structure, written by us: drop-path masks drawn inside the
   forward, one draw per call; the HRST score edit as a python loop of in-place slice updates;
   attention with explicit score matrices everywhere; q, k, v split with three selects (three
   zero-filled gradients in backward); plain ``nn.Linear``; AdamW's per-tensor loop;
2. ``predrawn_masks``: all masks of the step drawn at once before the forward, handed out as
   slices of one buffer;
3. ``hrst_op``: the HRST edit as one precomposed gather + matmul + scatter per block;
4. ``sdpa``: ``scaled_dot_product_attention`` (fused forward and backward kernels) wherever the
   scores are not edited and the token axis is long enough for it to pay
   (:attr:`ddhpose.model.layers.Attention.sdpa_min_tokens_grad`: the 243-frame temporal blocks,
   not the 17-joint spatial blocks or 27-frame clips);
5. ``unbind_qkv``: q, k, v split with ``unbind`` (one stacked gradient);
6. ``adamw``: AdamW ``fused=True`` on the CPU/CUDA where torch has it (else ``foreach=True``);
7. ``onednn_linear``: the blocks' float32 linear layers in training through oneDNN with a
   hand-written backward (:mod:`ddhpose.model.linear_grad`); the default of
   :func:`ddhpose.training.loop.train`;
8. ``keep_memory``: freed memory kept in glibc's heap for the next step
   (:func:`ddhpose.training.memory.keep_freed_memory`, which :func:`ddhpose.training.loop.train`
   switches on with ``train.reuse_host_memory: true``) instead of a fresh ``mmap`` (page faults,
   zero-filling) per large tensor: faster, but a higher peak RSS;
9. ``bf16_autocast``: the same step under ``torch.autocast(device, bfloat16)``.

Float32 variants compute the same values up to float32 round-off (``tests/bench``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ddhpose.bench.plan import bench_model
from ddhpose.model import DDHPose
from ddhpose.model.denoiser import HierarchicalAttention
from ddhpose.model.layers import Attention, set_drop_path_mask_fn
from ddhpose.model.linear_grad import OneDNNLinear
from ddhpose.model.losses import backward_loss, pose_losses
from ddhpose.training.draws import GlobalDropPath
from ddhpose.training.memory import keep_freed_memory
from ddhpose.training.optimizer import adamw_options

TRAIN_VARIANTS = ("original", "predrawn_masks", "hrst_op", "sdpa", "unbind_qkv", "adamw",
                  "onednn_linear", "keep_memory", "bf16_autocast")
#: the variant that equals the default training path (float32); ``keep_memory`` is the default
#: plus ``train.reuse_host_memory: true``
DEFAULT_VARIANT = "onednn_linear"


@dataclass(frozen=True)
class StepCase:
    """A training-step size: width C, depth L, frames F, batch B clips, drop-path rate."""

    width: int = 512
    depth: int = 8
    frames: int = 243
    batch: int = 4
    drop_path: float = 0.1


class TrainStep:
    """A model, its AdamW and a fixed batch; :meth:`__call__` runs one step in the variant set
    with :meth:`variant`. Weights change with every step (lr 1e-4), as in training."""

    def __init__(self, case: StepCase, device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.case = case
        self.device = torch.device(device)
        torch.manual_seed(seed)
        cfg = bench_model(case.width, case.depth, case.frames, drop_path=case.drop_path)
        self.model = DDHPose(cfg).to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1)
        g = torch.Generator().manual_seed(seed)
        self.x2d = torch.randn(case.batch, case.frames, 17, 2, generator=g).to(self.device)
        x3d = torch.randn(case.batch, case.frames, 17, 3, generator=g) * 0.2
        x3d[..., 0, :] = 0.0
        self.x3d = x3d.to(self.device)
        self.plan = self.model.dir_bone_estimator.drop_path_plan()
        self.masks = GlobalDropPath(self.plan, device=self.device)
        self.autocast: torch.dtype | None = None
        self.steps = 0

    @contextlib.contextmanager
    def variant(self, name: str) -> Iterator[None]:
        """Switch the model, the mask provider and the optimizer to ``name`` (cumulative, see
        the module docstring); restored afterwards."""
        level = TRAIN_VARIANTS.index(name)
        on = {v: level >= TRAIN_VARIANTS.index(v) for v in TRAIN_VARIANTS}
        attn = [m for m in self.model.modules() if isinstance(m, Attention)]
        saved = ([(m, m.fused) for m in attn],
                 [(m, m.precomposed_edit) for m in attn if isinstance(m, HierarchicalAttention)],
                 Attention.unbind_qkv, self.masks.plan,
                 [dict(g) for g in self.optimizer.param_groups], self.autocast,
                 OneDNNLinear.enabled)
        try:
            for m in attn:
                m.fused = on["sdpa"]
                if isinstance(m, HierarchicalAttention):
                    m.precomposed_edit = on["hrst_op"]
            Attention.unbind_qkv = on["unbind_qkv"]
            self.masks.plan = self.plan if on["predrawn_masks"] else None
            opts = adamw_options(self.device) if on["adamw"] else {}
            for g in self.optimizer.param_groups:
                g["fused"], g["foreach"] = opts.get("fused"), opts.get("foreach")
            self.autocast = torch.bfloat16 if on["bf16_autocast"] else None
            OneDNNLinear.enabled = on["onednn_linear"]
            keep_freed_memory(on["keep_memory"])
            yield
        finally:
            for m, v in saved[0]:
                m.fused = v
            for m, v in saved[1]:
                m.precomposed_edit = v
            Attention.unbind_qkv = saved[2]
            self.masks.plan = saved[3]
            for g, old in zip(self.optimizer.param_groups, saved[4], strict=True):
                g["fused"], g["foreach"] = old["fused"], old["foreach"]
            self.autocast = saved[5]
            OneDNNLinear.enabled = saved[6]
            keep_freed_memory(False)

    def forward_backward(self) -> dict[str, Any]:
        """Masks, forward, losses, loss-scaled backward (no optimizer step); returns the
        prediction and the loss (detached)."""
        self.masks.start_epoch(seed=1, epoch=self.steps)
        self.masks.set_batch(self.case.batch, 0, self.case.batch)
        set_drop_path_mask_fn(self.model, self.masks)
        gen = torch.Generator().manual_seed(self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
               else contextlib.nullcontext())
        with ctx:
            pred = self.model(self.x2d, self.x3d, generator=gen)
        total = pose_losses(pred, self.x3d, self.model.skeleton)["total"]
        backward_loss(total)
        return {"pred": pred.detach(), "loss": total.detach()}

    def __call__(self) -> float:
        """One full step; returns the loss."""
        out = self.forward_backward()
        self.optimizer.step()
        self.steps += 1
        return float(out["loss"])


def training_step_fn(case: StepCase, variant: str, device: torch.device | str = "cpu"
                     ) -> Callable[[], float]:
    """A fresh :class:`TrainStep` fixed to one variant (for single-variant timing)."""
    step = TrainStep(case, device)

    def run() -> float:
        with step.variant(variant):
            return step()

    return run


__all__ = ["DEFAULT_VARIANT", "TRAIN_VARIANTS", "StepCase", "TrainStep", "training_step_fn"]
