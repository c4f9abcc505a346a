"""Evaluation only, end to end: the authors' checkpoint (converted) as ``model.init``,
``train.epochs: 0`` and the official MPI-INF-3DHP test annotations of TS5 (no training file),
through a real ``dvc repro`` in a temporary git copy of the repo with a real MLflow store.

Checks: no training data is fetched or built; ``models/best.pt`` is the init checkpoint's model;
the exported ``.mat``, scored by ``ddhpose evaluate-3dhp``, gives the per-sequence numbers of
``reports/eval`` and MLflow; the model is registered as champion; a changed init file reruns
``train`` (and an unchanged one does not); a ``model.*`` key that disagrees with the checkpoint
stops ``train`` with one line naming both values. Skipped (with the reason) when the fixtures
of tests/conftest.py are absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tiny_project import BIN, commit_copy, copy_sources, project_env

INIT = "checkpoints/authors_3dhp.pt"

pytestmark = pytest.mark.slow  # three `dvc repro` runs: about 2 minutes on 2 cores


def _run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _set(root: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory, parity_dir: Path, mpi3dhp_fixture_dir: Path):
    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root = tmp_path_factory.mktemp("eval_only")
    copy_sources(root)
    env = project_env(root, PYTHONPATH=str(root))
    (root / "checkpoints").mkdir()
    _run([str(BIN / "ddhpose"), "convert-checkpoint",
          str(parity_dir / "checkpoint_reference_format.bin"), str(root / INIT),
          "--dataset", "3dhp"], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update(dataset="3dhp", source="local", path=str(mpi3dhp_fixture_dir))
    params["model"].update(width=64, depth=3, heads=8, frames=27, init=INIT)
    params["train"]["epochs"] = 0
    params["sample"].update(hypotheses=2, steps=2)
    params["eval"]["render_clips"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # after an edit by hand, shape dvc.yaml's init_model stage for the file (docs/checkpoints.md)
    _run([sys.executable, "-m", "ddhpose.pipeline.deps", "--write", "--root", str(root)], root,
         env)
    commit_copy(root)
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    return root, env, out.stdout + out.stderr


def test_no_training_data_and_the_init_is_adopted(project, mpi3dhp_fixture_dir):
    from ddhpose.model.checkpoint import load_checkpoint, load_model

    root, _, log = project
    raw = sorted(p.relative_to(root / "data/raw").as_posix()
                 for p in (root / "data/raw").rglob("*") if p.is_file())
    assert raw == ["SOURCE.json", "mpi_inf_3dhp_test_set/TS5/annot_data.mat"]
    assert not (root / "data/processed/train.npz").exists()
    assert (root / "data/processed/test.npz").is_file()
    assert "adopted" in log and "epoch(s) run" not in log
    best = load_checkpoint(root / "models/best.pt")
    source = json.loads((root / "models/init/source.json").read_text())
    assert best["metadata"]["init_sha256"] == source["sha256"]
    assert source["kind"] == "file" and source["init"] == INIT
    ours, init = load_model(root / "models/best.pt"), load_model(root / INIT)
    for (k, a), (_, b) in zip(ours.state_dict().items(), init.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["dataset"] == "3dhp" and metrics["baseline_mean_pose"] is None
    assert 0 < metrics["headline"]["p1_mm"] < 5000


def test_exported_mat_scores_like_reports_and_mlflow(project, mpi3dhp_fixture_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    root, env, _ = project
    mats = sorted((root / "reports/export").glob("inference_data_*.mat"))
    assert len(mats) == 4
    _run([str(BIN / "ddhpose"), "evaluate-3dhp", "--pred", *map(str, mats), "--annotations",
          str(mpi3dhp_fixture_dir), "--out", str(tmp_path)], root, env)
    key = ["aggregation", "step", "table", "row", "sequence", "metric", "column"]
    ours = pd.read_csv(root / "reports/eval/evaluation_3dhp.csv")
    scored = pd.read_csv(tmp_path / "evaluation_3dhp.csv")
    ours, scored = (df[df["table"] == "sequence"].set_index(key)["value"].sort_index()
                    for df in (ours, scored))
    assert len(ours) == len(scored) > 0 and list(ours.index) == list(scored.index)
    # reports/ scores against the processed split's float32 ground truth, evaluate-3dhp against
    # the official float64 annot_data.mat: equal to float32 precision (~2e-6 mm at 500 mm)
    pd.testing.assert_series_equal(ours, scored, rtol=1e-7, atol=1e-9)

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("ddhpose-3dhp")
    evaluate = next(r for r in client.search_runs([exp.experiment_id])
                    if r.data.tags.get("ddhpose.stage") == "evaluate")
    checked = 0
    for metric, column in (("mpjpe_mm", "Average"), ("pck", "Total"), ("auc", "Total")):
        for agg in ("j_agg", "p_agg", "p_best_oracle", "j_best_oracle"):
            history = client.get_metric_history(evaluate.info.run_id, f"{metric}_{agg}/TS5")
            assert [m.step for m in history] == [1, 2]
            for m in history:
                index = (agg, m.step, "sequence", "TestSeq1", "TS5", metric, column)
                assert m.value == ours[index]  # MLflow holds exactly what reports/ holds
                assert m.value == pytest.approx(scored[index], rel=1e-7, abs=1e-9)
                checked += 1
    assert checked == 24


def test_registered_as_champion_with_provenance(project):
    from mlflow.tracking import MlflowClient

    from ddhpose.data.processed import ground_truth_fingerprint, load_split

    root, env, _ = project
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"],
                          registry_uri=env["MLFLOW_TRACKING_URI"])
    mv = client.get_model_version_by_alias("ddhpose-3dhp", "champion")
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert mv.tags["headline_metric"] == "mpjpe_mm_j_agg"
    assert float(mv.tags["headline_value"]) == pytest.approx(metrics["headline"]["p1_mm"])
    fp = ground_truth_fingerprint(load_split(root / "data/processed/test.npz"))
    assert mv.tags["test_data_fingerprint"] == fp
    head = _run(["git", "rev-parse", "HEAD"], root, env).stdout.strip()
    assert mv.tags["git.commit"] == head and mv.tags["dataset"] == "3dhp"
    assert {"dvc.lock.train", "dvc.lock.sample"} <= set(mv.tags)
    assert mv.tags["model.init"] == INIT
    train = next(r for r in client.search_runs([client.get_experiment_by_name(
        "ddhpose-3dhp").experiment_id]) if r.data.tags.get("ddhpose.stage") == "train")
    assert train.data.tags["ddhpose.init.sha256"] == json.loads(
        (root / "models/init/source.json").read_text())["sha256"]


def test_a_changed_init_file_reruns_train_and_an_unchanged_one_does_not(project):
    from ddhpose.model.checkpoint import load_model, save_checkpoint

    root, env, _ = project
    model = load_model(root / INIT)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(root / INIT, model)  # same path, new content
    out = _run([str(BIN / "dvc"), "repro"], root, env)
    log = out.stdout + out.stderr
    assert "Running stage 'init_model'" in log and "Running stage 'train'" in log
    assert "Running stage 'sample'" in log
    assert "init_model: warning" not in log  # the stage watches the file
    status = _run([str(BIN / "dvc"), "status"], root, env)
    assert "Data and pipelines are up to date" in status.stdout  # the file is a dep, not
    out = _run([str(BIN / "dvc"), "repro"], root, env)           # always_changed
    log = out.stdout + out.stderr
    assert not any(f"Running stage '{s}'" in log for s in ("init_model", "train", "sample")), log


def test_architecture_mismatch_names_key_and_both_values(project):
    root, env, _ = project
    _set(root, "model", "depth", 2)
    try:
        proc = _run([str(BIN / "dvc"), "repro"], root, env, ok=False)
    finally:
        _set(root, "model", "depth", 3)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "train: error:" in ln]
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert "'model.depth'" in lines[0] and "has 3, params.yaml has 2" in lines[0]
