"""A tiny copy of the project for tests that drive real ``dvc``/``git`` subprocesses.

``copy_project(root)`` copies the git-tracked files (no data, models or reports) into ``root``,
shrinks ``params.yaml`` to a few short synthetic sequences and a width-16 model, and commits it
in a fresh git repository; ``run`` runs a command there and fails with its output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ["fetch_data", "preprocess", "train", "sample", "evaluate", "export_mat"]

TINY = {
    "data": {"subjects_train": ["S1"], "subjects_test": ["S9"], "actions": ["Walking", "Sitting"],
             "synthetic": {"frames": 40}},
    "model": {"width": 16, "depth": 2, "heads": 2, "frames": 9},
    "train": {"epochs": 1, "lr": 1.0e-3, "checkpoint_every": 0},
    "sample": {"hypotheses": 2, "steps": 2},
    "eval": {"render_clips": 1},
}
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Run ``cmd``; return stdout + stderr; raise AssertionError with the output on failure."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for subprocesses in the copy: the test's venv first on PATH, one thread."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", **GIT_ENV)
    env.pop("DDHPOSE_ROOT", None)
    env.pop("DVC_EXP_NAME", None)
    env.update(extra)
    return env


def copy_sources(root: Path) -> None:
    """Copy the repository's files (tracked and untracked, not ignored) into ``root``, without
    data, models and reports."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "reports/")):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)


def commit_copy(root: Path) -> None:
    """``git init`` the copy in ``root`` and commit everything in it."""
    env = dict(os.environ, **GIT_ENV)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        run(cmd, root, env)


def copy_project(root: Path, overrides: dict | None = None) -> None:
    """Copy the sources into ``root``, write the tiny params, ``git init`` and commit."""
    copy_sources(root)
    params = merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    if overrides:
        merge(params, overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_copy(root)
