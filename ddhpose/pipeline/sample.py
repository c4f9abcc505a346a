"""Stage ``sample``: DDIM-sample the test split with ``models/best.pt`` (H hypotheses x K steps),
aggregate every batch and write ``reports/predictions/{predictions.npz, meta.json}``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ddhpose.data.processed import file_sha256, load_split
from ddhpose.errors import ConfigError
from ddhpose.evaluation.predict import predict_split, save_predictions
from ddhpose.io import probe_writable, write_json
from ddhpose.model.checkpoint import load_model
from ddhpose.model.precision import matmul_precision, precision_label, sample_dtype
from ddhpose.project import ProjectPaths
from ddhpose.training.distributed import resolve_device
from ddhpose.training.progress import progress_bar

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    probe_writable(paths.predictions)  # a read-only reports/ fails before the sampling
    cfg = params.sample
    try:
        device = resolve_device(cfg.device)
    except ConfigError as exc:
        raise ConfigError("sample.device", exc.problem) from exc
    split = load_split(paths.split("test"))
    model = load_model(paths.best, dataset=params.data.dataset, map_location="cpu").to(device)
    model.eval()
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    dtype = sample_dtype(cfg.dtype, device)
    precision = precision_label(dtype, device, cfg.tf32, autocast=False)
    with (progress_bar(total=split.num_frames, desc="sample (frames)") as bar,
          matmul_precision(cfg.tf32)):
        pred = predict_split(
            model, split, hypotheses=cfg.hypotheses, steps=cfg.steps,
            batch_clips=cfg.batch_clips, generator=generator,
            save_hypotheses=cfg.save_hypotheses, progress=bar.update, dtype=dtype,
        )
    save_predictions(paths.predictions / "predictions.npz", pred)
    meta = {
        "dataset": split.dataset, "hypotheses": cfg.hypotheses, "steps": cfg.steps,
        "batch_clips": cfg.batch_clips, "seed": cfg.seed, "device": str(device),
        "dtype": cfg.dtype, "precision": precision,
        "frames": split.num_frames, "sequences": split.num_sequences,
        "checkpoint_sha256": file_sha256(paths.best), "seconds": round(pred.seconds, 3),
        "frames_per_second": round(split.num_frames / max(pred.seconds, 1e-9), 2),
        "unit": "metres, root-relative (root = 0)",
    }
    write_json(paths.predictions / "meta.json", meta)
    tracker.log_params({f"sample.{k}": v for k, v in vars(cfg).items()}
                       | {"sample.precision": precision})
    tracker.log_metrics({"sample_seconds": pred.seconds,
                         "sample_frames_per_second": meta["frames_per_second"]})
    print(f"sample: {split.num_frames} frames, H={cfg.hypotheses} K={cfg.steps} in "
          f"{pred.seconds:.1f} s on {device} ({precision}) -> {paths.predictions}")
