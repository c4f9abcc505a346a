"""``ddhpose infer`` never loses a user's file: inputs are never outputs, existing outputs need
``--force``, OUT.npz and OUT.json are replaced as a set (a real full tmpfs), OS errors and bad
numbers are one line with exit 2, checked before the model runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.cli import main
from ddhpose.keypoints import save_keypoints_json
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose

REPO = Path(__file__).resolve().parents[2]
SIZE = (640.0, 480.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=2, heads=2, frames=9, timesteps=50)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model)


def _kp_json(path: Path, t: int = 12, size: tuple[float, float] = SIZE) -> Path:
    rng = np.random.default_rng(0)
    kp = rng.uniform(200, 400, size=(1, 17, 2)) + np.cumsum(rng.normal(0, 2, (t, 17, 2)), 0)
    save_keypoints_json(path, kp, "h36m17", size)
    return path


def _infer(ckpt: Path, kp: Path, out: Path, *extra: str) -> list[str]:
    return ["infer", "--checkpoint", str(ckpt), "--keypoints", str(kp), "--out", str(out),
            *extra]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddhpose infer: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_json_input_is_not_overwritten(tmp_path, ckpt, capsys):
    walk = _kp_json(tmp_path / "walk.json")
    before = walk.read_bytes()
    rc = main(_infer(ckpt, walk, tmp_path / "walk.npz"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "walk.json" in line and "input" in line
    assert walk.read_bytes() == before and not (tmp_path / "walk.npz").exists()


def test_npz_input_is_not_overwritten_even_with_force(tmp_path, ckpt, capsys):
    src = tmp_path / "kp.npz"
    np.savez(src, keypoints=np.full((12, 17, 2), 300.0), image_size=np.array(SIZE),
             layout="h36m17")
    before = src.read_bytes()
    rc = main(_infer(ckpt, src, src, "--force"))
    assert rc == 2 and "input" in _one_error_line(capsys.readouterr().err)
    assert src.read_bytes() == before


def test_existing_output_needs_force(tmp_path, ckpt, capsys):
    kp = _kp_json(tmp_path / "kp.json")
    out = tmp_path / "pred.npz"
    out.with_suffix(".json").write_text("my notes\n")
    rc = main(_infer(ckpt, kp, out))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "pred.json" in line and "--force" in line
    assert out.with_suffix(".json").read_text() == "my notes\n" and not out.exists()
    assert main(_infer(ckpt, kp, out, "--force")) == 0
    assert json.loads(out.with_suffix(".json").read_text())["poses_3d"]


def test_out_naming_a_folder_is_one_line(tmp_path, ckpt, capsys):
    kp = _kp_json(tmp_path / "kp.json")
    (tmp_path / "res.npz").mkdir()
    rc = main(_infer(ckpt, kp, tmp_path / "res.npz", "--force"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "res.npz" in line and "folder" in line


def test_read_only_output_folder_is_one_line(tmp_path, ckpt, tmpfs, capsys):
    ro = tmpfs("ro", size="1m", read_only=True)
    kp = _kp_json(tmp_path / "kp.json")
    rc = main(_infer(ckpt, kp, ro / "pred.npz"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.endswith(f"error: {ro}: read-only file system")


def test_steps_beyond_the_model_timesteps_fail_at_once(tmp_path, ckpt, capsys):
    kp = _kp_json(tmp_path / "kp.json")
    rc = main(_infer(ckpt, kp, tmp_path / "o.npz", "--steps", "51"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--steps 51" in line and "50" in line
    assert not (tmp_path / "o.npz").exists()


def test_library_infer_bounds_steps(ckpt):
    from ddhpose.inference.infer import infer
    from ddhpose.model.checkpoint import load_model

    with pytest.raises(ValueError, match="between 1 and the model's 50 diffusion timesteps"):
        infer(load_model(ckpt), np.full((9, 17, 2), 300.0), SIZE, steps=51)


@pytest.mark.parametrize("extra, needle", [
    (["--hypotheses", "100000"], "--hypotheses"),
    (["--batch-windows", "0"], "--batch-windows"),
    (["--image-size", "0", "480"], "--image-size"),
    (["--min-confidence", "nan"], "--min-confidence"),
    (["--seed", "-1"], "--seed"),
])
def test_numbers_are_bounded(tmp_path, ckpt, capsys, extra, needle):
    kp = _kp_json(tmp_path / "kp.json")
    rc = main(_infer(ckpt, kp, tmp_path / "o.npz", *extra))
    assert rc == 2 and needle in _one_error_line(capsys.readouterr().err)


def test_keypoints_far_outside_the_image_are_refused(tmp_path, ckpt, capsys):
    kp = _kp_json(tmp_path / "kp.json")  # keypoints around 200..400 px
    rc = main(_infer(ckpt, kp, tmp_path / "o.npz", "--image-size", "1", "1"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "image size" in line and "--image-size" in line
    far = tmp_path / "far.json"
    doc = json.loads(kp.read_text())
    doc["keypoints"][3][5] = [1e9, 300.0]
    far.write_text(json.dumps(doc))
    rc = main(_infer(ckpt, far, tmp_path / "o.npz"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "frame 3" in line and "1e+09" in line


def test_keypoints_partly_outside_the_image_warn(tmp_path, ckpt, capsys):
    kp = _kp_json(tmp_path / "kp.json", size=(350.0, 480.0))  # some u beyond 350 px
    assert main(_infer(ckpt, kp, tmp_path / "o.npz")) == 0
    err = capsys.readouterr().err
    assert "ddhpose infer: warning:" in err and "outside" in err


def test_full_disk_keeps_the_previous_pair(tmp_path, ckpt, tmpfs):
    """A real 1 MB tmpfs: the first run fits (85 kB npz + 630 kB JSON); the second (hypotheses
    saved) fits its 170 kB npz but not its 1.5 MB JSON. The previous OUT.npz and OUT.json must
    both survive unchanged, with no temp file left and one error line that says the disk is
    full (before: the new npz was left beside the old JSON, and a 38-line traceback)."""
    disk = tmpfs("disk", size="1m")
    kp = _kp_json(tmp_path / "kp.json", t=200)
    out = disk / "pred.npz"
    assert main(_infer(ckpt, kp, out)) == 0
    old = {p.name: p.read_bytes() for p in disk.iterdir()}
    assert set(old) == {"pred.npz", "pred.json"}
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ddhpose.cli", *_infer(ckpt, kp, out, "--force", "--hypotheses",
                                                       "2", "--save-hypotheses")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "disk full" in line and "pred" in line
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == old
