"""``ddhpose export onnx`` and ``ddhpose infer --runtime onnx`` as a user runs them (real
subprocesses, a real onnxruntime): the ONNX path gives the PyTorch path's 3D poses on
examples/keypoints_walk_coco.json to 1e-4 m; bad uses are one line, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.cli import main
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnx", reason="the onnx extra: pip install -e '.[onnx]'")

REPO = Path(__file__).resolve().parents[2]
WALK = REPO / "examples" / "keypoints_walk_coco.json"


def _ddhpose(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ddhpose.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A small h36m checkpoint (width 32, depth 2, F 27), random weights."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("export")
    return save_checkpoint(folder / "small.pt",
                           DDHPose(demo_model(width=32, depth=2, heads=4, frames=27)))


def test_export_then_infer_onnx_equals_torch(small):
    cwd = small.parent
    done = _ddhpose("export", "onnx", str(small), "small.onnx", cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "max abs diff" in done.stdout and (cwd / "small.onnx").is_file()
    diff = float(done.stdout.split("max abs diff ")[1].split(" ")[0])
    assert diff <= 1e-4
    common = ["--keypoints", str(WALK), "--hypotheses", "3", "--steps", "2", "--seed", "5"]
    torch_run = _ddhpose("infer", "--checkpoint", str(small), *common, "--out", "t.npz",
                         cwd=cwd)
    onnx_run = _ddhpose("infer", "--runtime", "onnx", "--onnx", "small.onnx", *common,
                        "--out", "o.npz", cwd=cwd)
    assert torch_run.returncode == 0, torch_run.stderr
    assert onnx_run.returncode == 0, onnx_run.stderr
    t, o = np.load(cwd / "t.npz"), np.load(cwd / "o.npz")
    assert t["poses_3d"].shape == o["poses_3d"].shape == (120, 17, 3)
    assert np.abs(t["poses_3d"] - o["poses_3d"]).max() <= 1e-4
    assert np.abs(t["spread"] - o["spread"]).max() <= 1e-4
    assert str(o["runtime"]) == "onnx" and str(o["checkpoint"]) == "small.onnx"
    assert str(t["runtime"]) == "torch"
    assert np.abs(t["poses_3d"]).max() > 1e-3  # poses, not zeros: the comparison can fail


def _one_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ddhpose {command}: error: "), err
    return err[0]


def test_export_refusals(small, tmp_path, capsys):
    existing = tmp_path / "there.onnx"
    existing.write_bytes(b"user data")
    assert main(["export", "onnx", str(small), str(existing)]) == 2
    assert "exists; pass --force" in _one_error(capsys, "export")
    assert existing.read_bytes() == b"user data"
    assert main(["export", "onnx", str(small), str(small), "--force"]) == 2
    assert "must end in .onnx" in _one_error(capsys, "export")
    assert main(["export", "onnx", str(tmp_path / "none.pt"), str(tmp_path / "n.onnx")]) == 2
    assert "none.pt" in _one_error(capsys, "export")
    assert not (tmp_path / "n.onnx").exists()


def test_export_refuses_a_graph_that_differs(small, tmp_path, capsys, monkeypatch):
    """Above the limit (1e-4 m; here set below zero) nothing is written, not even a temp file."""
    from ddhpose.deploy import onnx_export

    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # in-process: main() below
    out = tmp_path / "x.onnx"
    assert main(["export", "onnx", str(small), str(out)]) == 2
    assert "differs from model.denoise" in _one_error(capsys, "export")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_infer_onnx_refusals(small, tmp_path, capsys):
    out = str(tmp_path / "o.npz")
    base = ["infer", "--keypoints", str(WALK), "--out", out]
    assert main([*base, "--runtime", "onnx", "--onnx", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx: no such ONNX file" in _one_error(capsys, "infer")
    assert main([*base, "--runtime", "onnx"]) == 2
    assert "--runtime onnx needs --onnx" in _one_error(capsys, "infer")
    assert main(base) == 2
    assert "--checkpoint is required" in _one_error(capsys, "infer")
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a graph")
    assert main([*base, "--runtime", "onnx", "--onnx", str(bad)]) == 2
    assert "bad.onnx: is not an ONNX graph" in _one_error(capsys, "infer")
    from ddhpose.deploy.onnx_export import export_denoiser
    from ddhpose.model.checkpoint import load_model

    graph = export_denoiser(load_model(small), tmp_path / "g.onnx")
    assert main([*base, "--runtime", "onnx", "--onnx", str(graph), "--steps", "5000"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "g.onnx: --steps 5000 exceeds the model's 1000" in errors[0]
    assert not Path(out).exists()
