"""Issue #26 "never a wrong model": the data a run was trained on is part of the resume rule.

The ``train`` stage as DVC runs it (a real ``python stages/train.py`` process on a tiny project):
other training data (or other validation data when validating) sets the finished run aside into
``models/stale/<UTC timestamp>/`` and trains anew; the same data written again resumes it; a run
from before the rule (no fingerprint in its ``last.pt``) is set aside too. The slow test does the
issue's probe with a real ``dvc repro``: change ``data.subjects_train``, repro, and the model
changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ddhpose.data.processed import load_split, save_split
from ddhpose.synthetic.smoke import synthetic_split

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "model": {"width": 16, "depth": 2, "heads": 2, "frames": 9, "drop_path": 0.0},
    "train": {"epochs": 1, "checkpoint_every": 0, "validate": False, "device": "cpu"},
    "tracking": {"enabled": False},
}


def _project(root: Path, validate: bool = False) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    params["train"]["validate"] = validate
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    save_split(root / "data/processed/train.npz", synthetic_split("h36m", 3, 20, seed=0))
    save_split(root / "data/processed/test.npz", synthetic_split("h36m", 2, 20, seed=1))
    return root


def _train(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), DDHPOSE_ROOT=str(root), OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _run_files(models: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in models.iterdir() if p.is_file()}


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["train_state"]


def _sha(split) -> str:
    from ddhpose.training.resume import split_sha256

    return split_sha256(split)


def _one_stale_run(models: Path) -> Path:
    stale = sorted((models / "stale").iterdir())
    assert len(stale) == 1 and stale[0].name.endswith("Z")
    return stale[0]


def test_other_training_data_sets_the_finished_run_aside_and_trains_anew(tmp_path):
    root = _project(tmp_path / "p")
    models = root / "models"
    _train(root)
    before = _run_files(models)

    other = synthetic_split("h36m", 3, 20, seed=5)  # another subject's worth of data
    save_split(root / "data/processed/train.npz", other)
    proc = _train(root)
    stale = _one_stale_run(models)
    assert _run_files(stale) == before  # nothing lost
    assert "data: the run was trained on other data (train split sha256" in proc.stderr
    assert f"moved best.pt, last.pt, train_log.csv to {stale}" in proc.stderr
    assert "train: 1 epoch(s) run" in proc.stdout
    assert (models / "best.pt").read_bytes() != before["best.pt"]
    assert _state(models / "best.pt")["data_sha256"]["train"] == _sha(other)
    assert _state(models / "last.pt")["data_sha256"] == {"train": _sha(other),
                                                         "val": None}


def test_the_same_data_written_again_resumes_the_finished_run(tmp_path):
    root = _project(tmp_path / "p")
    models = root / "models"
    _train(root)
    before = _run_files(models)
    path = root / "data/processed/train.npz"
    save_split(path, load_split(path))  # re-preprocessing: same arrays, a new file
    proc = _train(root)
    assert not (models / "stale").exists(), proc.stderr[-2000:]
    assert "train: 0 epoch(s) run" in proc.stdout
    assert _run_files(models)["best.pt"] == before["best.pt"]


def test_other_validation_data_sets_a_validated_run_aside(tmp_path):
    root = _project(tmp_path / "p", validate=True)
    models = root / "models"
    _train(root)
    best = (models / "best.pt").read_bytes()
    save_split(root / "data/processed/test.npz", synthetic_split("h36m", 2, 20, seed=7))
    proc = _train(root)
    assert _one_stale_run(models).joinpath("best.pt").read_bytes() == best
    assert "data: the run was validated on other data (validation split sha256" in proc.stderr
    assert "train: 1 epoch(s) run" in proc.stdout


def test_a_run_from_before_the_data_rule_is_set_aside(tmp_path):
    root = _project(tmp_path / "p")
    models = root / "models"
    _train(root)
    last = models / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    del ckpt["train_state"]["data_sha256"]  # as written before the rule
    torch.save(ckpt, last)
    before = _run_files(models)
    proc = _train(root)
    assert _run_files(_one_stale_run(models)) == before
    assert "data: the run predates the training-data fingerprint" in proc.stderr
    assert "train: 1 epoch(s) run" in proc.stdout


@pytest.mark.slow
def test_dvc_repro_after_changing_subjects_train_trains_a_new_model(tmp_path):
    """The issue's probe: finish a run, change ``data.subjects_train`` from [S1] to [S5],
    ``dvc repro``: the S1 run is under ``models/stale/`` and ``best.pt`` is a new model."""
    from tiny_project import BIN, copy_project, project_env
    from tiny_project import run as run_cmd

    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root = tmp_path / "project"
    root.mkdir()
    copy_project(root, {"tracking": {"enabled": False}})
    env = project_env(root)
    dvc = str(BIN / "dvc")
    run_cmd([dvc, "repro", "train"], root, env)
    models = root / "models"
    before = _run_files(models)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["data"]["subjects_train"] == ["S1"]
    params["data"]["subjects_train"] = ["S5"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run_cmd([dvc, "repro", "train"], root, env)
    stale = _one_stale_run(models)
    assert _run_files(stale) == before
    assert "data: the run was trained on other data" in out and str(stale) in out
    assert "train: 1 epoch(s) run" in out
    assert (models / "best.pt").read_bytes() != before["best.pt"]
    train = load_split(root / "data/processed/train.npz")
    assert set(train.seq_subject.tolist()) == {"S5"}
    assert _state(models / "best.pt")["data_sha256"]["train"] == _sha(train)
