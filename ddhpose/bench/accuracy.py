"""The accuracy cost of bfloat16 inference, for the benchmark (:mod:`ddhpose.bench.suite`):
deviations from float32 on the reference-parity fixtures and a paper-size model, and the MPJPE
change on a trained model's test set (:func:`demo_test_accuracy`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.bench.plan import bench_model
from ddhpose.evaluation.metrics import joint_errors, mpjpe
from ddhpose.model.ddhpose import DDHPose
from ddhpose.project import shared_dir


def _mpjpe_mm(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """MPJPE (mm) of (..., F, J, 3) predictions, roots zeroed, vs GT broadcastable to them."""
    p = pred - pred[..., :1, :]
    return float(mpjpe(p, gt.expand_as(p))) * 1000.0


def bf16_accuracy(big: DDHPose | None, device: torch.device) -> dict[str, Any]:
    """Cost of ``dtype=torch.bfloat16``: max deviations from float32 and the MPJPE change.

    On the reference-parity fixtures (small model, recorded inputs and noise) when present; and
    on ``big`` (e.g. the paper-size model, random init) for one denoiser pass on random inputs.
    """
    out: dict[str, Any] = {}
    parity = shared_dir() / "fixtures" / "reference_parity" / "small"
    if not (parity / "state_dict.pt").exists():
        print(f"bench: bfloat16 parity rows skipped: no {parity / 'state_dict.pt'} (set "
              "DDHPOSE_SHARED to the folder holding fixtures/)", file=sys.stderr)
    else:
        model = DDHPose(bench_model(64, 3, 27))
        model.load_state_dict(torch.load(parity / "state_dict.pt", weights_only=True))
        model = model.to(device).eval()
        den = torch.load(parity / "denoiser_eval_layout.pt", weights_only=True)
        args = [den[k].to(device) for k in ("x_2d", "x_3d_dir", "x_3d_bone", "t")]
        with torch.inference_mode():
            y32 = model.denoise(*args)
            y16 = model.denoise(*args, dtype=torch.bfloat16)
        out["parity_denoiser_max_abs_dev"] = float((y16 - y32).abs().max())
        out["parity_denoiser_mean_abs_output"] = float(y32.abs().mean())
        inputs = torch.load(parity / "inputs.pt", weights_only=True)
        case = torch.load(parity / "sample_H3_K4.pt", weights_only=True)
        gt = inputs["inputs_3d"].to(device)
        preds = {}
        for name, dt in (("float32", None), ("bfloat16", torch.bfloat16)):
            preds[name] = model.sample(inputs["inputs_2d"].to(device), 3, 4,
                                       noise=[n.to(device) for n in case["noise"]], dtype=dt)
        out["parity_sample_max_abs_dev_m"] = float((preds["bfloat16"] - preds["float32"])
                                                   .abs().max())
        last = {k: v[:, -1] for k, v in preds.items()}  # (B, H, F, J, 3)
        out["parity_sample_mpjpe_mm"] = {
            k: _mpjpe_mm(v, gt[:, None]) for k, v in last.items()}
        out["parity_sample_mpjpe_change_mm"] = (out["parity_sample_mpjpe_mm"]["bfloat16"]
                                                - out["parity_sample_mpjpe_mm"]["float32"])
        out["parity_note"] = ("small fixture model (random weights, width 64, depth 3), "
                              "H=3, K=4, recorded noise; MPJPE of the last step, all "
                              "hypotheses, vs inputs_3d")
    if big is not None:
        cfg = big.config
        g = torch.Generator().manual_seed(1)
        f = cfg.frames
        x2d = torch.randn(2, f, 17, 2, generator=g).to(device)
        d = torch.randn(2, 1, f, 17, 3, generator=g).to(device)
        ln = torch.randn(2, 1, f, 17, 1, generator=g).to(device)
        t = torch.tensor([999, 500], device=device)
        with torch.inference_mode():
            y32 = big.denoise(x2d, d, ln, t)
            y16 = big.denoise(x2d, d, ln, t, dtype=torch.bfloat16)
        out["model_width"], out["model_depth"], out["model_frames"] = cfg.width, cfg.depth, f
        out["model_denoiser_max_abs_dev"] = float((y16 - y32).abs().max())
        out["model_denoiser_mean_abs_output"] = float(y32.abs().mean())
    return out


def demo_test_accuracy(checkpoint: str | Path = "models/best.pt",
                       test_split: str | Path = "data/processed/test.npz", *,
                       hypotheses: int = 5, steps: int = 2, batch_clips: int = 4,
                       seed: int = 0) -> dict[str, Any]:
    """MPJPE change of ``dtype=torch.bfloat16`` on a trained model's test set (the demo pipeline's
    ``models/best.pt`` and ``data/processed/test.npz`` by default): the whole sample/evaluate
    protocol run twice with the same seed, float32 then bfloat16. Empty when either file is
    missing (run ``dvc repro`` first).

    Returns the last-step P1/P2 of every aggregation per dtype (mm), their changes, the max
    per-joint distance between the two dtypes' P-Agg and J-Agg poses (mean, 99th percentile, max;
    mm — J-Agg picks one hypothesis per joint, so a changed pick moves a joint by the spread of
    the hypotheses) and the sampling seconds of each dtype.
    """
    from ddhpose.data.processed import load_split
    from ddhpose.evaluation.predict import predict_split
    from ddhpose.evaluation.report import h36m_tables, per_step_dict
    from ddhpose.model.checkpoint import load_model

    ckpt, test = Path(checkpoint), Path(test_split)
    if not (ckpt.exists() and test.exists()):
        return {}
    split = load_split(test)
    if split.dataset != "h36m":
        return {}
    model = load_model(ckpt, dataset=split.dataset, map_location="cpu").eval()
    out: dict[str, Any] = {"checkpoint": str(ckpt), "test_split": str(test),
                           "frames": split.num_frames, "hypotheses": hypotheses, "steps": steps,
                           "width": model.config.width, "depth": model.config.depth,
                           "mm": {}, "seconds": {}}
    poses = {}
    for name, dt in (("float32", None), ("bfloat16", torch.bfloat16)):
        pred = predict_split(model, split, hypotheses=hypotheses, steps=steps,
                             batch_clips=batch_clips, dtype=dt,
                             generator=torch.Generator().manual_seed(seed))
        steps_mm = per_step_dict(h36m_tables(split, pred).summary)
        out["mm"][name] = {k: v[-1] for k, v in steps_mm.items()}
        out["seconds"][name] = pred.seconds
        poses[name] = {a: pred.poses[a][:, -1] for a in ("p_agg", "j_agg")}  # (T, J, 3) m
    out["change_mm"] = {k: out["mm"]["bfloat16"][k] - v for k, v in out["mm"]["float32"].items()}
    out["joint_deviation_mm"] = {}
    for agg in ("p_agg", "j_agg"):  # per-joint distance between the two dtypes' poses
        dist = joint_errors(poses["bfloat16"][agg], poses["float32"][agg]) * 1000
        out["joint_deviation_mm"][agg] = {"mean": float(dist.mean()),
                                          "p99": float(np.percentile(dist, 99)),
                                          "max": float(dist.max())}
    return out


__all__ = ["bf16_accuracy", "demo_test_accuracy"]
