"""The accuracy cost of bfloat16 autocast training on the CPU: the demo trained twice with the same
seed and the same draws, once with ``train.amp: off`` (float32) and once with ``train.amp: bf16``
(the denoiser under ``torch.autocast("cpu", dtype=torch.bfloat16)``; losses, AdamW and the
master weights stay float32; validation runs in the training precision, as in ``dvc repro``),
from ``params.yaml`` and ``data/processed``, through the training loop users run.

Writes ``reports/amp_training.{json,md,png}``: validation MPJPE per epoch of both runs, the change
after the last epoch, the seconds per epoch, and both per-step loss curves in one plot.
Entry point: ``python -m ddhpose.bench.amp_training [--params params.yaml] [--out reports]
[--epochs N]`` (about two demo trainings long).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.io import atomic_open, write_json

MODES = ("float32", "bfloat16")


@contextlib.contextmanager
def recorded_step_losses(into: list[float]) -> Iterator[None]:
    """Append the total loss of every training step to ``into``."""
    from ddhpose.training import loop

    original = loop.pose_losses

    def record(*args: Any, **kw: Any) -> dict[str, torch.Tensor]:
        out = original(*args, **kw)
        into.append(float(out["total"].detach()))
        return out

    loop.pose_losses = record  # type: ignore[assignment]
    try:
        yield
    finally:
        loop.pose_losses = original  # type: ignore[assignment]


#: ``train.amp`` of each mode
AMP = {"float32": "off", "bfloat16": "bf16"}


def run_configs(params_path: Path, epochs: int | None, mode: str) -> tuple[Any, Any]:
    """(model config, train config) of one run: the params' own, on the CPU, no periodic
    checkpoints, ``train.amp`` = :data:`AMP` [mode]."""
    import dataclasses

    from ddhpose.config.schema import load_params
    from ddhpose.model.config import ModelConfig

    params = load_params(params_path)
    cfg = dataclasses.replace(params.train, device="cpu", checkpoint_every=0, amp=AMP[mode],
                              epochs=epochs if epochs is not None else params.train.epochs)
    return ModelConfig.from_params(params.data.dataset, params.model).validate(), cfg


def train_one(mode: str, params_path: Path, data_dir: Path, epochs: int | None = None
              ) -> dict[str, Any]:
    """One demo training in ``mode`` (``float32`` or ``bfloat16``): history, per-step losses,
    seconds."""
    from ddhpose.data.processed import load_split
    from ddhpose.training.loop import train

    model_cfg, cfg = run_configs(params_path, epochs, mode)
    train_split, val_split = load_split(data_dir / "train.npz"), load_split(data_dir / "test.npz")
    steps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, recorded_step_losses(steps):
        t0 = time.perf_counter()
        result = train(model_cfg, cfg, train_split, val_split, Path(tmp), resume=False)
        seconds = time.perf_counter() - t0
    return {"history": result.history, "step_losses": steps, "seconds": seconds,
            "val_mpjpe_mm": [r["val_mpjpe_mm"] for r in result.history]}


def combine(runs: dict[str, Any], params_path: Path, epochs: int | None = None
            ) -> dict[str, Any]:
    """The JSON-able comparison of the two runs of :func:`train_one`."""
    import dataclasses

    model_cfg, cfg = run_configs(params_path, epochs, "float32")
    for run in runs.values():
        run["first_nonfinite_step"] = next(
            (i + 1 for i, v in enumerate(run["step_losses"]) if not np.isfinite(v)), None)
    f32, bf16 = (runs[m]["val_mpjpe_mm"][-1] for m in MODES)
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "model": dataclasses.asdict(model_cfg), "train": cfg.as_dict(),
            "runs": runs, "final_val_mpjpe_mm": {"float32": f32, "bfloat16": bf16},
            "final_change_percent": 100.0 * (bf16 - f32) / f32}


def run_amp_training(params_path: Path, data_dir: Path, epochs: int | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the params' model twice (float32, bfloat16 autocast); returns the JSON-able
    comparison."""
    runs: dict[str, Any] = {}
    for mode in MODES:
        runs[mode] = train_one(mode, params_path, data_dir, epochs)
        log(f"{mode}: validation MPJPE per epoch "
            + ", ".join(f"{v:.2f}" for v in runs[mode]["val_mpjpe_mm"])
            + f" mm, {runs[mode]['seconds']:.0f} s")
    return combine(runs, params_path, epochs)


def plot_losses(result: dict[str, Any], path: Path) -> Path:
    """Per-step total loss of both runs (thin) with a moving average (thick), one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for mode, color in zip(MODES, ("tab:blue", "tab:orange"), strict=True):
        y = np.asarray(result["runs"][mode]["step_losses"], dtype=float)
        x = np.arange(1, len(y) + 1)
        ax.plot(x, y, color=color, alpha=0.25, lw=0.6)
        k = max(1, len(y) // 50)
        if len(y) >= k:
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(x[k - 1:], smooth, color=color, lw=1.8,
                    label=f"{mode} (moving mean of {k} steps); final val MPJPE "
                          f"{result['final_val_mpjpe_mm'][mode]:.2f} mm")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("total loss")
    ax.set_title("Demo training: float32 vs bfloat16 autocast (same seed and draws)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def render(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = ["# bfloat16 autocast training on the CPU: accuracy cost", "",
             f"{result['created']} · torch {result['torch']} · {result['threads']} threads · "
             f"model width {result['model']['width']}, depth {result['model']['depth']}, "
             f"{result['model']['frames']} frames · {result['train']['epochs']} epochs, seed "
             f"{result['train']['seed']} (both runs: same seed, same draws; validation "
             "H=1, K=1 in each run's precision).", "",
             "| epoch | val MPJPE float32 (mm) | val MPJPE bfloat16 (mm) | s float32 | "
             "s bfloat16 |", "|---|---|---|---|---|"]
    for a, b in zip(runs["float32"]["history"], runs["bfloat16"]["history"], strict=True):
        lines.append(f"| {a['epoch']} | {a['val_mpjpe_mm']:.2f} | {b['val_mpjpe_mm']:.2f} | "
                     f"{a['seconds']:.0f} | {b['seconds']:.0f} |")
    lines += ["", f"Change after the last epoch: **{result['final_change_percent']:+.2f} %** "
              "(bfloat16 vs float32). Loss curves: `amp_training.png`.", ""]
    for mode in MODES:
        step = runs[mode].get("first_nonfinite_step")
        if step:
            lines += [f"**The {mode} run diverged**: the training loss is not finite from step "
                      f"{step} of {len(runs[mode]['step_losses'])} on, and the weights are "
                      "(the float32 validation after it gives nan).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ddhpose.bench.amp_training")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--data", type=Path, default=Path("data/processed"),
                    help="directory of train.npz and test.npz (default data/processed)")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--epochs", type=int, default=None, help="default: train.epochs")
    args = ap.parse_args(argv)
    for name in ("train.npz", "test.npz"):
        if not (args.data / name).is_file():
            print(f"ddhpose amp_training: error: {args.data / name} not found (run `dvc repro "
                  "preprocess` first)", file=sys.stderr)
            return 2
    result = run_amp_training(args.params, args.data, args.epochs,
                              log=lambda m: print(m, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "amp_training.json", result)
    plot_losses(result, args.out / "amp_training.png")
    with atomic_open(args.out / "amp_training.md", "w", encoding="utf-8") as fh:
        fh.write(render(result))
    print(f"wrote {args.out / 'amp_training.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
