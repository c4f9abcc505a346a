"""A registered model version carries the ONNX graph: ``register_model`` (the evaluate stage's
registration) logs ``artifacts/model.onnx`` beside the checkpoint in a real SQLite MLflow store,
and downloading the version's artifacts (``models:/NAME/N``, as ``mlflow artifacts download``
does) gives a graph onnxruntime runs with the model's config. Without the onnx extra the model is
logged without it, with one warning line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import load_model, save_checkpoint
from ddhpose.registry.register import register_model
from ddhpose.training.smoke import tiny_model_config

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
from mlflow.tracking import MlflowClient  # noqa: E402

from ddhpose.deploy.onnx_export import example_inputs  # noqa: E402
from ddhpose.deploy.onnx_runtime import load_onnx  # noqa: E402

NAME = "ddhpose-h36m"


@pytest.fixture()
def store(tmp_path) -> dict:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = MlflowClient(tracking_uri=uri).create_experiment(
        NAME, artifact_location=(tmp_path / "mlartifacts").as_uri())
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", DDHPose(tiny_model_config("h36m")))
    return {"uri": uri, "experiment_id": exp, "dir": tmp_path, "checkpoint": ckpt}


def _register(store: dict) -> dict:
    client = MlflowClient(tracking_uri=store["uri"])
    run = client.create_run(store["experiment_id"])
    out = register_model(tracking_uri=store["uri"], run_id=run.info.run_id,
                         checkpoint=store["checkpoint"], name=NAME,
                         tags={"dataset": "h36m", "test_data_fingerprint": "fp"},
                         metric="mpjpe_mm_j_agg", value=50.0, metrics={"mpjpe_mm_j_agg": 50.0})
    client.set_terminated(run.info.run_id)
    return out


def _download(store: dict, version: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{NAME}/{version}", dst_path=str(store["dir"] / f"v{version}"),
        tracking_uri=store["uri"]))


def test_the_registered_version_holds_the_graph(store):
    out = _register(store)
    local = _download(store, out["version"])
    graph = local / "artifacts" / "model.onnx"
    assert graph.is_file() and (local / "artifacts" / "checkpoint.pt").is_file()
    lifter = load_onnx(graph)
    model = load_model(store["checkpoint"])
    assert lifter.config == model.config
    inputs = example_inputs(model.config.frames, 17, model.config.timesteps)
    with torch.no_grad():
        ref = model.denoise(*inputs)
    assert (lifter.denoise(*inputs) - ref).abs().max().item() <= 1e-4


def test_without_the_onnx_extra_one_warning_line(store, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    out = _register(store)
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "onnx extra is missing" in warned[0], warned
    local = _download(store, out["version"])
    assert (local / "artifacts" / "checkpoint.pt").is_file()
    assert not (local / "artifacts" / "model.onnx").exists()


def test_export_a_registered_version(store, monkeypatch, capsys):
    from ddhpose.cli import main

    out = _register(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    graph = store["dir"] / "exported.onnx"
    assert main(["export", "onnx", f"models:/{NAME}@champion", str(graph)]) == 0
    assert f"version {out['version']}" in capsys.readouterr().err
    lifter = load_onnx(graph)
    assert lifter.config == load_model(store["checkpoint"]).config
    assert lifter.metadata["ddhpose.source"] == f"models:/{NAME}@champion"
