"""``ddhpose params apply|check|render`` (ddhpose/commands/params.py), through the real command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _ddhpose(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code, whatever is installed
    return subprocess.run([sys.executable, "-m", "ddhpose.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _project(tmp_path: Path) -> Path:
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _init_stage(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["init_model"]


def test_apply_a_registry_uri_makes_init_model_always_run_and_keeps_both_files(tmp_path):
    root = _project(tmp_path)
    before_params, before_dvc = (root / "params.yaml").read_text(), (root / "dvc.yaml").read_text()
    (root / "mine.yaml").write_text("model:\n  init: models:/ddhpose-h36m@champion\n"
                                    "train:\n  epochs: 0\n")
    done = _ddhpose("params", "apply", "mine.yaml", cwd=root)
    assert done.returncode == 0, done.stderr
    assert _init_stage(root).get("always_changed") is True
    kept = sorted((root / ".ddhpose").rglob("*"))
    kept_texts = {p.read_text() for p in kept if p.is_file()}
    assert before_params in kept_texts and before_dvc in kept_texts
    assert "init_model stage shaped" in done.stdout
    # back to training from scratch: the stage is the shipped one again
    (root / "scratch.yaml").write_text("model:\n  init: ''\ntrain:\n  epochs: 3\n")
    assert _ddhpose("params", "apply", "scratch.yaml", cwd=root).returncode == 0
    assert (root / "dvc.yaml").read_text() == before_dvc


def test_apply_a_checkpoint_file_makes_it_a_dep(tmp_path):
    root = _project(tmp_path)
    (root / "mine.yaml").write_text("model:\n  init: checkpoints/best_epoch.bin\n")
    done = _ddhpose("params", "apply", "mine.yaml", cwd=root)
    assert done.returncode == 0, done.stderr
    stage = _init_stage(root)
    assert "checkpoints/best_epoch.bin" in stage["deps"] and "always_changed" not in stage


def test_a_bad_override_changes_nothing_and_is_one_line(tmp_path):
    root = _project(tmp_path)
    before = (root / "params.yaml").read_bytes(), (root / "dvc.yaml").read_bytes()
    (root / "bad.yaml").write_text("sample:\n  hypotheses: 0\n")
    done = _ddhpose("params", "apply", "bad.yaml", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("ddhpose params: error: params key 'sample.hypotheses'")
    assert ((root / "params.yaml").read_bytes(), (root / "dvc.yaml").read_bytes()) == before
    assert not (root / ".ddhpose").exists()


def test_check_and_render(tmp_path):
    root = _project(tmp_path)
    done = _ddhpose("params", "check", cwd=root)
    assert done.returncode == 0 and done.stdout.strip() == "params.yaml: ok"
    done = _ddhpose("params", "render", cwd=root)
    assert done.returncode == 0 and done.stdout == (REPO / "params.yaml").read_text()
