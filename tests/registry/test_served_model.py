"""The served ddhpose model behind a real ``mlflow models serve`` (real HTTP on 127.0.0.1):
every bad request, including the ones MLflow's scoring server refuses before our code runs
(malformed JSON, an empty body), is a 4xx with one short line; unknown params are refused, not
ignored; the frames, work and body of a request are bounded (:mod:`ddhpose.inference.limits`),
and a refused request leaves the server answering. Several people (``tracks``, ``frames``), the
other layouts and ``uncertainty``: a two-person AlphaPose file as a request gives, per track, the
poses ``ddhpose infer`` gives for the same file, and the exact JSON of the answers."""

from __future__ import annotations

import http.client
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
from demo_config import demo_model

from ddhpose.inference.limits import (
    MAX_HYPOTHESES,
    MAX_REQUEST_BYTES,
    MAX_SERVED_FRAMES,
    MAX_SERVED_WORK,
)
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose

mlflow = pytest.importorskip("mlflow")

BIN = Path(sys.executable).parent
CODE = Path(__file__).resolve().parents[2]
FRAMES = 9  # the tiny model's window
SERVED: dict[str, object] = {}  # the served model's checkpoint (ddhpose infer) and URIs (pyfunc)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny ddhpose model logged to a SQLite store and served on a free 127.0.0.1 port."""
    from ddhpose.registry.served_model import log_model

    root = tmp_path_factory.mktemp("served")
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=8, depth=1, heads=2, frames=FRAMES, timesteps=50)).eval()
    ckpt = save_checkpoint(root / "tiny.pt", model)
    SERVED["checkpoint"] = ckpt
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("served", artifact_location=(root / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = log_model(ckpt)
    mlflow.set_tracking_uri(None)
    SERVED.update(uri=uri, model_uri=info.model_uri)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    log_path = root / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", info.model_uri, "--env-manager",
             "local", "-p", str(port), "-h", "127.0.0.1"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow models serve did not come up:\n"
                                + log_path.read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post_raw(url: str, data: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    req = urllib.request.Request(f"{url}/invocations", data=data, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: dict) -> tuple[int, bytes]:
    return _post_raw(url, json.dumps(body).encode())


def _pose(t: int) -> list:
    rng = np.random.default_rng(0)
    xy = 500 + rng.uniform(-80, 80, size=(1, 17, 2)) + rng.normal(0, 2, size=(t, 17, 2))
    return np.round(xy, 1).tolist()


def _one_line(status: int, raw: bytes, *needles: str) -> str:
    """The response's message: one line, short, no traceback, no echo of the input."""
    assert 400 <= status < 500, (status, raw[:500])
    body = json.loads(raw)
    message = body["message"]
    assert "\n" not in message and "Traceback" not in raw.decode(), message
    assert len(message) < 300, message
    assert "stack_trace" not in body, body.keys()
    for needle in needles:
        assert needle in message, message
    return message


def _still_answers(url: str) -> None:
    status, raw = _post(url, {"inputs": _pose(4)})
    assert status == 200, raw[:500]
    assert np.asarray(json.loads(raw)["predictions"]).shape == (4, 17, 3)


def test_wrong_typed_params_are_one_line(served):
    status, raw = _post(served, {"inputs": _pose(4), "params": {"hypotheses": "two"}})
    _one_line(status, raw, "params.hypotheses", "'two'")
    status, raw = _post(served, {"inputs": _pose(4), "params": {"image_size": "big"}})
    _one_line(status, raw, "params.image_size")
    status, raw = _post(served, {"inputs": _pose(4), "params": [1, 2]})
    _one_line(status, raw, "params")


def test_an_unknown_param_is_refused_with_the_known_keys(served):
    status, raw = _post(served, {"inputs": _pose(4), "params": {"hypothesis": 2}})
    message = _one_line(status, raw, "'hypothesis'")
    for key in ("layout", "image_size", "hypotheses", "steps", "seed"):
        assert key in message, message


@pytest.mark.parametrize(("data", "needle"), [
    (b"", "empty request body"),
    (b'{"inputs": [[[1, 2]', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b'{"params": {}}', "inputs"),
])
def test_malformed_bodies_are_one_line(served, data, needle):
    status, raw = _post_raw(served, data)
    assert status == 400
    _one_line(status, raw, needle)


def test_too_many_frames_are_refused_and_point_to_ddhpose_infer(served):
    frames = MAX_SERVED_FRAMES + 1
    flat = np.full((frames, 17, 2), 500.0).tolist()
    status, raw = _post(served, {"inputs": flat})
    assert status == 413
    _one_line(status, raw, f"{frames} frames", str(MAX_SERVED_FRAMES), "ddhpose infer")
    _still_answers(served)


def test_too_much_work_is_refused(served):
    # H x K x T over the bound with few frames: a small body asking for a long computation
    frames = MAX_SERVED_WORK // (MAX_HYPOTHESES * 10) + 1
    params = {"hypotheses": MAX_HYPOTHESES, "steps": 10}
    status, raw = _post(served, {"inputs": _pose(frames), "params": params})
    assert status == 413
    _one_line(status, raw, str(MAX_SERVED_WORK), "ddhpose infer")
    _still_answers(served)


def test_a_body_over_the_byte_bound_is_refused_unread(served):
    # only the headers are sent: the answer comes from the Content-Length, the body never read
    host, port = served.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/invocations")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
        conn.endheaders()
        resp = conn.getresponse()
        status, raw = resp.status, resp.read()
    finally:
        conn.close()
    assert status == 413
    _one_line(status, raw, str(MAX_REQUEST_BYTES), "ddhpose infer")
    _still_answers(served)


def test_a_body_that_is_not_json_is_refused(served):
    status, raw = _post_raw(served, b"1,2\n3,4\n", content_type="text/csv")
    assert status == 415
    _one_line(status, raw, "application/json", "text/csv")


def test_inputs_mlflow_would_reprint_are_one_line(served):
    status, raw = _post(served, {"inputs": [[1.0, 2.0]] * 50})  # 2-D: not frames of joints
    _one_line(status, raw, "inputs must be T x J x 2|3")
    status, raw = _post(served, {"inputs": [[[1.0, 2.0]] * 17, [[1.0]] * 17] * 40})  # ragged
    assert status == 400
    message = _one_line(status, raw)
    assert "[[" not in message, message


def test_a_good_request_still_gets_its_poses(served):
    status, raw = _post(served, {"inputs": _pose(12), "params": {
        "layout": "h36m17", "image_size": [1000, 1000], "hypotheses": 2, "steps": 2, "seed": 1}})
    assert status == 200, raw[:500]
    pred = np.asarray(json.loads(raw)["predictions"])
    assert pred.shape == (12, 17, 3) and np.isfinite(pred).all()


# --- several people, layouts, uncertainty ---------------------------------------------------------


ALPHAPOSE = CODE / "examples" / "alphapose_two_people.json"
ALPHAPOSE_SIZE = [1000, 1002]  # the example's image (examples/README.md, section 5)


def alphapose_request(path: Path) -> dict:
    """An AlphaPose ``--pose_track`` file (one entry per person and frame) as a served request:
    one input row per entry (17 x (x, y, score)), ``tracks`` the entries' ``idx``, ``frames``
    the number in each ``image_id``."""
    entries = json.loads(path.read_text())
    return {
        "inputs": [np.reshape(e["keypoints"], (-1, 3)).tolist() for e in entries],
        "params": {"layout": "coco17", "image_size": ALPHAPOSE_SIZE,
                   "tracks": [str(e["idx"]) for e in entries],
                   "frames": [int(Path(e["image_id"]).stem) for e in entries]},
    }


def test_two_people_from_alphapose_equal_ddhpose_infer_per_track(served, tmp_path):
    from ddhpose.cli import main

    request = alphapose_request(ALPHAPOSE)
    request["params"].update({"hypotheses": 2, "steps": 2, "seed": 3, "uncertainty": True})
    status, raw = _post(served, request)
    assert status == 200, raw[:500]
    answer = json.loads(raw)
    # the exact JSON: {"predictions": {"poses_3d": N x 17 x 3, "uncertainty": N x 17}}
    assert list(answer) == ["predictions"]
    assert sorted(answer["predictions"]) == ["poses_3d", "uncertainty"]
    poses = np.asarray(answer["predictions"]["poses_3d"])
    spread = np.asarray(answer["predictions"]["uncertainty"])
    rows = len(request["inputs"])
    assert poses.shape == (rows, 17, 3) and spread.shape == (rows, 17)

    out = tmp_path / "two.npz"
    assert main(["infer", "--checkpoint", str(SERVED["checkpoint"]), "--keypoints",
                 str(ALPHAPOSE), "--image-size", *map(str, ALPHAPOSE_SIZE), "--hypotheses", "2",
                 "--steps", "2", "--seed", "3", "--out", str(out)]) == 0
    z = np.load(out)
    assert z["tracks"].tolist() == ["1", "2"]
    tracks = np.asarray(request["params"]["tracks"])
    frames = np.asarray(request["params"]["frames"])
    for tid in ("1", "2"):
        mine = tracks == tid
        at = np.searchsorted(z[f"track_{tid}_frames"], frames[mine])
        np.testing.assert_array_equal(z[f"track_{tid}_frames"][at], frames[mine])
        np.testing.assert_allclose(poses[mine], z[f"track_{tid}_poses_3d"][at], atol=1e-5)
        np.testing.assert_allclose(spread[mine], z[f"track_{tid}_spread"][at], atol=1e-5)
    assert len(z["track_2_frames"]) > int(np.sum(tracks == "2"))  # person 2's gap was filled
    assert spread[:, 1:].min() > 0  # two hypotheses differ


def test_without_uncertainty_the_answer_is_unchanged(served):
    request = alphapose_request(ALPHAPOSE)
    status, raw = _post(served, request)
    assert status == 200, raw[:500]
    poses = np.asarray(json.loads(raw)["predictions"])
    assert poses.shape == (len(request["inputs"]), 17, 3)
    request["params"]["uncertainty"] = True  # H = 1: the spread is 0
    status, raw = _post(served, request)
    assert status == 200, raw[:500]
    both = json.loads(raw)["predictions"]
    np.testing.assert_allclose(both["poses_3d"], poses, atol=1e-6)
    np.testing.assert_array_equal(both["uncertainty"], 0.0)


def test_a_25_joint_request_is_read_as_openpose25(served):
    from ddhpose.keypoints.layouts import COCO17_NAMES, OPENPOSE25_NAMES

    coco = np.asarray(_pose(10))
    body25 = np.full((10, 25, 2), np.nan)
    for i, name in enumerate(COCO17_NAMES):
        body25[:, OPENPOSE25_NAMES.index(name)] = coco[:, i]
    body25[:, OPENPOSE25_NAMES.index("neck")] = coco[:, 5:7].mean(axis=1)
    body25[:, OPENPOSE25_NAMES.index("mid_hip")] = coco[:, 11:13].mean(axis=1)
    inputs = json.loads(json.dumps(body25.tolist()).replace("NaN", "null"))
    status, raw = _post(served, {"inputs": inputs})  # no layout: 25 joints are BODY_25
    assert status == 200, raw[:500]
    status, ref = _post(served, {"inputs": coco.tolist(), "params": {"layout": "coco17"}})
    assert status == 200, ref[:500]
    np.testing.assert_allclose(json.loads(raw)["predictions"], json.loads(ref)["predictions"],
                               atol=1e-5)


@pytest.mark.parametrize(("params", "needles"), [
    ({"tracks": ["a", "b"]}, ["params.tracks has 2 entries for 4 input rows"]),
    ({"tracks": [1, 1, 2, 2]}, ["params.tracks", "track ids"]),
    ({"frames": [0, 1, 1, 2]}, ["params.frames", "frame 1 twice"]),
    ({"frames": [0, 1, 2, -3]}, ["params.frames", "-3"]),
    ({"uncertainty": "yes"}, ["params.uncertainty"]),
    ({"layout": "body25"}, ["params.layout", "'body25'", "openpose25"]),
    ({"layout": "halpe26"}, ["(T, 26, 2)", "got (4, 17, 2)"]),
])
def test_bad_tracks_frames_layouts_are_400_one_line(served, params, needles):
    status, raw = _post(served, {"inputs": _pose(4), "params": params})
    assert status == 400, raw[:500]
    _one_line(status, raw, *needles)
    _still_answers(served)


def test_every_layout_through_http_gives_the_coco17_poses(served):
    """The same people in each layout (tests/layout_keypoints.py): the answers agree."""
    from layout_keypoints import from_coco

    from ddhpose.keypoints import LAYOUTS

    coco = np.concatenate([np.asarray(_pose(10)), np.full((10, 17, 1), 0.9)], axis=-1)
    status, raw = _post(served, {"inputs": coco.tolist(), "params": {"layout": "coco17"}})
    assert status == 200, raw[:500]
    ref = np.asarray(json.loads(raw)["predictions"])
    for layout in LAYOUTS:
        params = {} if layout in ("h36m17", "openpose25", "halpe26", "mediapipe33",
                                  "coco_wholebody133") else {"layout": layout}  # auto
        status, raw = _post(served, {"inputs": from_coco(coco, layout).tolist(),
                                     "params": params})
        assert status == 200, (layout, raw[:500])
        np.testing.assert_allclose(json.loads(raw)["predictions"], ref, atol=1e-5,
                                   err_msg=layout)


def test_pyfunc_in_python_takes_the_new_params(served):
    """The logged signature carries tracks, frames and uncertainty: ``pyfunc.predict`` passes
    them (MLflow drops params its schema lacks) and returns the dict."""
    request = alphapose_request(ALPHAPOSE)
    params = {**request["params"], "hypotheses": 2, "uncertainty": True}
    mlflow.set_tracking_uri(SERVED["uri"])
    try:
        model = mlflow.pyfunc.load_model(SERVED["model_uri"])
    finally:
        mlflow.set_tracking_uri(None)
    out = model.predict(np.asarray(request["inputs"], dtype=np.float64), params=params)
    status, raw = _post(served, {"inputs": request["inputs"], "params": params})
    assert status == 200, raw[:500]
    answer = json.loads(raw)["predictions"]
    np.testing.assert_allclose(out["poses_3d"], answer["poses_3d"], atol=1e-6)
    np.testing.assert_allclose(out["uncertainty"], answer["uncertainty"], atol=1e-6)
