"""Checkpoints: ``convert-checkpoint`` never replaces its input, a refused pickle names its cause
in one line, the weights carry a sha256 checked on load (old files without it still load), and a
full disk while saving says so."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from demo_config import demo_model

from ddhpose.cli import main
from ddhpose.errors import CheckpointError
from ddhpose.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from ddhpose.model.ddhpose import DDHPose

CFG = demo_model(width=16, depth=2, heads=2, frames=9)


@pytest.fixture(scope="module")
def model() -> DDHPose:
    torch.manual_seed(0)
    return DDHPose(CFG).eval()


def _authors_file(path: Path, model: DDHPose) -> Path:
    """A file shaped like the authors' .bin: ``model_pos`` with ``module.`` keys, epoch, lr."""
    sd = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "lr": 1e-4, "model_pos": sd}, path)
    return path


def _error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ddhpose {command}: error: "), err
    return lines[0]


def test_convert_checkpoint_never_replaces_its_input(tmp_path, model, capsys):
    ref = _authors_file(tmp_path / "a.bin", model)
    before = ref.read_bytes()
    for extra in ([], ["--force"]):
        rc = main(["convert-checkpoint", str(ref), str(ref), *extra])
        line = _error_line(capsys.readouterr().err, "convert-checkpoint")
        assert rc == 2 and "a.bin" in line and "input" in line
        assert ref.read_bytes() == before


def test_convert_checkpoint_existing_output_needs_force(tmp_path, model, capsys):
    ref = _authors_file(tmp_path / "a.bin", model)
    out = tmp_path / "mine.pt"
    out.write_bytes(b"a model I trained")
    rc = main(["convert-checkpoint", str(ref), str(out)])
    assert rc == 2 and "--force" in _error_line(capsys.readouterr().err, "convert-checkpoint")
    assert out.read_bytes() == b"a model I trained"
    assert main(["convert-checkpoint", str(ref), str(out), "--force"]) == 0
    assert load_checkpoint(out)["train_state"]["epoch"] == 3


class _Evil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_refused_pickle_names_the_cause_in_one_plain_line(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"model_pos": _Evil()}, evil)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "Unsupported global: GLOBAL" in msg and "eval" in msg
    assert "Weights only load failed" not in msg
    rc = main(["convert-checkpoint", str(evil), str(tmp_path / "out.pt")])
    line = _error_line(capsys.readouterr().err, "convert-checkpoint")
    assert rc == 2 and "Unsupported global" in line and "\x1b" not in line


def test_a_flipped_weight_byte_is_detected(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model)
    assert len(load_checkpoint(path)["weights_sha256"]) == 64
    data = bytearray(path.read_bytes())
    name = "dir_bone_estimator.Spatial_pos_embed"
    raw = model.state_dict()[name].numpy().tobytes()
    at = bytes(data).find(raw)
    assert at > 0 and bytes(data).find(raw, at + 1) < 0
    data[at + len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match="checksum"):
            load(path)


def test_checkpoint_without_a_checksum_still_loads(tmp_path, model):
    """Files written before the checksum existed load (with no verification)."""
    path = save_checkpoint(tmp_path / "m.pt", model)
    content = torch.load(path, weights_only=True)
    del content["weights_sha256"]
    torch.save(content, path)
    assert "weights_sha256" not in load_checkpoint(path)
    assert isinstance(load_model(path), DDHPose)


def test_full_disk_while_saving_says_disk_full(tmpfs, model):
    from ddhpose.errors import os_error_line

    disk = tmpfs("disk", size="64k")
    with pytest.raises(OSError) as info:
        save_checkpoint(disk / "last.pt", model)
    assert info.value.errno == errno.ENOSPC
    line = os_error_line(info.value)
    assert "last.pt" in line and "disk full" in line
    assert list(disk.iterdir()) == []  # no temp file left
