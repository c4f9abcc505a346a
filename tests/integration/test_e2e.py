"""End to end: a real ``dvc repro`` of the whole pipeline in a temporary copy of the repo.

Tiny configuration (a few short synthetic sequences, a width-16 model, one epoch), a real MLflow
SQLite store, then: re-running only ``evaluate`` joins the same MLflow parent run, a ``train.*``
change invalidates train, a ``sample.*`` change reruns only sample/evaluate/export_mat, and a
no-op repro runs nothing. The tests run in file order on one project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_project import BIN, STAGES, copy_project, project_env
from tiny_project import run as _run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root = tmp_path_factory.mktemp("project")
    copy_project(root)
    env = project_env(root)
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    (root / "first_repro.log").write_text(out)
    return root, env


def test_repro_writes_every_output(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    log = (root / "first_repro.log").read_text()
    assert "is empty" not in log, log  # every output directory gets content
    assert {"h36m_p1.csv", "h36m_p2.csv", "temporal.csv", "temporal_filter.csv",
            "uncertainty.csv"} <= {p.name for p in (root / "reports" / "eval").iterdir()}
    for rel in ["data/raw/data_3d_h36m.npz", "data/processed/train.npz",
                "data/processed/test.npz", "models/best.pt", "models/last.pt",
                "models/train_log.csv", "reports/predictions/predictions.npz",
                "reports/per_action.csv", "reports/per_step.csv",
                "reports/plots/error_per_step.png", "reports/plots/error_per_action.png",
                "reports/plots/training_curves.png", "reports/plots/uncertainty_vs_error.png",
                "reports/export/inference_data_J_Agg.mat", "dvc.lock"]:
        assert (root / rel).is_file(), rel
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["headline"]["aggregation"] == "j_agg"
    assert metrics["headline"]["oracle"] is False
    assert metrics["headline"]["p1_mm"] > 0 and metrics["baseline_mean_pose"]["p1_mm"] > 0
    assert len(metrics["per_step"]["p1_j_agg"]) == 2
    assert set(metrics["oracle_aggregations"]) == {"p_best_oracle", "j_best_oracle"}
    # docs/evaluation.md "Temporal quality and uncertainty": every aggregation, last step
    aggs = {"p_agg", "j_agg", "p_best_oracle", "j_best_oracle"}
    assert set(metrics["temporal"]) == set(metrics["uncertainty"]) == aggs
    assert metrics["temporal"]["j_agg"]["mpjve_mm"] > 0
    groups = {ln.split(",")[0] for ln in
              (root / "reports/per_action.csv").read_text().splitlines()[1:]} - {"Average"}
    assert "Walking" in groups and set(metrics["temporal"]["j_agg"]["per_action"]) == groups
    assert -1 <= metrics["uncertainty"]["p_agg"]["spearman"] <= 1
    assert metrics["temporal_filter"]["window"] == 9
    assert metrics["temporal_filter"]["j_agg"]["accel_mm_smoothed"] > 0


def test_mlflow_holds_one_parent_run_and_evaluate_rejoins(
    project: tuple[Path, dict[str, str]],
) -> None:
    from mlflow.tracking import MlflowClient

    root, env = project
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("ddhpose-h36m")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags.get("ddhpose.stage", r.info.run_name) for r in children) == sorted(
        STAGES)
    assert parent.data.params["model.width"] == "16"
    assert "p1_j_agg_last" in parent.data.metrics
    evaluate = next(r for r in children if "evaluate" in (r.info.run_name or ""))
    history = client.get_metric_history(evaluate.info.run_id, "p1_j_agg")
    assert [m.step for m in history] == [1, 2]
    assert any(k.startswith("p1_j_agg/") for k in evaluate.data.metrics)
    for key in ("mpjve_j_agg_last", "accel_p_agg_last", "unc_spearman_j_agg",
                "unc_spearman_within_joint_p_agg", "unc_top10_mm_j_agg",
                "unc_bottom10_mm_j_agg", "filter_p1_j_agg_smoothed", "mpjve_j_agg/Walking",
                "accel_p_best_oracle/Sitting"):
        assert key in evaluate.data.metrics, key
    assert "unc_spearman_j_agg" in parent.data.metrics
    train = next(r for r in children if "train" in (r.info.run_name or ""))
    assert "loss_total" in train.data.metrics

    # Only evaluate reruns after an eval.* change; it attaches to the same parent run.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["headline"] = "p_agg"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    assert "Running stage 'evaluate'" in out and "Running stage 'train'" not in out
    runs = client.search_runs([exp.experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["headline"]["aggregation"] == "p_agg"


def _status(root: Path, env: dict[str, str]) -> set[str]:
    """The stages ``dvc status`` lists (with the default ``model.init: ''`` none is
    ``always_changed``, so a finished project lists none)."""
    out = _run([str(BIN / "dvc"), "status", "--json"], root, env).strip()
    return set(json.loads(out[out.index("{"):])) if "{" in out else set()


def test_finished_project_is_up_to_date_also_after_a_tracking_edit(
        project: tuple[Path, dict[str, str]]) -> None:
    """``dvc status`` of a finished project is clean, and stays clean after editing the
    bookkeeping code (ddhpose/tracking/); an edit of a stage's own code is seen."""
    root, env = project
    assert "Data and pipelines are up to date" in _run([str(BIN / "dvc"), "status"], root, env)
    edited = {}
    for rel in ("ddhpose/tracking/tracker.py", "ddhpose/tracking/sync.py",
                "ddhpose/tracking/run_state.py", "ddhpose/pipeline/sample.py"):
        edited[rel] = (root / rel).read_text()
        (root / rel).write_text(edited[rel] + "# a reworded comment\n")
        if rel.startswith("ddhpose/tracking/"):
            assert _status(root, env) == set(), rel
    assert _status(root, env) == {"sample"}  # the check can fail: a computing module is a dep
    for rel, text in edited.items():
        (root / rel).write_text(text)
    assert _status(root, env) == set()


def _set_param(root: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_param_change_reruns_only_downstream(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    assert _status(root, env) == set()  # nothing to do after a repro
    _set_param(root, "train", "lr", 2.0e-3)
    assert _status(root, env) == {"train"}  # stages whose own deps/params changed
    _set_param(root, "train", "lr", 1.0e-3)
    assert _status(root, env) == set()
    _set_param(root, "sample", "steps", 1)
    _set_param(root, "sample", "dtype", "bfloat16")
    assert _status(root, env) == {"sample"}
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"sample", "evaluate", "export_mat"}, out[-2000:]
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert len(metrics["per_step"]["p1_j_agg"]) == 1
    meta = json.loads((root / "reports/predictions/meta.json").read_text())
    assert meta["dtype"] == "bfloat16" and meta["steps"] == 1
    out = _run([str(BIN / "dvc"), "repro"], root, env)  # no-op
    assert not any(f"Running stage '{s}'" in out for s in STAGES), out[-2000:]


def test_failed_evaluate_loses_nothing(project: tuple[Path, dict[str, str]]) -> None:
    """DVC deletes a stage's outputs before running it; when evaluate then fails (a bad
    ``eval.headline``), ``dvc checkout`` brings the previous results back from the cache."""
    root, env = project
    keep = ["reports/metrics.json", "reports/per_action.csv", "reports/per_step.csv"]
    before = {rel: (root / rel).read_bytes() for rel in keep}
    plots = sorted(p.name for p in (root / "reports/plots").iterdir())
    headline = yaml.safe_load((root / "params.yaml").read_text())["eval"]["headline"]
    _set_param(root, "eval", "headline", "bogus")
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode != 0
    assert "evaluate: error: params key 'eval.headline'" in proc.stdout + proc.stderr
    _run([str(BIN / "dvc"), "checkout", "evaluate"], root, env)
    assert {rel: (root / rel).read_bytes() for rel in keep} == before
    assert sorted(p.name for p in (root / "reports/plots").iterdir()) == plots
    _set_param(root, "eval", "headline", headline)
    assert _status(root, env) == set()


def test_auto_precision_reruns_train_and_sample_on_the_cpu(
        project: tuple[Path, dict[str, str]]) -> None:
    """``train.amp: auto`` + ``sample.dtype: auto``: bfloat16 autocast training and bfloat16
    sampling where this CPU has bfloat16 units (float32 elsewhere), stated in train_log.csv,
    meta.json and MLflow."""
    from ddhpose.model.fused import onednn_bf16_cpu

    root, env = project
    _set_param(root, "train", "amp", "auto")
    _set_param(root, "sample", "dtype", "auto")
    assert _status(root, env) == {"train", "sample"}
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"train", "sample", "evaluate", "export_mat"}, out[-2000:]
    bf16 = onednn_bf16_cpu()
    log = (root / "models/train_log.csv").read_text().splitlines()
    assert log[0].endswith(",precision")
    assert log[-1].endswith(",bfloat16-autocast" if bf16 else ",float32"), log
    meta = json.loads((root / "reports/predictions/meta.json").read_text())
    assert meta["dtype"] == "auto"
    assert meta["precision"] == ("bfloat16-weights" if bf16 else "float32")
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    params = [r.data.params for exp in client.search_experiments()
              for r in client.search_runs([exp.experiment_id])]
    assert any(p.get("train.precision") == log[-1].rsplit(",", 1)[1] for p in params)
    assert any(p.get("sample.precision") == meta["precision"] for p in params)
