"""Evaluation-only data (``train.epochs: 0``) and how real Human3.6M files are read: fetch_data
and preprocess need only the test files; extra 2D entries are ignored with one note; errors name
the params key and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ddhpose.config.schema import Params, load_params
from ddhpose.data.h36m import save_positions_2d, save_positions_3d
from ddhpose.errors import ConfigError, DataError
from ddhpose.pipeline import fetch_data as F
from ddhpose.pipeline.preprocess import build_splits

REPO = Path(__file__).resolve().parents[2]


def _params(epochs: int, **data) -> Params:
    p = load_params(REPO / "params.yaml")
    init = "some.pt" if epochs == 0 else ""
    return dataclasses.replace(p, data=dataclasses.replace(p.data, **data),
                               model=dataclasses.replace(p.model, init=init),
                               train=dataclasses.replace(p.train, epochs=epochs))


def test_3dhp_fetch_needs_no_training_file_when_evaluating_only(tmp_path):
    src = tmp_path / "official"
    (src / "TS5").mkdir(parents=True)
    (src / "TS5" / "annot_data.mat").write_bytes(b"annotations")
    cfg = _params(0, dataset="3dhp", source="local", path=str(src))
    files = F.fetch_data(cfg.data, tmp_path / "raw", test_only=True)
    assert set(files) == {f"{F.MPI_TEST_DIR}/TS5/annot_data.mat"}
    with pytest.raises(DataError, match=f"missing {F.MPI_TRAIN}"):
        F.fetch_data(cfg.data, tmp_path / "raw2", test_only=False)


def _h36m_raw(raw: Path, subjects_3d: dict, subjects_2d: dict) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    save_positions_3d(raw / "data_3d_h36m.npz", subjects_3d)
    save_positions_2d(raw / "data_2d_h36m_detections.npz", subjects_2d)


def _seqs(rng, actions: dict[str, int]) -> dict:
    return {a: (rng.normal(size=(n, 32, 3)) * 0.3 + [0, 0, 5]).astype(np.float32)
            for a, n in actions.items()}


def _cams(pos: dict, rng, extra: int = 0) -> dict:
    return {a: [rng.uniform(0, 1000, size=(len(x) + extra, 17, 2)).astype(np.float32)
                for _ in range(4)] for a, x in pos.items()}


@pytest.fixture
def test_only_h36m(tmp_path) -> Path:
    """VideoPose3D files with the test subjects only; the 2D file also holds an extra subject
    and an extra action (as real CPN files can), and longer 2D sequences."""
    rng = np.random.default_rng(0)
    pos3 = {"S9": _seqs(rng, {"Walking 1": 8, "Eating": 6}), "S11": _seqs(rng, {"Walking": 7})}
    pos2 = {s: _cams(acts, rng, extra=2) for s, acts in pos3.items()}
    pos2["S9"]["Phoning"] = _cams({"Phoning": np.zeros((5, 1))}, rng)["Phoning"]
    pos2["S1"] = _cams({"Walking": np.zeros((5, 1))}, rng)
    _h36m_raw(tmp_path / "raw", pos3, pos2)
    return tmp_path / "raw"


def test_h36m_test_subjects_only_with_extras_noted_once(test_only_h36m, capsys):
    splits = build_splits(_params(0), test_only_h36m)
    assert set(splits) == {"test"}
    test = splits["test"]
    assert sorted(set(test.seq_subject.tolist())) == ["S11", "S9"]
    assert "Phoning" not in set(test.seq_action.tolist())
    assert test.num_frames == 4 * (8 + 6 + 7)  # 2D cut to the mocap length
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "note:" in ln]
    assert len(notes) == 1
    assert "ignored 2 2D entries without mocap" in notes[0] and "S1" in notes[0]
    assert "S9 'Phoning'" in notes[0]


def test_h36m_training_needs_the_training_subjects(test_only_h36m):
    with pytest.raises(ConfigError, match=r"params key 'data.subjects_train': S1 is not in .*"
                                          r"data_3d_h36m\.npz \(it holds S9, S11\)"):
        build_splits(_params(3), test_only_h36m)


def test_unknown_test_subject_names_key_and_file(test_only_h36m):
    with pytest.raises(ConfigError, match=r"'data.subjects_test': S99 is not in .*data_3d_h36m"):
        build_splits(_params(0, subjects_test=("S9", "S99")), test_only_h36m)


def test_every_action_prefix_must_match(test_only_h36m):
    params = _params(0, actions=("Walk", "Eatign"))
    with pytest.raises(ConfigError, match=r"'data.actions': prefix 'Eatign' matches no action "
                                          r"of .*\(actions: Eating, Walking\)"):
        build_splits(params, test_only_h36m)
    splits = build_splits(_params(0, actions=("Walk", "Eat")), test_only_h36m)
    assert set(splits["test"].seq_action.tolist()) == {"Walking 1", "Eating", "Walking"}


def test_short_2d_sequence_error_names_the_2d_file(tmp_path):
    rng = np.random.default_rng(1)
    pos3 = {"S9": _seqs(rng, {"Walking 1": 8})}
    pos2 = {"S9": _cams(pos3["S9"], rng, extra=-2)}
    _h36m_raw(tmp_path / "raw", pos3, pos2)
    with pytest.raises(DataError, match=r"data_2d_h36m_detections\.npz: S9 'Walking 1' camera 0: "
                                        r"6 2D frames but 8 mocap frames"):
        build_splits(_params(0, subjects_test=("S9",)), tmp_path / "raw")
