"""The MLflow model registry with real parts: a SQLite store, the logged pyfunc model, the alias
rule across runs, ``model.init`` / ``ddhpose infer`` by alias, and a real ``mlflow models serve``
subprocess answering real HTTP requests."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from ddhpose.config.schema import load_params
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.pipeline import init_model
from ddhpose.pipeline.init_model import file_sha256
from ddhpose.registry.register import (
    CHALLENGER,
    CHAMPION,
    alias_decision,
    register_model,
)
from ddhpose.training.smoke import tiny_model_config

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

BIN = Path(sys.executable).parent
NAME = "ddhpose-h36m"
FP = "fingerprint-a"

REPO = Path(__file__).resolve().parents[2]


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = DDHPose(tiny_model_config("h36m"))
    return save_checkpoint(path, model)


def _register(store: dict, value: float, fingerprint: str = FP, seed: int = 0) -> dict:
    client = MlflowClient(tracking_uri=store["uri"])
    run = client.create_run(store["experiment_id"])
    ckpt = _checkpoint(store["dir"] / f"ckpt_{seed}_{value}.pt", seed)
    out = register_model(
        tracking_uri=store["uri"], run_id=run.info.run_id, checkpoint=ckpt, name=NAME,
        tags={"dataset": "h36m", "test_data_fingerprint": fingerprint},
        metric="mpjpe_mm_j_agg", value=value, metrics={"mpjpe_mm_j_agg": value},
    )
    client.set_terminated(run.info.run_id)
    return {**out, "checkpoint": ckpt, "run_id": run.info.run_id}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A SQLite store holding version 1 of ddhpose-h36m (headline 50 mm): the champion."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ddhpose-h36m",
                                   artifact_location=(root / "mlartifacts").as_uri())
    store = {"uri": uri, "dir": root, "experiment_id": exp}
    store["v1"] = _register(store, 50.0)
    return store


def _env(store: dict) -> dict[str, str]:
    return dict(os.environ, MLFLOW_TRACKING_URI=store["uri"], OMP_NUM_THREADS="1",
                PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


# --- the alias rule -------------------------------------------------------------------------------


def test_alias_decision_rule():
    champ = {"test_data_fingerprint": FP, "headline_metric": "m", "headline_value": "50.0"}
    assert alias_decision(None, FP, "m", 99.0)[0] is True
    assert alias_decision(champ, FP, "m", 49.9)[0] is True
    assert alias_decision(champ, FP, "m", 50.0)[0] is False  # a tie keeps the champion
    assert alias_decision(champ, FP, "m", 60.0)[0] is False
    promote, reason = alias_decision(champ, "other", "m", 1.0)
    assert promote is False and "other test data" in reason
    assert alias_decision(champ, FP, "other_metric", 1.0)[0] is False


def test_first_version_is_champion_with_its_tags(store):
    client = MlflowClient(tracking_uri=store["uri"], registry_uri=store["uri"])
    v1 = store["v1"]
    assert v1["version"] == "1" and v1["champion"] is True
    mv = client.get_model_version_by_alias(NAME, CHAMPION)
    assert str(mv.version) == "1" and mv.run_id == v1["run_id"]
    assert mv.tags["headline_metric"] == "mpjpe_mm_j_agg"
    assert float(mv.tags["headline_value"]) == 50.0
    assert mv.tags["test_data_fingerprint"] == FP and mv.tags["dataset"] == "h36m"
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == "1"
    # the logged model holds the checkpoint bytes, a signature and an input example
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1",
                                                     tracking_uri=store["uri"]))
    assert file_sha256(local / "artifacts" / "checkpoint.pt") == file_sha256(v1["checkpoint"])
    mlmodel = (local / "MLmodel").read_text()
    assert "signature" in mlmodel and "saved_input_example_info" in mlmodel


# --- serving (before the alias tests move the champion) -------------------------------------------


@pytest.fixture(scope="module")
def server(store):
    """``mlflow models serve -m models:/ddhpose-h36m@champion`` on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(store["dir"] / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}",
         "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
        env=_env(store), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("mlflow models serve did not come up:\n"
                                + (store["dir"] / "serve.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _coco(t: int = 12, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) COCO-17 pixels with confidence 0.9 around the image centre."""
    rng = np.random.default_rng(seed)
    xy = 500 + rng.uniform(-80, 80, size=(1, 17, 2)) + rng.normal(0, 2, size=(t, 17, 2))
    return np.concatenate([xy, np.full((t, 17, 1), 0.9)], axis=-1)


def test_served_champion_answers_the_documented_request(server, store):
    kp = _coco()
    params = {"layout": "coco17", "image_size": [1000, 1000], "hypotheses": 2, "steps": 1}
    status, body = _post(server, {"inputs": kp.tolist(), "params": params})
    assert status == 200, body
    pred = np.asarray(body["predictions"])
    assert pred.shape == (12, 17, 3) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred[:, 0], 0.0)  # root-relative
    # the same numbers as the library on the registered checkpoint (seed 0 is the default)
    from ddhpose.inference.infer import infer_h36m17
    from ddhpose.keypoints import keypoints_from_array
    from ddhpose.model.checkpoint import load_model

    model = load_model(store["v1"]["checkpoint"])
    kps = keypoints_from_array(kp, "coco17", (1000, 1000))
    ref = infer_h36m17(model, kps.xy, kps.image_size, hypotheses=2, steps=1,
                       generator=torch.Generator().manual_seed(0), keep_hypotheses=False)
    np.testing.assert_allclose(pred, ref.poses_3d, atol=1e-5)
    status, body = _post(server, {"inputs": kp[..., :2].tolist()})  # params are optional
    assert status == 200 and np.asarray(body["predictions"]).shape == (12, 17, 3)


@pytest.mark.parametrize(("inputs", "params", "reason"), [
    (np.zeros((5, 16, 2)), {}, "keypoints must have shape (T, 17, 2) or (T, 17, 3)"),
    (_coco(), {"layout": "openpose"}, "unknown keypoint layout 'openpose'"),
    (np.full((5, 17, 2), np.nan), {}, "is missing in every frame"),
    (_coco(), {"hypotheses": 0}, "params.hypotheses must be an integer in 1..100"),
    (_coco(), {"image_size": [0, 1000]}, "image size must be two finite positive numbers"),
])
def test_bad_requests_get_400_with_one_line(server, inputs, params, reason):
    payload = json.loads(json.dumps({"inputs": inputs.tolist(), "params": params}).replace(
        "NaN", "null"))
    status, body = _post(server, payload)
    assert status == 400, body
    assert reason in body["message"], body["message"]
    assert "\n" not in body["message"] and "Traceback" not in json.dumps(body)
    assert len(body["message"]) < 300


# --- model.init and ddhpose infer by alias --------------------------------------------------------


def test_model_init_resolves_an_alias_and_records_the_version(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    p = load_params(REPO / "params.yaml")
    params = dataclasses.replace(
        p, model=dataclasses.replace(p.model, init=f"models:/{NAME}@{CHAMPION}", width=16,
                                     depth=2, heads=2, frames=9))
    init_model.run(params, tmp_path)
    record = json.loads((tmp_path / "models/init/source.json").read_text())
    assert record["kind"] == "registered_model" and record["version"] == "1"
    assert record["run_id"] == store["v1"]["run_id"]
    assert record["sha256"] == file_sha256(store["v1"]["checkpoint"])
    assert file_sha256(tmp_path / "models/init/init.pt") == record["sha256"]


def test_ddhpose_infer_loads_the_model_by_alias(store, tmp_path):
    kp = {"keypoints": _coco(20).tolist(), "layout": "coco17", "image_size": [1000, 1000]}
    (tmp_path / "kp.json").write_text(json.dumps(kp))
    outs = {}
    for label, ckpt in (("alias", f"models:/{NAME}@{CHAMPION}"),
                        ("file", str(store["v1"]["checkpoint"]))):
        proc = subprocess.run(
            [str(BIN / "ddhpose"), "infer", "--checkpoint", ckpt, "--keypoints",
             str(tmp_path / "kp.json"), "--out", str(tmp_path / f"{label}.npz")],
            env=_env(store), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        with np.load(tmp_path / f"{label}.npz") as z:
            outs[label] = z["poses_3d"]
    np.testing.assert_array_equal(outs["alias"], outs["file"])
    proc = subprocess.run(
        [str(BIN / "ddhpose"), "infer", "--checkpoint", f"models:/{NAME}@nosuchalias",
         "--keypoints", str(tmp_path / "kp.json"), "--out", str(tmp_path / "x.npz")],
        env=_env(store), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddhpose infer: error: models:/"), proc.stderr


# --- aliases across runs: better, then worse, then other test data --------------------------------


def test_champion_moves_only_to_a_better_model_on_the_same_test_data(store):
    client = MlflowClient(tracking_uri=store["uri"], registry_uri=store["uri"])

    def aliases() -> tuple[str, str]:
        return (str(client.get_model_version_by_alias(NAME, CHAMPION).version),
                str(client.get_model_version_by_alias(NAME, CHALLENGER).version))

    better = _register(store, 40.0, seed=1)
    assert better["champion"] is True and aliases() == (better["version"], better["version"])
    worse = _register(store, 45.0, seed=2)
    assert worse["champion"] is False and aliases() == (better["version"], worse["version"])
    other = _register(store, 1.0, fingerprint="fingerprint-b", seed=3)
    assert other["champion"] is False and aliases() == (better["version"], other["version"])
    decision = client.get_model_version(NAME, other["version"]).tags["alias_decision"]
    assert decision.startswith("challenger") and "other test data" in decision


def test_a_3dhp_model_takes_coco_keypoints_through_pyfunc(store):
    """The registered model of an MPI-INF-3DHP run answers COCO-17 requests too (its joints are
    mapped to Human3.6M-17), through the same pyfunc the server calls."""
    from ddhpose.inference.infer import infer
    from ddhpose.keypoints import keypoints_from_array
    from ddhpose.model.checkpoint import load_model

    client = MlflowClient(tracking_uri=store["uri"])
    run = client.create_run(store["experiment_id"])
    torch.manual_seed(3)
    ckpt = save_checkpoint(store["dir"] / "tiny_3dhp.pt", DDHPose(tiny_model_config("3dhp")))
    out = register_model(tracking_uri=store["uri"], run_id=run.info.run_id, checkpoint=ckpt,
                         name="ddhpose-3dhp", tags={"test_data_fingerprint": FP},
                         metric="mpjpe_mm_j_agg", value=90.0)
    model = mlflow.pyfunc.load_model(f"models:/ddhpose-3dhp/{out['version']}")
    kp = _coco(10)
    pred = model.predict(kp, params={"layout": "coco17", "image_size": [1000, 1000]})
    assert pred.shape == (10, 17, 3)
    np.testing.assert_array_equal(pred[:, 0], 0.0)  # Human3.6M-17 order: pelvis first
    # the same as the library in the model's own (3DHP) joint order, mapped back
    from ddhpose.inference.infer import H36M17_TO_3DHP17

    kps = keypoints_from_array(kp, "coco17", (1000, 1000))
    order = list(H36M17_TO_3DHP17)
    ref = infer(load_model(ckpt), kps.xy[:, order], (1000, 1000), hypotheses=1, steps=1,
                generator=torch.Generator().manual_seed(0), keep_hypotheses=False).poses_3d
    np.testing.assert_allclose(pred[:, order], ref, atol=1e-5)
