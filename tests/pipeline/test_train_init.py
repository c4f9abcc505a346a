"""The train stage with ``model.init``: adopt (``train.epochs: 0``), fine-tune from it, rerun
when it changes (earlier files are set aside, never deleted), refuse a disagreeing ``model.*``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ddhpose.config.schema import Params, load_params
from ddhpose.data.processed import save_split
from ddhpose.errors import ConfigError
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from ddhpose.pipeline import init_model
from ddhpose.pipeline import train as train_stage
from ddhpose.synthetic.smoke import synthetic_split
from ddhpose.tracking.tracker import Tracker
from ddhpose.training.smoke import tiny_model_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(epochs: int, init: str, lr: float = 1e-3, **model) -> Params:
    p = load_params(REPO / "params.yaml")
    m = dict(width=16, depth=2, heads=2, mlp_ratio=2.0, frames=9, init=init, drop_path=0.0)
    m.update(model)
    return dataclasses.replace(
        p, model=dataclasses.replace(p.model, **m),
        train=dataclasses.replace(p.train, epochs=epochs, lr=lr, batch_clips=4,
                                  checkpoint_every=0, validate=False, device="cpu"))


@pytest.fixture
def root(tmp_path) -> Path:
    save_split(tmp_path / "data/processed/train.npz", synthetic_split("h36m", 2, 20, seed=0))
    save_split(tmp_path / "data/processed/test.npz", synthetic_split("h36m", 1, 20, seed=1))
    torch.manual_seed(7)
    save_checkpoint(tmp_path / "init.pt", DDHPose(tiny_model_config()))
    return tmp_path


def _stage(params: Params, root: Path) -> None:
    init_model.run(params, root)
    train_stage.run(params, root, Tracker("train", "noop"))


def _max_diff(a: DDHPose, b: DDHPose) -> float:
    return max(float((x - y).abs().max())
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_epochs_0_adopts_then_fine_tuning_starts_from_the_init(root, capsys):
    _stage(_params(0, "init.pt"), root)
    init = load_model(root / "init.pt")
    assert _max_diff(load_model(root / "models/best.pt"), init) == 0.0
    assert load_checkpoint(root / "models/last.pt")["train_state"]["adopted"] is True
    assert (root / "models/train_log.csv").read_text().startswith("epoch,")

    # fine-tune with a negligible learning rate: the weights stay at the init's
    _stage(_params(1, "init.pt", lr=1e-12), root)
    err = capsys.readouterr().err
    assert "adopted model.init" in err and "models/stale" in err  # the adopted files moved aside
    aside = next((root / "models/stale").iterdir())
    assert sorted(p.name for p in aside.iterdir()) == ["best.pt", "last.pt", "train_log.csv"]
    tuned = load_model(root / "models/best.pt")
    assert 0 < _max_diff(tuned, init) < 1e-6
    source = json.loads((root / "models/init/source.json").read_text())
    state = load_checkpoint(root / "models/last.pt")["train_state"]
    assert state["init_sha256"] == source["sha256"] and state["epoch"] == 1


def test_a_changed_init_starts_a_new_run(root, capsys):
    _stage(_params(1, "init.pt", lr=1e-12), root)
    torch.manual_seed(8)
    save_checkpoint(root / "init.pt", DDHPose(tiny_model_config()))  # same path, new weights
    _stage(_params(1, "init.pt", lr=1e-12), root)
    assert "model.init: the run started from other weights" in capsys.readouterr().err
    assert _max_diff(load_model(root / "models/best.pt"), load_model(root / "init.pt")) < 1e-6
    assert len(list((root / "models/stale").iterdir())) == 1


def test_model_keys_must_agree_with_the_checkpoint(root):
    with pytest.raises(ConfigError) as info:
        _stage(_params(0, "init.pt", width=32, heads=2), root)
    msg = str(info.value)
    assert msg.startswith("params key 'model.width'") and "has 16, params.yaml has 32" in msg
    assert "init.pt" in msg and not (root / "models/best.pt").exists()


def test_missing_init_file_names_the_key(root):
    with pytest.raises(ConfigError, match=r"'model.init': .*nope\.pt: no such checkpoint file"):
        init_model.run(_params(0, "nope.pt"), root)


def test_init_model_checks_only_its_own_keys(tmp_path):
    """init_model runs on every repro: a bad key it does not read is left to its stage."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["eval"]["headline"] = "bogus"
    raw["model"]["init"] = "ckpt.pt"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = init_model.stage_params(tmp_path / "params.yaml")
    assert params.model.init == "ckpt.pt" and params.data.dataset == raw["data"]["dataset"]
    raw["model"]["init"] = "s3://bucket/ckpt.pt"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"params key 'model\.init'"):
        init_model.stage_params(tmp_path / "params.yaml")


def test_an_init_file_that_dvc_yaml_does_not_watch_is_resolved_with_one_warning(root, capsys):
    """``dvc exp run -S model.init=FILE`` on the shipped dvc.yaml: resolved now, and one line
    says that a later change of FILE would not rerun train until the stage is shaped."""
    import shutil

    from ddhpose.pipeline.deps import rewrite

    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    init_model.run(_params(0, "init.pt"), root)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("init_model: warning: ")
    assert "must list it in deps" in err[0] and "ddhpose params apply" in err[0]
    assert (root / "models/init/init.pt").read_bytes() == (root / "init.pt").read_bytes()
    # shaped for the file: no warning
    (root / "dvc.yaml").write_text(rewrite((REPO / "dvc.yaml").read_text(), init="init.pt"))
    init_model.run(_params(0, "init.pt"), root)
    assert capsys.readouterr().err == ""
