"""Stage ``sample``: DDIM-sample the test split with ``models/best.pt`` (H hypotheses x K steps),
aggregate every batch and write ``reports/predictions/{predictions.npz, meta.json}``.

One process, or several (docs/training.md "Sampling on several processes, GPUs and machines"):

- under ``torchrun --nproc_per_node N stages/sample.py`` (any number of nodes), or
- from ``dvc repro`` with ``sample.processes: N | auto``: the stage starts N local workers itself
  through torch's elastic launcher (``auto``: one per visible GPU, else 1).

The test sequences are dealt to the ranks balanced by frames
(:func:`ddhpose.evaluation.predict.shard_sequences`); each rank samples its share on its device
(``cuda:LOCAL_RANK``, or the CPU with gloo); rank 0 gathers the shares and writes the same files a
single process writes. The noise of sequence i comes from a generator seeded from ``(seed, i)``, so
the predictions do not depend on the number of processes (bit-identical on the CPU at equal
threads per process; the CPU kernels' round-off depends on the thread count). A rank that
fails stops the stage with one line naming the rank; the files are written only after every share
arrived, each atomically, so nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddhpose.data.processed import file_sha256, load_split
from ddhpose.errors import ConfigError, DataError, DDHPoseError, os_error_line
from ddhpose.evaluation.predict import (
    assemble_split,
    predict_sequences,
    shard_sequences,
    write_predictions,
)
from ddhpose.io import atomic_paths, json_text, probe_writable, write_json
from ddhpose.model.checkpoint import load_model
from ddhpose.model.precision import matmul_precision, precision_label, sample_dtype
from ddhpose.pipeline import local_workers
from ddhpose.project import ProjectPaths
from ddhpose.training.distributed import (
    DistInfo,
    gather_to_main,
    init_distributed,
    shutdown_distributed,
)
from ddhpose.training.progress import progress_bar
from ddhpose.training.state import seeded_generator

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker

_SAMPLE_STREAM = 4  # seeded_generator(seed, sequence, stream): validation uses 3


def sequence_generator(seed: int):
    """``i -> torch.Generator`` of the sampler noise of test sequence i (CPU, seeded from
    ``(seed, i)``): the same draws whichever rank samples the sequence."""
    return lambda index: seeded_generator(int(seed), int(index), _SAMPLE_STREAM)


def local_processes(spec: int | str, device_spec: str) -> int:
    """``sample.processes`` -> the number of local workers (see
    :func:`ddhpose.pipeline.local_workers.local_processes`)."""
    return local_workers.local_processes(spec, device_spec, "sample.processes")


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    probe_writable(paths.predictions)  # a read-only reports/ fails before the sampling
    cfg = params.sample
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # launched by torchrun
        meta = _sample_distributed(params, root)
    else:
        n = local_processes(cfg.processes, cfg.device)
        meta = _launch_local(n, root) if n > 1 else _sample_distributed(params, root)
    if meta is None:  # a rank other than 0
        return
    tracker.log_params({f"sample.{k}": v for k, v in vars(cfg).items()}
                       | {"sample.precision": meta["precision"]})
    tracker.log_metrics({"sample_seconds": meta["seconds"],
                         "sample_frames_per_second": meta["frames_per_second"]})
    print(f"sample: {meta['frames']} frames, H={cfg.hypotheses} K={cfg.steps} in "
          f"{meta['seconds']:.1f} s on {meta['processes']} process(es), {meta['device']} "
          f"({meta['precision']}) -> {paths.predictions}")


def _sample_distributed(params: Params, root: Path) -> dict[str, Any] | None:
    """Join the torchrun job (or run alone), sample this rank's share, gather on rank 0 and
    write there; the meta dict on rank 0, None elsewhere. Errors name the rank when several."""
    cfg = params.sample
    try:
        info = init_distributed(cfg.device)
    except ConfigError as exc:
        raise ConfigError("sample.device", exc.problem) from exc
    try:
        return _sample(params, root, info)
    except DDHPoseError as exc:
        if not info.distributed:
            raise
        raise DataError(None, f"rank {info.rank} of {info.world_size}: {exc}") from exc
    except OSError as exc:
        if not info.distributed:
            raise
        raise DataError(None, f"rank {info.rank} of {info.world_size}: "
                              f"{os_error_line(exc)}") from exc
    finally:
        if info.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _sample(params: Params, root: Path, info: DistInfo) -> dict[str, Any] | None:
    paths = ProjectPaths(root)
    cfg = params.sample
    device = info.device
    split = load_split(paths.split("test"))
    model = load_model(paths.best, dataset=params.data.dataset, map_location="cpu").to(device)
    model.eval()
    dtype = sample_dtype(cfg.dtype, device)
    precision = precision_label(dtype, device, cfg.tf32, autocast=False)
    share = shard_sequences([int(n) for n in split.seq_length], info.world_size)[info.rank]
    share_frames = sum(int(split.seq_length[i]) for i in share)
    desc = "sample (frames)" if not info.distributed else f"sample (rank 0 of {info.world_size})"
    start = time.perf_counter()
    with (progress_bar(total=share_frames, desc=desc, enabled=info.is_main) as bar,
          matmul_precision(cfg.tf32)):
        parts = predict_sequences(
            model, split, share, hypotheses=cfg.hypotheses, steps=cfg.steps,
            batch_clips=cfg.batch_clips, sequence_generator=sequence_generator(cfg.seed),
            save_hypotheses=cfg.save_hypotheses, progress=bar.update, dtype=dtype,
        )
    gathered = gather_to_main(parts, info)
    if not info.is_main or gathered is None:
        shutdown_distributed(info)
        return None
    pred = assemble_split(split, [p for rank_parts in gathered for p in rank_parts],
                          hypotheses=cfg.hypotheses, steps=cfg.steps,
                          save_hypotheses=cfg.save_hypotheses,
                          seconds=time.perf_counter() - start)
    meta = {
        "dataset": split.dataset, "hypotheses": cfg.hypotheses, "steps": cfg.steps,
        "batch_clips": cfg.batch_clips, "seed": cfg.seed, "device": str(device),
        "dtype": cfg.dtype, "precision": precision, "processes": info.world_size,
        "frames": split.num_frames, "sequences": split.num_sequences,
        "checkpoint_sha256": file_sha256(paths.best), "seconds": round(pred.seconds, 3),
        "frames_per_second": round(split.num_frames / max(pred.seconds, 1e-9), 2),
        "unit": "metres, root-relative (root = 0)",
    }
    # one set: never new predictions beside an old meta.json, nothing half-written on failure
    with atomic_paths(paths.predictions / "predictions.npz",
                      paths.predictions / "meta.json") as (tmp_npz, tmp_meta):
        with open(tmp_npz, "wb") as fh:
            write_predictions(fh, pred)
        tmp_meta.write_text(json_text(meta), encoding="utf-8")
    shutdown_distributed(info)
    return meta


def _launch_local(n: int, root: Path) -> dict[str, Any]:
    """Start ``n`` local workers (``python -m ddhpose.pipeline.sample --worker``) with torch's
    elastic launcher, as ``torchrun --standalone --nproc_per_node n`` would; rank 0's meta.
    A failed worker raises one DDHPoseError naming the rank (:mod:`.local_workers`)."""
    with tempfile.TemporaryDirectory(prefix="ddhpose-sample-") as tmp:
        local_workers.launch(n, "ddhpose.pipeline.sample", root, Path(tmp),
                             what="no predictions written")
        return json.loads((Path(tmp) / "meta.json").read_text())


def _worker(tmp: Path, root: Path) -> None:
    """One local worker of :func:`_launch_local`: rank 0 leaves its meta in ``tmp``."""
    from ddhpose.config.schema import load_params

    params = load_params(root / "params.yaml")
    meta = _sample_distributed(params, root)
    if meta is not None:
        write_json(tmp / "meta.json", meta)


if __name__ == "__main__" and local_workers.is_worker_call(sys.argv):
    sys.exit(local_workers.run_worker(_worker, sys.argv))
