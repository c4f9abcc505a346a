"""The ``train`` stage as DVC runs it (a real ``python stages/train.py`` process on a tiny
project): a stale run is moved to ``models/stale/<UTC timestamp>/``, never deleted; a read-only
``models/`` fails in one line before any data is read; a full disk says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from ddhpose.data.processed import save_split
from ddhpose.synthetic.smoke import synthetic_split

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "model": {"width": 16, "depth": 2, "heads": 2, "frames": 9, "drop_path": 0.0},
    "train": {"epochs": 1, "checkpoint_every": 0, "validate": False, "device": "cpu"},
    "tracking": {"enabled": False},
}


def _project(root: Path, with_data: bool = True) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if with_data:
        save_split(root / "data/processed/train.npz", synthetic_split("h36m", 3, 20, seed=0))
        save_split(root / "data/processed/test.npz", synthetic_split("h36m", 2, 20, seed=1))
    return root


def _set(root: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _train(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), DDHPOSE_ROOT=str(root), OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    return subprocess.run([sys.executable, str(REPO / "stages/train.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("train: error: "), proc.stderr[-3000:]
    return errors[0]


def test_a_stale_run_is_moved_aside_not_deleted(tmp_path):
    root = _project(tmp_path / "p")
    models = root / "models"
    assert _train(root).returncode == 0
    before = {p.name: p.read_bytes() for p in models.iterdir() if p.is_file()}
    assert {"last.pt", "best.pt", "train_log.csv"} <= set(before)

    _set(root, "train", "lr", 5e-4)  # another optimisation trajectory and architecture
    _set(root, "model", "width", 32)
    proc = _train(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stale = sorted((models / "stale").iterdir())
    assert len(stale) == 1 and stale[0].name.endswith("Z")
    assert {p.name: p.read_bytes() for p in stale[0].iterdir()} == before
    assert str(stale[0]) in proc.stderr
    assert "train.lr" in proc.stderr and "model.width" in proc.stderr
    assert (models / "last.pt").is_file() and (models / "last.pt").read_bytes() != before[
        "last.pt"]


def test_read_only_models_fails_in_one_line_before_training(tmp_path, tmpfs):
    root = _project(tmp_path / "p")
    ro = tmpfs("p/models", size="1m", read_only=True)
    line = _error_line(_train(root))
    assert line == f"train: error: {ro}: read-only file system"


def test_full_disk_while_saving_says_disk_full(tmp_path, tmpfs):
    root = _project(tmp_path / "p")
    tmpfs("p/models", size="64k")  # the probe fits, a checkpoint does not
    line = _error_line(_train(root))
    assert "disk full" in line and "models" in line
    assert not any(p.name.endswith(".tmp") for p in (root / "models").iterdir())
