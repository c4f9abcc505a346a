"""Checkpoints: the authors' .bin, conversion, our format round trip, refusal of bad files, CLI."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.cli import main as cli_main
from ddhpose.errors import CheckpointError
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import (
    convert_reference_checkpoint,
    infer_model_config,
    load_checkpoint,
    load_model,
    read_reference_checkpoint,
    save_checkpoint,
)

BIN = "checkpoint_reference_format.bin"


@pytest.fixture(scope="module")
def ref_state(parity_dir):
    """The weights stored in the .bin: those after the recorded training step (epoch 1; the
    fixture README calls them the same weights as state_dict.pt, but they are the stepped ones).
    """
    step = torch.load(parity_dir / "train_step.pt", weights_only=True)
    return step["state_dict_after_step"]


def _tiny(**kw) -> DDHPose:
    torch.manual_seed(0)
    return DDHPose(demo_model(**{"width": 16, "depth": 2, "frames": 9, **kw}))


def test_read_reference_bin(parity_dir, ref_state):
    sd = read_reference_checkpoint(parity_dir / BIN)
    assert list(sd) == list(ref_state)
    assert all(torch.equal(sd[k], ref_state[k]) for k in sd)
    cfg = infer_model_config(sd, "h36m")
    assert (cfg.width, cfg.depth, cfg.frames, cfg.heads, cfg.mlp_ratio) == (64, 3, 27, 8, 2.0)
    assert cfg.qkv_bias and cfg.timesteps == 1000


def test_load_model_from_reference_files(parity_dir, ref_state):
    model = load_model(parity_dir / BIN)
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref_state.items())
    bare = load_model(parity_dir / "state_dict.pt")  # a bare reference state_dict file
    assert bare.config == model.config and not bare.training
    case = torch.load(parity_dir / "denoiser_eval_layout.pt", weights_only=True)
    with torch.no_grad():
        out = bare.denoise(case["x_2d"], case["x_3d_dir"], case["x_3d_bone"], case["t"])
    assert (out - case["out"]).abs().max().item() <= 1e-5


def test_convert_reference_checkpoint(parity_dir, ref_state, tmp_path):
    out = convert_reference_checkpoint(parity_dir / BIN, tmp_path / "conv.pt")
    raw = torch.load(out, weights_only=True)  # plain content, no allow-list needed
    assert raw["format"] == "ddhpose-checkpoint" and raw["version"] == 1
    assert raw["model_config"]["width"] == 64 and raw["model_config"]["dataset"] == "h36m"
    assert raw["train_state"]["epoch"] == 1
    assert raw["train_state"]["lr"] == pytest.approx(9.93e-05)
    rs = raw["train_state"]["numpy_random_state"]
    assert rs["name"] == "MT19937" and len(rs["keys"]) == 624
    shuffler = np.random.RandomState()
    shuffler.set_state((rs["name"], np.asarray(rs["keys"], dtype=np.uint32), rs["pos"],
                        rs["has_gauss"], rs["cached_gaussian"]))
    original = torch.load(parity_dir / BIN, weights_only=False)["random_state"]
    assert shuffler.randint(1 << 30) == original.randint(1 << 30)
    assert len(raw["optimizer"]["param_groups"][0]["params"]) == 97
    assert len(raw["optimizer"]["state"]) == 93  # the 4 dead spatial qkv_xc tensors never step
    model = load_model(out)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref_state.items())
    assert model.betas.dtype == torch.float64
    # the AdamW state lines up with our parameter order (same order as the reference)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    opt.load_state_dict(raw["optimizer"])
    for p in model.parameters():
        if p in opt.state:
            assert opt.state[p]["exp_avg"].shape == p.shape


def test_round_trip_our_format(tmp_path):
    model = _tiny(dataset="3dhp", xc_layout="transpose")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model(torch.rand(1, 9, 17, 2), torch.randn(1, 9, 17, 3) * 100).abs().mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "m.pt", model, optimizer=opt,
                           train_state={"epoch": 3, "rng": torch.get_rng_state()},
                           metadata={"note": "x", "params": {"lr": 1e-4}})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
    ck = load_checkpoint(path)
    assert ck["train_state"]["epoch"] == 3 and ck["metadata"]["params"]["lr"] == 1e-4
    pos_embed = model.dir_bone_estimator.Spatial_pos_embed
    assert ck["optimizer"]["state"][0]["exp_avg"].shape == pos_embed.shape
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="'3dhp' model"):
        load_model(path, dataset="h36m")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_truncated_corrupt_and_foreign_files_are_refused(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _tiny())
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "garbage.pt": b"\x00not a checkpoint" * 10,
        "empty.pt": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        for loader in (load_checkpoint, load_model):
            with pytest.raises(CheckpointError) as info:
                loader(tmp_path / name)
            assert name in str(info.value) and "\n" not in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a ddhpose checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no DDHPose weights"):
        load_model(foreign)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": np.arange(3).astype(object)}))
    with pytest.raises(CheckpointError):
        load_model(evil)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_reference_bin_is_not_our_format(parity_dir):
    with pytest.raises(CheckpointError, match="convert-checkpoint"):
        load_checkpoint(parity_dir / BIN)


def test_mismatched_weights_never_half_load(tmp_path):
    sd = _tiny().state_dict()
    sd["dir_bone_estimator.head_pose.1.weight"] = torch.zeros(3, 8)
    ck = tmp_path / "bad_shape.pt"
    torch.save(sd, ck)
    with pytest.raises(CheckpointError, match=r"head_pose\.1\.weight"):
        load_model(ck)
    del sd["dir_bone_estimator.head_pose.1.weight"]
    torch.save(sd, ck)
    with pytest.raises(CheckpointError, match="missing"):
        load_model(ck)


def test_save_refuses_unloadable_train_state(tmp_path):
    with pytest.raises(CheckpointError, match=r"train_state\.rng"):
        save_checkpoint(tmp_path / "x.pt", _tiny(), train_state={"rng": np.random.RandomState(1)})
    assert not list(tmp_path.iterdir())


def test_cli_convert_checkpoint(parity_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "conv.pt"
    assert cli_main(["convert-checkpoint", str(parity_dir / BIN), str(out)]) == 0
    assert "width=64" in capsys.readouterr().out
    assert load_checkpoint(out)["model_config"]["depth"] == 3
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"nope")
    argv = ["convert-checkpoint", str(bad), str(tmp_path / "o.pt"), "--dataset", "3dhp"]
    assert cli_main(argv) == 2
    assert "bad.bin" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()


def test_import_ddhpose_stays_light():
    code = ("import sys, ddhpose; assert 'torch' not in sys.modules; "
            "f = ddhpose.load_model; assert 'torch' in sys.modules; print(f.__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "load_model"
