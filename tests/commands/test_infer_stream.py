"""``ddhpose infer --stream`` as a real subprocess: a JSON-lines file, a growing file
(``--follow``) and a slowly written stdin pipe, read back line by line as the lines come; one
pose per frame, in order, equal to the Python API; bad lines and outputs refused in one line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from demo_config import tiny_model

from ddhpose.inference.stream import lift_stream
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose

REPO = Path(__file__).resolve().parents[2]
F = 9
SIZE = (640.0, 480.0)
GUARD_S = 120  # a hung process fails the test instead of hanging it (not a speed claim)


@pytest.fixture(scope="module")
def model() -> DDHPose:
    return tiny_model(F)


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model)


def _frames(t: int, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) COCO-17 pixels with confidence."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(200, 400, size=(1, 17, 2)) + np.cumsum(rng.normal(0, 2, (t, 17, 2)), 0)
    return np.concatenate([np.round(xy, 2), np.full((t, 17, 1), 0.9)], axis=-1)


def _line(frame: np.ndarray, label: int | None = None) -> str:
    doc: dict = {"keypoints": frame.tolist()}
    if label is not None:
        doc["frame"] = label
    return json.dumps(doc) + "\n"


def _cmd(ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ddhpose.cli", "infer", "--stream", "--checkpoint", str(ckpt),
            "--layout", "coco17", "--image-size", *(str(v) for v in SIZE), "--hypotheses", "2",
            "--steps", "2", "--seed", "3", *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _readline(proc: subprocess.Popen) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], GUARD_S)
    assert ready, "no output line from ddhpose infer --stream"
    return proc.stdout.readline()


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ddhpose infer: error: ")
    return lines[0]


@pytest.mark.parametrize("policy", ["centred", "causal"])
def test_a_file_line_by_line(tmp_path, ckpt, model, policy):
    frames = _frames(13)
    src = tmp_path / "kp.jsonl"
    src.write_text("".join(_line(f, 100 + 2 * i) for i, f in enumerate(frames)))
    out = tmp_path / "poses.jsonl"
    proc = subprocess.run(_cmd(ckpt, "--keypoints", str(src), "--out", str(out), "--policy",
                               policy), capture_output=True, text=True, env=_env(),
                          timeout=GUARD_S)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [100 + 2 * i for i in range(13)]  # labels kept
    lat = F // 2 if policy == "centred" else 0
    assert [r["latency_frames"] for r in rows] == [min(lat, 12 - i) for i in range(13)]
    want = dict(lift_stream(model, frames, policy=policy, hypotheses=2, steps=2,
                            layout="coco17", image_size=SIZE, seed=3))
    for i, r in enumerate(rows):
        np.testing.assert_allclose(r["pose_3d"], want[i], atol=2e-6, rtol=0)


def test_a_growing_file_with_follow(tmp_path, ckpt):
    frames = _frames(6, seed=1)
    src = tmp_path / "live.jsonl"
    src.write_text("")
    proc = subprocess.Popen(_cmd(ckpt, "--keypoints", str(src), "--follow", "--policy",
                                 "causal"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        for i, f in enumerate(frames):
            with open(src, "a", encoding="utf-8") as fh:  # the detector appends a frame
                text = _line(f)
                if i == 2:  # a line written in two parts is read whole
                    fh.write(text[:40])
                    fh.flush()
                    fh.write(text[40:])
                else:
                    fh.write(text)
            row = json.loads(_readline(proc))  # causal: frame i out before frame i + 1 is in
            assert row["frame"] == i and row["latency_frames"] == 0
        with open(src, "a", encoding="utf-8") as fh:
            fh.write('{"end": true}\n')
        assert proc.wait(timeout=GUARD_S) == 0
        assert proc.stdout.read() == ""
    finally:
        _stop(proc)


def test_stdin_written_slowly_centred(ckpt):
    frames = _frames(8, seed=2)
    proc = subprocess.Popen(_cmd(ckpt), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        got = []
        for i, f in enumerate(frames):
            proc.stdin.write(_line(f))
            proc.stdin.flush()
            if i >= F // 2:  # centred: frame i - F//2 is out once frame i is in
                got.append(json.loads(_readline(proc)))
                assert got[-1]["frame"] == i - F // 2
                assert got[-1]["latency_frames"] == F // 2
        proc.stdin.close()  # end of input: the last F//2 frames, padded with the last frame
        rest = [json.loads(ln) for ln in proc.stdout.read().splitlines()]
        assert proc.wait(timeout=GUARD_S) == 0
        assert [r["frame"] for r in got + rest] == list(range(8))
        assert [r["latency_frames"] for r in rest] == [3, 2, 1, 0]
        assert all(np.asarray(r["pose_3d"]).shape == (17, 3) for r in got + rest)
    finally:
        _stop(proc)


@pytest.mark.parametrize(("line", "cause"), [
    ("not json\n", "line 3: not JSON"),
    ('{"keypoints": [[1, 2]]}\n', "line 3: 'keypoints' must be 17 joints"),
    ('{"frame": 1}\n', "line 3: no 'keypoints'"),
])
def test_a_bad_line_is_one_line_exit_2(tmp_path, ckpt, line, cause):
    frames = _frames(2)
    src = tmp_path / "kp.jsonl"
    src.write_text(_line(frames[0]) + _line(frames[1]) + line + _line(frames[0]))
    proc = subprocess.run(_cmd(ckpt, "--keypoints", str(src), "--policy", "causal"),
                          capture_output=True, text=True, env=_env(), timeout=GUARD_S)
    assert proc.returncode == 2
    err = _one_error_line(proc.stderr)
    assert str(src) in err and cause in err, err
    assert len(proc.stdout.splitlines()) == 2  # what was served before the bad line stays


def test_frame_labels_must_increase_and_a_bad_value(tmp_path, ckpt):
    frames = _frames(3)
    src = tmp_path / "kp.jsonl"
    src.write_text(_line(frames[0], 5) + _line(frames[1], 5))
    proc = subprocess.run(_cmd(ckpt, "--keypoints", str(src)), capture_output=True, text=True,
                          env=_env(), timeout=GUARD_S)
    assert proc.returncode == 2
    assert "line 2: 'frame' 5 does not follow frame 5" in _one_error_line(proc.stderr)
    bad = frames[2].tolist()
    bad[3][0] = "12"
    src.write_text(_line(frames[0]) + json.dumps({"keypoints": bad}) + "\n")
    proc = subprocess.run(_cmd(ckpt, "--keypoints", str(src)), capture_output=True, text=True,
                          env=_env(), timeout=GUARD_S)
    assert proc.returncode == 2
    assert "line 2: a keypoint value must be a number or null" in _one_error_line(proc.stderr)


def test_outputs_are_never_overwritten(tmp_path, ckpt):
    src = tmp_path / "kp.jsonl"
    src.write_text(_line(_frames(1)[0]))
    out = tmp_path / "poses.jsonl"
    out.write_text("mine\n")
    for extra, cause in (([], "exists; pass --force"),
                         (["--out", str(src), "--force"], "is an input file")):
        args = ["--keypoints", str(src), *(extra or ["--out", str(out)])]
        proc = subprocess.run(_cmd(ckpt, *args), capture_output=True, text=True, env=_env(),
                              timeout=GUARD_S)
        assert proc.returncode == 2
        assert cause in _one_error_line(proc.stderr)
    assert out.read_text() == "mine\n" and src.read_text() == _line(_frames(1)[0])
    proc = subprocess.run(_cmd(ckpt, "--keypoints", str(src), "--out", str(out), "--force"),
                          capture_output=True, text=True, env=_env(), timeout=GUARD_S)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["frame"] == 0


def test_stream_needs_the_image_size(tmp_path, ckpt):
    cmd = [c for c in _cmd(ckpt) if c not in ("--image-size", "640.0", "480.0")]
    proc = subprocess.run(cmd, input="", capture_output=True, text=True, env=_env(),
                          timeout=GUARD_S)
    assert proc.returncode == 2
    assert "--stream needs --image-size W H" in _one_error_line(proc.stderr)


def test_ctrl_c_ends_a_followed_stream_keeping_what_was_written(tmp_path, ckpt):
    src = tmp_path / "live.jsonl"
    src.write_text(_line(_frames(1)[0]))
    out = tmp_path / "poses.jsonl"
    proc = subprocess.Popen(_cmd(ckpt, "--keypoints", str(src), "--follow", "--policy",
                                 "causal", "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for _ in range(GUARD_S * 20):  # until the first pose is in the file
            if out.is_file() and out.read_text().endswith("\n"):
                break
            select.select([], [], [], 0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=GUARD_S) == 130
        err = proc.stderr.read()
        assert err.strip() == "ddhpose infer --stream: interrupted; the frames written so far " \
                              "stay", err
        assert json.loads(out.read_text())["frame"] == 0
    finally:
        _stop(proc)
