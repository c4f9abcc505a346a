"""The train stage on several local processes (``train.processes: 2`` under ``dvc repro``) trains
the model one process trains, up to DDP's round-off (CPU, gloo), logs every epoch to MLflow from
the stage's own run, and a worker's error stops the stage with one line naming its rank.
One tiny project (tests/tiny_project.py), tests in file order."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tiny_project import BIN, copy_project, project_env
from tiny_project import run as _run

from ddhpose.model.checkpoint import load_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUN_FILES = ("best.pt", "last.pt", "train_log.csv")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root = tmp_path_factory.mktemp("train_project")
    copy_project(root, {"train": {"epochs": 2}})
    env = project_env(root)
    _run([str(BIN / "dvc"), "repro", "train"], root, env)
    (root / "single").mkdir()
    for name in RUN_FILES:
        shutil.copy2(root / "models" / name, root / "single" / name)
    return root, env


def _set_processes(root: Path, n: int) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["processes"] = n
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _clear_run(root: Path) -> None:
    for name in RUN_FILES:
        (root / "models" / name).unlink()


def _train_runs(root: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`ddhpose.stage` = 'train'", order_by=["start_time DESC"])
    return [client, runs]


def test_dvc_repro_with_two_processes_trains_the_single_process_model(project):
    root, env = project
    _set_processes(root, 2)
    _clear_run(root)
    out = _run([str(BIN / "dvc"), "repro", "train"], root, env)
    assert "on 2 process(es)" in out, out[-3000:]
    a = load_checkpoint(root / "single/last.pt")
    b = load_checkpoint(root / "models/last.pt")
    assert b["train_state"]["world_size"] == 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    diff = torch.cat([(w.double() - b["state_dict"][k].double()).abs().flatten()
                      for k, w in a["state_dict"].items()])
    # DDP sums the gradients in another order: round-off almost everywhere (AdamW can magnify
    # it on the few weights whose gradient nearly cancels, e.g. attention key biases)
    assert float(torch.quantile(diff, 0.99)) < 1e-6
    la, lb = pd.read_csv(root / "single/train_log.csv"), pd.read_csv(root / "models/train_log.csv")
    assert len(la) == len(lb) == 2
    assert lb["val_mpjpe_mm"].tolist() == pytest.approx(la["val_mpjpe_mm"].tolist(), rel=1e-3)


def test_the_workers_epochs_are_logged_to_the_stage_run(project):
    root, _ = project
    client, runs = _train_runs(root)
    assert len(runs) >= 2, [r.info.run_id for r in runs]
    newest = runs[0]
    assert newest.data.params["train.processes"] == "2"
    history = client.get_metric_history(newest.info.run_id, "val_mpjpe_mm")
    assert sorted(m.step for m in history) == [1, 2]
    single = client.get_metric_history(runs[1].info.run_id, "val_mpjpe_mm")
    assert sorted(m.value for m in history) == pytest.approx(sorted(m.value for m in single),
                                                              rel=1e-3)


def test_a_worker_error_is_one_line_naming_the_rank(project):
    root, env = project
    _set_processes(root, 2)
    _clear_run(root)
    data = root / "data/processed/train.npz"
    data.rename(root / "train.npz.away")
    data.write_bytes(b"not an npz archive")
    try:
        done = subprocess.run(["sh", "stages/python", "stages/train.py"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        data.unlink()
        (root / "train.npz.away").rename(data)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("train: error: rank "), lines[0]
    assert "of 2 failed: " in lines[0] and "train.npz" in lines[0], lines[0]
    assert not (root / "models/best.pt").exists()
