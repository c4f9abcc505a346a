"""Pipeline-run bookkeeping without MLflow: stage ranks, the parent-run rule, the state file,
tracking URI defaults, DDP rank, git and dvc.lock provenance (used by :mod:`.tracking`).

The rule (see :mod:`ddhpose.tracking.tracker` for the whole picture) is the pure function
:func:`needs_new_parent`; the state lives in ``<project root>/.ddhpose/mlflow_run.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

STAGE_RANKS: dict[str, int] = {
    "fetch_data": 0, "preprocess": 1, "train": 2, "sample": 3, "evaluate": 4, "export_mat": 5,
}
STATE_FILE = Path(".ddhpose") / "mlflow_run.json"
OFFLINE_DIR = Path("reports") / "tracking_offline"


def tracking_home(project_root: Path) -> Path:
    """Where the default SQLite store and the offline records live: ``DVC_ROOT`` when it names a
    folder (DVC sets it for every stage; in a queued ``dvc exp run`` it is the repository the
    experiment was queued from, not the temporary copy it runs in), else ``project_root``."""
    dvc_root = os.environ.get("DVC_ROOT", "").strip()
    if dvc_root and Path(dvc_root).is_dir():
        return Path(dvc_root).resolve()
    return Path(project_root).resolve()


def tracking_uri(project_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<tracking home>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or f"sqlite:///{tracking_home(project_root) / 'mlflow.db'}"


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, ``<db directory>/mlartifacts/<experiment>`` (file URI); else None
    (a server decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlartifacts" / experiment).as_uri()


def distributed_rank() -> int:
    """The global DDP rank: torch.distributed when initialised (never imported here), else RANK."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def needs_new_parent(state: Mapping[str, Any] | None, uri: str, experiment_id: str, rank: int,
                     parent_alive: bool) -> bool:
    """The module docstring's rule. ``parent_alive``: the stored parent run exists, not deleted."""
    usable = (
        state is not None
        and state.get("parent_run_id")
        and state.get("tracking_uri") == uri
        and str(state.get("experiment_id")) == str(experiment_id)
        and parent_alive
    )
    if not usable:
        return True
    if rank >= 3:
        return False
    return int(state.get("last_rank", -1)) >= rank  # type: ignore[union-attr]


def read_state(project_root: Path) -> dict[str, Any] | None:
    path = Path(project_root) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or corrupt: start afresh
    return state if isinstance(state, dict) else None


def git_info(project_root: Path) -> dict[str, str]:
    """``{"git.commit": sha, "git.dirty": "true"|"false"}``, or {} outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=project_root, capture_output=True, text=True,
                                 timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    info = {"git.commit": commit, "mlflow.source.git.commit": commit}
    if status is not None:
        info["git.dirty"] = "true" if status else "false"
    return info


def dvc_lock_tags(project_root: Path, below_rank: int) -> dict[str, str]:
    """``dvc.lock.<stage>`` -> 12-hex hash of its dvc.lock entry, for ranks < ``below_rank``."""
    try:
        lock = yaml.safe_load((Path(project_root) / "dvc.lock").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        return {}
    tags = {}
    for name, entry in stages.items():
        if STAGE_RANKS.get(name, 99) < below_rank:
            blob = json.dumps(entry, sort_keys=True, default=str).encode()
            tags[f"dvc.lock.{name}"] = hashlib.sha256(blob).hexdigest()[:12]
    return tags


def dvc_experiment_tags() -> dict[str, str]:
    """``{"dvc.exp_name": name}`` inside a ``dvc exp run`` (DVC sets ``DVC_EXP_NAME``), else {}."""
    name = os.environ.get("DVC_EXP_NAME", "").strip()
    return {"dvc.exp_name": name} if name else {}


def process_tags() -> dict[str, str]:
    """Tags naming this process (host, pid, start time) so a later stage can tell whether the
    process that opened a run is gone."""
    import psutil

    me = psutil.Process()
    return {"ddhpose.host": socket.gethostname(), "ddhpose.pid": str(me.pid),
            "ddhpose.pid_started": f"{me.create_time():.3f}"}


def process_is_gone(tags: Mapping[str, str]) -> bool:
    """True if the process named by :func:`process_tags` values ``tags`` (same host assumed) no
    longer runs (its pid is free or now belongs to a process started at another time)."""
    import psutil

    try:
        pid = int(tags.get("ddhpose.pid", ""))
        started = float(tags.get("ddhpose.pid_started", ""))
    except ValueError:
        return False  # not ours to judge
    try:
        proc = psutil.Process(pid)
        return (abs(proc.create_time() - started) > 1.0
                or proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
