"""Every stage checks that it can write its outputs before the work: a read-only folder (a real
read-only tmpfs) is one ``<stage>: error: <folder>: read-only file system`` line, exit 2, before
any input is read (the inputs do not even exist here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage, mount", [
    ("preprocess", "data"), ("sample", "reports"), ("evaluate", "reports"),
    ("export_mat", "reports"),
])
def test_read_only_output_folder(tmp_path, tmpfs, stage, mount):
    root = tmp_path / "p"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"]["enabled"] = False  # MLflow is not what this test is about
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tmpfs(f"p/{mount}", size="1m", read_only=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), DDHPOSE_ROOT=str(root), OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    proc = subprocess.run([sys.executable, str(REPO / f"stages/{stage}.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1, proc.stderr
    # the stage's output folder, or (tracking offline) reports/tracking_offline, whichever the
    # stage reaches first: both are checked before any input is read
    assert errors[0].startswith(f"{stage}: error: {root / mount}/"), proc.stderr
    assert errors[0].endswith(": read-only file system"), proc.stderr
    assert "Traceback" not in proc.stderr
