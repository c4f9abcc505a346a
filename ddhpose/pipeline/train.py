"""Stage ``train``: ``data/processed`` -> ``models/{last,best}.pt``, ``models/train_log.csv``.

Runs as one process, under ``torchrun --nproc_per_node=N stages/train.py`` (DDP; only rank 0
writes), or on N local workers that the stage starts itself with ``train.processes: N | auto``
(:mod:`.local_workers`; rank 0's per-epoch metrics are logged to the stage's MLflow run as they
come). ``models/last.pt`` persists between runs (dvc.yaml ``persist: true``): a killed
run resumes from it. When params.yaml changed the model or the optimisation trajectory since that
run, when the training data (``data/processed/train.npz``; with ``train.validate`` also the
validation split ``test.npz``) holds other arrays than the run was trained on (another
``data.subjects_train``, ``data.synthetic.seed``, ``data.path``, ...), or when it cannot resume for
another reason (see :mod:`ddhpose.training.resume`; a ``last.pt`` from before the data
fingerprint is stale too), the stale run's files are moved to ``models/stale/<UTC timestamp>/``
(never deleted: DVC never cached an interrupted run), the message says why and where, and training
starts over; only ``train.epochs`` (and bookkeeping keys) may change and continue the same run.
``models/`` must be writable and ``last.pt`` readable: checked before any data is loaded.

``model.init`` (resolved by the init_model stage into ``models/init/``): with ``train.epochs: 0``
the checkpoint is adopted as ``models/best.pt`` (and ``last.pt``) without training; with
``train.epochs > 0`` training starts from its weights (fine-tuning, fresh optimizer), and a run
started from another init is stale. Either way the architecture comes from the checkpoint and
must agree with ``model.*``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.data.processed import load_split
from ddhpose.errors import CheckpointError, ConfigError, DataError
from ddhpose.io import probe_writable, read_json, write_json
from ddhpose.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from ddhpose.model.config import ModelConfig
from ddhpose.pipeline import local_workers
from ddhpose.project import ProjectPaths, move_aside
from ddhpose.training.config import TrainResult
from ddhpose.training.loop import train
from ddhpose.training.progress import write_train_log
from ddhpose.training.resume import data_fingerprint, resume_blockers

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker


def model_config(params: Any) -> ModelConfig:
    """The ``ModelConfig`` of params.yaml's ``model`` section for ``data.dataset``."""
    return ModelConfig.from_params(params.data.dataset, params.model).validate()


STALE_DIR = "stale"
RUN_FILES = ("last.pt", "best.pt", "epoch_*.pt", "train_log.csv")


def read_last(last: Path) -> dict[str, Any]:
    """The run's ``last.pt``, loaded before any data is. A corrupt file is not "stale": the
    :class:`CheckpointError` names it and says to move it away; nothing is moved."""
    try:
        return load_checkpoint(last, map_location="cpu")
    except CheckpointError as exc:
        raise CheckpointError(last, f"{exc.args[0].split(': ', 1)[-1]}; move it away "
                              "to start training over") from exc


def stale_run_reasons(ckpt: dict[str, Any], model_cfg: ModelConfig, train_params: Any,
                      data: Mapping[str, str | None], init_sha256: str = "") -> list[str]:
    """Why the loaded ``last.pt`` ``ckpt`` cannot resume the run params.yaml asks for on the data
    whose :func:`~ddhpose.training.resume.data_fingerprint` is ``data`` (empty: it resumes)."""
    state = ckpt.get("train_state") or {}
    if state.get("adopted"):
        return ["it is an adopted model.init (train.epochs was 0), not a training run"]
    if str(state.get("init_sha256") or "") != init_sha256:
        return ["model.init: the run started from other weights"]
    return resume_blockers(ckpt, model_cfg, train_params.as_dict(), data)


def set_stale_run_aside(models: Path, reasons: list[str]) -> Path:
    """Move the stale run's files to ``models/stale/<UTC timestamp>/``; print where."""
    files = sorted({p for pattern in RUN_FILES for p in models.glob(pattern)})
    dest = move_aside(files, models / STALE_DIR)
    print(f"train: {models / 'last.pt'} cannot resume this run ({'; '.join(reasons)}); moved "
          f"{', '.join(p.name for p in files)} to {dest}; starting a new run", file=sys.stderr)
    return dest


ARCHITECTURE_KEYS = ("width", "depth", "heads", "mlp_ratio", "frames", "timesteps", "scale",
                     "xc_layout")


def init_config(init_cfg: ModelConfig, wanted: ModelConfig, source: Path) -> ModelConfig:
    """The architecture of ``model.init``'s checkpoint, checked against params.yaml's ``model.*``.

    Returns the checkpoint's config with the training-only ``drop_path`` of params.yaml; a key
    that disagrees raises ConfigError naming the key, the checkpoint's and params.yaml's values.
    """
    if init_cfg.dataset != wanted.dataset:
        raise ConfigError("data.dataset", f"model.init {source} holds a {init_cfg.dataset!r} "
                                          f"model, params.yaml has {wanted.dataset!r}")
    for key in ARCHITECTURE_KEYS:
        have, want = getattr(init_cfg, key), getattr(wanted, key)
        if have != want:
            raise ConfigError(f"model.{key}", f"model.init {source} has {have!r}, params.yaml "
                                              f"has {want!r} (the architecture comes from "
                                              f"model.init: set model.{key}: {have!r})")
    return dataclasses.replace(init_cfg, drop_path=wanted.drop_path)


def _init_record(params: Params, paths: ProjectPaths) -> dict[str, Any]:
    record = read_json(paths.init_source, default={"init": ""})
    asked = params.model.init.strip()
    if str(record.get("init", "")) != asked:
        raise DataError(paths.init_source, f"resolved for model.init {record.get('init')!r}, but "
                                           f"params.yaml has {asked!r}: run `dvc repro` (the "
                                           "init_model stage resolves it)")
    if asked and not paths.init_checkpoint.is_file():
        raise DataError(paths.init_checkpoint, "missing: run `dvc repro` (init_model stage)")
    return record


def _adopt(model: Any, record: dict[str, Any], paths: ProjectPaths) -> None:
    """``train.epochs: 0``: ``model.init`` becomes ``best.pt`` (and ``last.pt``), untrained."""
    meta = {"kind": "ddhpose-adopted", "init": record["init"], "init_sha256": record["sha256"]}
    state = {"adopted": True, "init_sha256": record["sha256"]}
    for name in ("best.pt", "last.pt"):
        save_checkpoint(paths.models / name, model, train_state=state, metadata=meta)
    write_train_log(paths.train_log, [])  # no epochs: a header only


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    cfg, record, init_model = _model_and_init(params, paths)
    if record["init"]:
        tracker.set_tags({f"ddhpose.init.{k}": v for k, v in record.items() if v is not None})
    if params.train.epochs == 0:
        assert init_model is not None  # params validation: epochs 0 needs model.init
        probe_writable(paths.models)
        tracker.log_params({f"train.{k}": v for k, v in vars(params.train).items()}
                           | {f"model.{k}": v for k, v in vars(params.model).items()})
        files = sorted({p for pattern in RUN_FILES for p in paths.models.glob(pattern)})
        if files:
            set_stale_run_aside(paths.models, ["train.epochs is 0: adopting model.init"])
        _adopt(init_model, record, paths)
        tracker.log_artifact(paths.best, "models")
        print(f"train: train.epochs is 0: adopted {record['init']} as {paths.best} (no training)")
        return
    tracker.log_params({f"train.{k}": v for k, v in vars(params.train).items()}
                       | {f"model.{k}": v for k, v in vars(params.model).items()})
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    n = 1 if under_torchrun else local_workers.local_processes(
        params.train.processes, params.train.device, "train.processes")
    if n > 1:  # what the workers' rank 0 would refuse, refused before they start
        probe_writable(paths.models)
        if (paths.models / "last.pt").is_file():
            read_last(paths.models / "last.pt")
        result = _launch_local(n, root, tracker)
    else:
        def log_fn(metrics: dict[str, float], epoch: int) -> None:
            tracker.log_metrics(metrics, step=epoch)

        result = _train(params, paths, cfg, record, init_model, log_fn)
    # the precision of training and of the validation that picked best.pt
    tracker.log_params({"train.precision": result.precision})
    for name in ("best.pt", "last.pt", "train_log.csv"):
        if (paths.models / name).is_file():
            tracker.log_artifact(paths.models / name, "models")
    best = result.best_val_mpjpe_mm
    if best is not None:
        tracker.log_metrics({"best_val_mpjpe_mm": float(best)}, also_parent=True)
    print(f"train: {result.epochs_run} epoch(s) run; best validation MPJPE "
          f"{'-' if best is None else f'{best:.2f}'} mm (epoch {result.best_epoch}, "
          f"{result.precision}) on {max(n, int(os.environ.get('WORLD_SIZE', '1') or 1))} "
          f"process(es) -> {paths.models}")


def _train(params: Params, paths: ProjectPaths, cfg: ModelConfig, record: dict[str, Any],
           init_model: Any, log_fn: Any) -> TrainResult:
    """Train in this process (alone, or as one rank of a torchrun / local-worker job): rank 0
    sets a stale run aside first (:func:`stale_run_reasons`)."""
    init_sha = str(record.get("sha256", ""))
    last = paths.models / "last.pt"
    main = os.environ.get("RANK", "0") == "0"  # under torchrun: rank 0 decides and writes
    ckpt = None
    if main:
        probe_writable(paths.models)  # read-only / no permission: fail before any data is read
        ckpt = read_last(last) if last.is_file() else None
    train_split = load_split(paths.split("train"))
    val_split = load_split(paths.split("test")) if params.train.validate else None
    if ckpt is not None:  # the data is part of the resume rule: other data, another run
        reasons = stale_run_reasons(ckpt, cfg, params.train,
                                    data_fingerprint(train_split, val_split), init_sha)
        del ckpt
        if reasons:
            set_stale_run_aside(paths.models, reasons)
    return train(cfg, params.train, train_split, val_split, paths.models, log_fn=log_fn,
                 init_state_dict=None if init_model is None else init_model.state_dict(),
                 init_tag=init_sha)


def _model_and_init(params: Params, paths: ProjectPaths) -> tuple[ModelConfig, dict[str, Any],
                                                                  Any]:
    """The model config to train, the init_model stage's record and its model (or None)."""
    cfg = model_config(params)
    record = _init_record(params, paths)
    init_model = None
    if record["init"]:
        init_model = load_model(paths.init_checkpoint, dataset=params.data.dataset)
        cfg = init_config(init_model.config, cfg, paths.init_checkpoint)
    return cfg, record, init_model


_METRICS = "metrics.jsonl"  # rank 0's per-epoch metrics, one JSON object per line
_RESULT = "result.json"


def _launch_local(n: int, root: Path, tracker: Tracker) -> TrainResult:
    """``train.processes: n``: train on ``n`` local workers (DDP, :mod:`.local_workers`); the
    per-epoch metrics rank 0 writes are logged to MLflow as they come."""
    logged = 0

    def poll(tmp: Path) -> None:
        nonlocal logged
        lines = (tmp / _METRICS).read_text().splitlines() if (tmp / _METRICS).is_file() else []
        for line in lines[logged:]:
            if line.endswith("}"):  # a complete line
                row = json.loads(line)
                tracker.log_metrics(row["metrics"], step=int(row["epoch"]))
                logged += 1

    with tempfile.TemporaryDirectory(prefix="ddhpose-train-") as tmp:
        local_workers.launch(n, "ddhpose.pipeline.train", root, Path(tmp), poll=poll,
                             what="models/last.pt holds the last finished epoch (dvc repro "
                                  "resumes from it)")
        done = json.loads((Path(tmp) / _RESULT).read_text())
    done["best_path"], done["last_path"] = Path(done["best_path"]), Path(done["last_path"])
    return TrainResult(**done)


def _worker(tmp: Path, root: Path) -> None:
    """One local worker of :func:`_launch_local`: rank 0 appends each epoch's metrics to
    ``tmp/metrics.jsonl`` and leaves the result in ``tmp/result.json``."""
    from ddhpose.config.schema import load_params

    params = load_params(root / "params.yaml")
    paths = ProjectPaths(root)
    cfg, record, init_model = _model_and_init(params, paths)

    def log_fn(metrics: dict[str, float], epoch: int) -> None:
        with open(tmp / _METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"epoch": epoch, "metrics": metrics}) + "\n")

    result = _train(params, paths, cfg, record, init_model, log_fn)
    if os.environ.get("RANK", "0") == "0":
        out = dataclasses.asdict(result)
        out["best_path"], out["last_path"] = str(result.best_path), str(result.last_path)
        write_json(tmp / _RESULT, out)


if __name__ == "__main__" and local_workers.is_worker_call(sys.argv):
    sys.exit(local_workers.run_worker(_worker, sys.argv))
