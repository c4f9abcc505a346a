"""What a file that is not a checkpoint is called (issue #26, messages): a text file, a plain
Python pickle, an empty file, a NumPy ``.npz``, a directory. One line saying what the file is,
with no torch warning lines; real files, and a real ``ddhpose infer`` subprocess for the stderr.
A PyTorch file in the legacy (non-zip) format still loads."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddhpose.errors import CheckpointError, ConfigError
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from ddhpose.pipeline.init_model import resolve_init
from ddhpose.training.smoke import tiny_model_config

REPO = Path(__file__).resolve().parents[2]


class _Evil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def _files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the message must say)."""
    out = {}

    def put(name: str, data: bytes, says: str) -> None:
        (d / name).write_bytes(data)
        out[name] = (d / name, says)

    put("notes.pt", b"epoch 3, lr 1e-4\nthis is my model\n",
        "not a PyTorch checkpoint: a text file")
    put("plain.pkl", pickle.dumps({"weights": [1.0, 2.0]}, protocol=4),
        "not a PyTorch checkpoint: a plain Python pickle (protocol 4)")
    put("plain0.pkl", pickle.dumps({"weights": [1.0, 2.0]}, protocol=0),
        "not a PyTorch checkpoint: a plain Python pickle (protocol 0)")
    put("evil.pkl", pickle.dumps(_Evil(), protocol=2),
        "not a PyTorch checkpoint: a plain Python pickle (protocol 2)")
    put("empty.pt", b"", "not a PyTorch checkpoint: an empty file")
    with open(d / "arrays.npz", "wb") as fh:
        np.savez(fh, a=np.zeros(3))
    out["arrays.npz"] = (d / "arrays.npz", "not a PyTorch checkpoint: a zip archive without "
                                           "data.pkl")
    return out


@pytest.mark.parametrize("name", ["notes.pt", "plain.pkl", "plain0.pkl", "evil.pkl", "empty.pt",
                                  "arrays.npz"])
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, name, recwarn):
    path, says = _files(tmp_path)[name]
    for loader in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError) as info:
            loader(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: {says}"), msg
        assert "\n" not in msg and "could run code: UnpicklingError" not in msg, msg
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_a_directory_is_called_a_directory(tmp_path):
    folder = tmp_path / "ckpt.pt"
    folder.mkdir()
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: a directory, not a checkpoint file"):
        load_model(folder)
    with pytest.raises(ConfigError) as info:
        resolve_init(str(folder), tmp_path, tmp_path / "work")
    assert info.value.key == "model.init"
    assert f"{folder}: a directory, not a checkpoint file" in str(info.value), info.value


def test_infer_with_a_plain_pickle_prints_one_line_without_torch_warnings(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "ddhpose.cli", "infer", "--checkpoint", str(path), "--keypoints",
         str(REPO / "examples" / "keypoints_walk_coco.json"), "--out", str(tmp_path / "o.npz")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "warning: " not in ln or "Warning" in ln]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"ddhpose infer: error: {path}: not a PyTorch checkpoint: a plain "
                                "Python pickle"), proc.stderr
    assert "UserWarning" not in proc.stderr and "site-packages" not in proc.stderr, proc.stderr


def test_a_legacy_format_pytorch_checkpoint_still_loads(tmp_path):
    torch.manual_seed(0)
    model = DDHPose(tiny_model_config("h36m"))
    zipped = save_checkpoint(tmp_path / "zip.pt", model)
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(zipped, weights_only=True), legacy,
               _use_new_zipfile_serialization=False)
    assert not legacy.read_bytes().startswith(b"PK")
    loaded = load_model(legacy)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
