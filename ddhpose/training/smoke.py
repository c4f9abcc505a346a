"""A tiny, self-contained training run (a real subprocess for the tests, also under torchrun).

    python -m ddhpose.training.smoke --out DIR [--params params.yaml] [--epochs 3] [--dataset h36m]
    torchrun --standalone --nproc_per_node 2 -m ddhpose.training.smoke --out DIR

Builds a deterministic tiny split (:func:`ddhpose.synthetic.smoke.synthetic_split`) and trains a
tiny model on it with
:func:`ddhpose.training.train`; prints one JSON line with the result on rank 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import yaml

from ddhpose.model.config import ModelConfig
from ddhpose.synthetic.smoke import LAYOUTS, synthetic_split
from ddhpose.training.config import TrainConfig
from ddhpose.training.loop import train


def tiny_model_config(dataset: str = "h36m", drop_path: float = 0.0) -> ModelConfig:
    """Width 16, depth 2, 2 heads, 9 frames."""
    return ModelConfig(dataset=dataset, width=16, depth=2, heads=2, mlp_ratio=2.0, frames=9,
                       timesteps=1000, scale=1.0, drop_path=drop_path, xc_layout="reference")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="params file whose train section the run shrinks (default params.yaml)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dataset", default="h36m", choices=sorted(LAYOUTS))
    ap.add_argument("--drop-path", type=float, default=0.0)
    ap.add_argument("--batch-clips", type=int, default=4)
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="train.device (auto | cpu | cuda)")
    ap.add_argument("--amp", default="off", help="train.amp (off | fp16 | bf16 | auto)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    split = synthetic_split(args.dataset, args.sequences, args.frames, seed=0)
    val = synthetic_split(args.dataset, 2, args.frames, seed=1,
                          invalid_every=3 if args.dataset == "3dhp" else 0)
    base = TrainConfig(**yaml.safe_load(args.params.read_text(encoding="utf-8"))["train"])
    cfg = dataclasses.replace(base, epochs=args.epochs, batch_clips=args.batch_clips, lr=args.lr,
                              checkpoint_every=1, validate=not args.no_validate,
                              device=args.device, amp=args.amp)
    result = train(tiny_model_config(args.dataset, args.drop_path), cfg, split, val, args.out)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"epochs_done": result.epochs_done, "epochs_run": result.epochs_run,
                          "best_val_mpjpe_mm": result.best_val_mpjpe_mm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
