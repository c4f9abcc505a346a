"""The speed-ablation variants: every float32 configuration computes the same samples (so the
ablation compares like with like), bfloat16 stays close, and settings are restored."""

from __future__ import annotations

import torch
from demo_config import demo_model

from ddhpose.bench.ablation import VARIANTS, _sample, render_ablation, run_ablation, variant
from ddhpose.model import DDHPose
from ddhpose.model import fused as fused_mod


def test_variants_sample_the_same_poses_and_restore_settings():
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
    x2d = torch.randn(2, 9, 17, 2, generator=torch.Generator().manual_seed(1))
    chunk, min_width = model.chunk_elements, fused_mod.FUSE_MIN_WIDTH
    outs = {}
    for name in VARIANTS:
        with variant(model, name) as opts:
            torch.manual_seed(5)  # the same initial noise for every variant
            outs[name] = _sample(model, x2d, 3, **opts)
    assert model.chunk_elements == chunk and min_width == fused_mod.FUSE_MIN_WIDTH
    assert all(m.fused for m in model.modules() if hasattr(m, "fused"))
    ref = outs["onednn"]
    assert ref.shape == (2, 1, 3, 9, 17, 3)
    for name in VARIANTS[:-1]:
        assert (outs[name] - ref).abs().max().item() <= 1e-5, name
    dev = (outs["bfloat16"] - ref).abs().max().item()
    assert 0.0 < dev < 0.1


def test_run_ablation_tiny():
    result = run_ablation(cases=((1, 9, 2),), threads=1, log=lambda _m: None, width=16, depth=2)
    assert [r["variant"] for r in result["rows"]] == list(VARIANTS)
    assert all(r["seconds"] > 0 and r["gflop"] > 0 for r in result["rows"])
    assert result["rows"][1]["step_speedup"] > 0 and result["rows"][0]["step_speedup"] is None
    text = render_ablation(result)
    assert "| B=1,F=9,H=2 | baseline |" in text and "width 16, depth 2" in text


def test_train_ablation_tiny():
    from ddhpose.bench.ablation import run_train_ablation
    from ddhpose.bench.train_step import TRAIN_VARIANTS

    rows = run_train_ablation(cases=((16, 2, 9),), repeats=1, log=lambda _m: None)
    assert [r["variant"] for r in rows] == list(TRAIN_VARIANTS)
    assert rows[0]["vs_first"] is None and all(r["vs_first"] > 0 for r in rows[1:])
    assert rows[-1]["dtype"] == "bfloat16" and rows[0]["dtype"] == "float32"
    result = run_ablation(cases=(), threads=1, log=lambda _m: None, width=16, depth=2)
    result["training"] = rows
    text = render_ablation(result)
    assert "| 16, 2, 9 | original | float32 |" in text and "| hrst_op |" in text
