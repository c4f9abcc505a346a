"""A tiny, self-contained training run (a real subprocess for the tests, also under torchrun).

    python -m ddhpose.training.smoke --out DIR [--epochs 3] [--dataset h36m] [--drop-path 0.1]
    torchrun --standalone --nproc_per_node 2 -m ddhpose.training.smoke --out DIR

Builds a deterministic synthetic split (random-walk bone directions, fixed bone lengths, a
pinhole projection to normalised 2D) and trains a tiny model on it with
:func:`ddhpose.training.train`; prints one JSON line with the result on rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ddhpose.data.processed import ProcessedSplit, concat_sequences
from ddhpose.model import ModelConfig
from ddhpose.skeleton import Skeleton, get_skeleton
from ddhpose.training.config import TrainConfig
from ddhpose.training.loop import train

_LAYOUT = {"h36m": "h36m17", "3dhp": "3dhp17"}


def _forward_kinematics(bones: np.ndarray, skel: Skeleton) -> np.ndarray:
    """Bone vectors (N, 16, 3) in bone order -> joints (N, J, 3), root at 0 (any bone order)."""
    pos: dict[int, np.ndarray] = {skel.root: np.zeros((bones.shape[0], 3))}
    pending = list(enumerate(skel.bones))
    while pending:
        rest = []
        for k, (p, c) in pending:
            if p in pos:
                pos[c] = pos[p] + bones[:, k]
            else:
                rest.append((k, (p, c)))
        pending = rest
    return np.stack([pos[j] for j in range(skel.num_joints)], axis=1)


def synthetic_split(
    dataset: str = "h36m", sequences: int = 4, frames: int = 30, seed: int = 0,
    invalid_every: int = 0,
) -> ProcessedSplit:
    """A small split of smooth random poses: ``sequences`` × ``frames`` frames.

    Bone lengths are fixed per sequence (0.1–0.45 m), unit directions random-walk; the root sits
    4 m in front of a normalised pinhole camera (f = 2). ``invalid_every`` > 0 marks every n-th
    frame invalid (3DHP-style valid flags).
    """
    skel = get_skeleton(_LAYOUT[dataset])
    rs = np.random.RandomState(seed)
    parts = []
    for s in range(sequences):
        lengths = rs.uniform(0.1, 0.45, size=(1, skel.num_bones, 1))
        base = rs.randn(1, skel.num_bones, 3)
        walk = base + np.cumsum(rs.randn(frames, skel.num_bones, 3) * 0.05, axis=0)
        dirs = walk / np.linalg.norm(walk, axis=-1, keepdims=True)
        pose = _forward_kinematics(dirs * lengths, skel)  # root at 0
        traj = np.stack([np.zeros(frames), np.zeros(frames), np.full(frames, 4.0)], axis=-1)
        traj[:, 0] += np.cumsum(rs.randn(frames) * 0.01)
        absolute = pose + traj[:, None, :]
        uv = 2.0 * absolute[..., :2] / absolute[..., 2:3]
        valid = np.ones(frames, bool)
        if invalid_every > 0:
            valid[::invalid_every] = False
        parts.append({
            "pose_2d": uv.astype(np.float32), "pose_3d": pose.astype(np.float32),
            "traj": traj.astype(np.float32), "valid": valid,
            "activity": np.zeros(frames, np.int16), "seq_name": f"SYN{s}",
            "seq_subject": "SYN", "seq_action": f"Act{s % 2}", "seq_camera": 0,
            "intrinsic": np.array([2, 2, 0, 0, 0, 0, 0, 0, 0], np.float32),
            "intrinsic_px": np.array([500, 500, 500, 500, 0, 0, 0, 0, 0], np.float32),
            "res": (1000, 1000),
        })
    return concat_sequences(parts, dataset, _LAYOUT[dataset])


def tiny_model_config(dataset: str = "h36m", drop_path: float = 0.0) -> ModelConfig:
    """Width 16, depth 2, 2 heads, 9 frames."""
    return ModelConfig(dataset=dataset, width=16, depth=2, heads=2, mlp_ratio=2.0, frames=9,
                       drop_path=drop_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dataset", default="h36m", choices=sorted(_LAYOUT))
    ap.add_argument("--drop-path", type=float, default=0.0)
    ap.add_argument("--batch-clips", type=int, default=4)
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    split = synthetic_split(args.dataset, args.sequences, args.frames, seed=0)
    val = synthetic_split(args.dataset, 2, args.frames, seed=1,
                          invalid_every=3 if args.dataset == "3dhp" else 0)
    cfg = TrainConfig(epochs=args.epochs, batch_clips=args.batch_clips, lr=args.lr,
                      checkpoint_every=1, validate=not args.no_validate, device="cpu")
    result = train(tiny_model_config(args.dataset, args.drop_path), cfg, split, val, args.out)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"epochs_done": result.epochs_done, "epochs_run": result.epochs_run,
                          "best_val_mpjpe_mm": result.best_val_mpjpe_mm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
