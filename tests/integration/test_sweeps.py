"""A sweep as the README runs it: ``dvc exp run --queue -S ...`` then ``dvc queue start`` on a
tiny project; ``dvc exp show --csv`` and the project's MLflow store both hold each experiment's
params and headline metric, and each MLflow parent run carries its DVC experiment name."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from tiny_project import BIN, copy_project, project_env, run

pytestmark = pytest.mark.slow


def test_queued_sweep_reaches_dvc_and_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    if not (BIN / "dvc").exists():
        pytest.skip("dvc is not installed beside the test interpreter")
    root = tmp_path / "project"
    root.mkdir()
    copy_project(root)
    # The README's way: no MLFLOW_TRACKING_URI, the default store mlflow.db in the project.
    env = project_env(root)
    env.pop("MLFLOW_TRACKING_URI")
    dvc = str(BIN / "dvc")
    run([dvc, "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "pipeline run"], root, env)
    run([dvc, "exp", "run", "--queue", "-S", "sample.hypotheses=1,3", "-S", "sample.steps=1"],
        root, env)
    run([dvc, "queue", "start"], root, env)
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        status = run([dvc, "queue", "status"], root, env)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    table = list(csv.DictReader(io.StringIO(run([dvc, "exp", "show", "--csv"], root, env))))
    exps = {r["Experiment"]: r for r in table if r.get("Experiment")}
    assert len(exps) == 2, table
    assert {r["sample.hypotheses"] for r in exps.values()} == {"1", "3"}
    assert all(r["headline.p1_mm"] for r in exps.values()), table

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ddhpose-h36m")
    parents = [r for r in client.search_runs([exp.experiment_id])
               if "mlflow.parentRunId" not in r.data.tags and "dvc.exp_name" in r.data.tags]
    by_name = {r.data.tags["dvc.exp_name"]: r for r in parents}
    assert set(by_name) == set(exps)
    for name, parent in by_name.items():
        assert parent.data.params["sample.hypotheses"] == exps[name]["sample.hypotheses"]
        assert "p1_j_agg_last" in parent.data.metrics
    assert not list((root / ".dvc" / "tmp").glob("exps/*/mlflow.db"))
