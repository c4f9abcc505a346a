"""The training-step variants of the benchmark and the ablation: every float32 variant computes
the same step (prediction, loss, gradients, updated weights) up to float32 round-off, bfloat16
autocast stays close, and every switch is restored afterwards."""

from __future__ import annotations

import torch

from ddhpose.bench.train_step import DEFAULT_VARIANT, TRAIN_VARIANTS, StepCase, TrainStep
from ddhpose.model.denoiser import HierarchicalAttention
from ddhpose.model.layers import Attention

CASE = StepCase(width=32, depth=3, frames=9, batch=3, drop_path=0.3)


def _one_step(name: str) -> dict[str, object]:
    step = TrainStep(CASE, seed=4)
    with step.variant(name):
        out = step.forward_backward()
        grads = {n: p.grad.clone() for n, p in step.model.named_parameters()
                 if p.grad is not None}
        step.optimizer.step()
    params = {n: p.detach().clone() for n, p in step.model.named_parameters()}
    attn = [m for m in step.model.modules() if isinstance(m, Attention)]
    restored = (all(m.fused for m in attn) and Attention.unbind_qkv
                and all(m.precomposed_edit for m in attn if isinstance(m, HierarchicalAttention))
                and step.masks.plan is not None and step.autocast is None
                and step.optimizer.param_groups[0]["fused"] is None)
    return {**out, "grads": grads, "params": params, "restored": restored}


def test_float32_variants_compute_the_same_step():
    runs = {name: _one_step(name) for name in TRAIN_VARIANTS}
    ref = runs["original"]
    assert all(r["restored"] for r in runs.values())
    assert set(ref["grads"]) == set(runs[DEFAULT_VARIANT]["grads"])
    for name in TRAIN_VARIANTS[1:-1]:
        run = runs[name]
        assert (run["pred"] - ref["pred"]).abs().max().item() <= 1e-5, name
        assert abs(run["loss"].item() - ref["loss"].item()) <= 1e-5, name
        for key, g in ref["grads"].items():
            torch.testing.assert_close(run["grads"][key], g, rtol=1e-4, atol=1e-6,
                                       msg=f"{name}: {key}")
        for key, p in ref["params"].items():  # the first AdamW step moves by <= lr
            assert (run["params"][key] - p).abs().max().item() <= 2e-4, (name, key)
    bf16 = runs["bf16_autocast"]
    dev = (bf16["pred"] - ref["pred"]).abs().max().item()
    assert 0.0 < dev < 0.05
    assert abs(bf16["loss"].item() - ref["loss"].item()) < 0.02 * ref["loss"].item()


def test_original_variant_draws_masks_inside_the_forward():
    step = TrainStep(CASE, seed=0)
    with step.variant("original"):
        assert step.masks.plan is None
        step()
    with step.variant("predrawn_masks"):
        assert step.masks.plan == step.plan and len(step.plan) == 8
        step()
    assert step.steps == 2
