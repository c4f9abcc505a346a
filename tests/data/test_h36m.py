"""Human3.6M VideoPose3D files (docs/model.md "Human3.6M files"): writers, readers and every
validation error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from ddhpose.data.h36m import (
    DEFAULT_METADATA,
    load_h36m,
    load_positions_2d,
    load_positions_3d,
    match_positions,
    positions_2d_path,
    save_positions_2d,
    save_positions_3d,
)
from ddhpose.errors import DataError


def _pos3d(joints: int = 32) -> dict:
    rng = np.random.default_rng(0)
    return {
        "S1": {"Walking 1": rng.normal(size=(6, joints, 3)).astype(np.float32),
               "Eating": rng.normal(size=(4, joints, 3)).astype(np.float32)},
        "S9": {"Walking 1": rng.normal(size=(5, joints, 3)).astype(np.float32)},
    }


def _pos2d(pos3d: dict, extra: int = 0) -> dict:
    rng = np.random.default_rng(1)
    return {s: {a: [rng.uniform(0, 1000, size=(len(x) + extra, 17, 2)).astype(np.float32)
                    for _ in range(4)] for a, x in acts.items()} for s, acts in pos3d.items()}


def _raw_npz(path: Path, **objects) -> Path:
    """Write an npz the way VideoPose3D does, bypassing our writer's validation."""
    np.savez_compressed(path, **objects)
    return path


def test_positions_2d_path():
    assert positions_2d_path("data/raw", "cpn_ft_h36m_dbb") == Path(
        "data/raw/data_2d_h36m_cpn_ft_h36m_dbb.npz")


@pytest.mark.parametrize("joints", [32, 17])
def test_round_trip_3d(tmp_path, joints):
    pos = _pos3d(joints)
    path = tmp_path / "data_3d_h36m.npz"
    save_positions_3d(path, pos)
    back = load_positions_3d(path)
    assert list(back) == ["S1", "S9"] and list(back["S1"]) == ["Walking 1", "Eating"]
    for s in pos:
        for a in pos[s]:
            assert back[s][a].dtype == np.float32 and back[s][a].shape[1] == joints
            np.testing.assert_array_equal(back[s][a], pos[s][a])
    # The VideoPose3D layout: one pickled dict under 'positions_3d'.
    with np.load(path, allow_pickle=True) as npz:
        assert npz.files == ["positions_3d"] and isinstance(npz["positions_3d"].item(), dict)


def test_round_trip_2d_and_metadata(tmp_path):
    pos3 = _pos3d()
    pos2 = _pos2d(pos3)
    path = positions_2d_path(tmp_path, "gt")
    save_positions_2d(path, pos2)
    back, meta = load_positions_2d(path)
    assert meta == DEFAULT_METADATA
    assert meta["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
    for s in pos2:
        for a in pos2[s]:
            assert len(back[s][a]) == 4
            for c in range(4):
                np.testing.assert_array_equal(back[s][a][c], pos2[s][a][c])
    with np.load(path, allow_pickle=True) as npz:
        assert sorted(npz.files) == ["metadata", "positions_2d"]


def test_writer_is_atomic_on_bad_input(tmp_path):
    path = tmp_path / "data_3d_h36m.npz"
    save_positions_3d(path, _pos3d())
    before = path.read_bytes()
    bad = _pos3d()
    bad["S1"]["Eating"][0, 0, 0] = np.nan
    with pytest.raises(DataError):
        save_positions_3d(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data_3d_h36m.npz"]


def test_load_h36m_truncates_longer_2d(tmp_path):
    pos3 = _pos3d()
    save_positions_3d(tmp_path / "3d.npz", pos3)
    save_positions_2d(tmp_path / "2d.npz", _pos2d(pos3, extra=3))
    p3, p2, _ = load_h36m(tmp_path / "3d.npz", tmp_path / "2d.npz")
    for s in p3:
        for a in p3[s]:
            assert all(len(k) == len(p3[s][a]) for k in p2[s][a])


# --- errors -----------------------------------------------------------------------------------


def _expect(path: Path, match: str, fn=load_positions_3d):
    with pytest.raises(DataError, match=match) as info:
        fn(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.npz", "file not found")
    _expect(tmp_path / "nope.npz", "file not found", load_positions_2d)


def test_not_a_zip_and_truncated(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a zip archive")
    _expect(junk, "not a readable npz")
    good = tmp_path / "good.npz"
    save_positions_3d(good, _pos3d())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(cut, "not a readable npz")


def test_corrupt_member(tmp_path):
    good = tmp_path / "good.npz"
    save_positions_3d(good, _pos3d())
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    data[start : start + 40] = bytes(40)  # garble the compressed payload
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    _expect(bad, "not a readable npz")


def test_missing_keys(tmp_path):
    _expect(_raw_npz(tmp_path / "a.npz", other=np.zeros(3)), "missing key 'positions_3d'")
    meta = np.array(DEFAULT_METADATA, dtype=object)
    _expect(_raw_npz(tmp_path / "b.npz", metadata=meta), "missing key 'positions_2d'",
            load_positions_2d)
    p2 = np.array(_pos2d(_pos3d()), dtype=object)
    _expect(_raw_npz(tmp_path / "c.npz", positions_2d=p2), "missing key 'metadata'",
            load_positions_2d)


@pytest.mark.parametrize(
    ("shape", "match"),
    [((6, 16, 3), "expected shape"), ((6, 32, 2), "expected shape"), ((6, 32), "expected shape"),
     ((0, 32, 3), "empty")],
)
def test_bad_3d_shapes(tmp_path, shape, match):
    pos = _pos3d()
    pos["S9"]["Walking 1"] = np.zeros(shape, np.float32)
    path = _raw_npz(tmp_path / "x.npz", positions_3d=np.array(pos, dtype=object))
    _expect(path, match)


def test_mixed_joint_counts(tmp_path):
    pos = _pos3d()
    pos["S9"]["Walking 1"] = np.zeros((5, 17, 3), np.float32)
    _expect(_raw_npz(tmp_path / "x.npz", positions_3d=np.array(pos, dtype=object)), "mixed")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(tmp_path, value):
    pos = _pos3d()
    pos["S1"]["Eating"][2, 3, 1] = value
    _expect(_raw_npz(tmp_path / "x.npz", positions_3d=np.array(pos, dtype=object)),
            "NaN or infinite")
    pos2 = _pos2d(_pos3d())
    pos2["S9"]["Walking 1"][3][0, 0, 0] = value
    path = _raw_npz(tmp_path / "y.npz", positions_2d=np.array(pos2, dtype=object),
                    metadata=np.array(DEFAULT_METADATA, dtype=object))
    _expect(path, "camera 3: contains NaN", load_positions_2d)


def test_not_a_dict(tmp_path):
    _expect(_raw_npz(tmp_path / "x.npz", positions_3d=np.zeros((3, 32, 3))), "non-empty dict")


@pytest.mark.parametrize(
    ("change", "match"),
    [({"layout_name": "coco"}, "layout_name"), ({"num_joints": 16}, "num_joints"),
     ({"keypoints_symmetry": [[1, 2, 3], [4, 5, 6]]}, "keypoints_symmetry")],
)
def test_unknown_keypoint_set(tmp_path, change, match):
    meta = {**DEFAULT_METADATA, **change}
    path = _raw_npz(tmp_path / "x.npz", positions_2d=np.array(_pos2d(_pos3d()), dtype=object),
                    metadata=np.array(meta, dtype=object))
    _expect(path, f"unknown keypoint set.*{match}", load_positions_2d)
    with pytest.raises(DataError, match=match):
        save_positions_2d(tmp_path / "y.npz", _pos2d(_pos3d()), meta)


@pytest.mark.parametrize("n_cams", [3, 5])
def test_camera_list_not_4_long(tmp_path, n_cams):
    pos2 = _pos2d(_pos3d())
    cams = pos2["S1"]["Eating"]
    pos2["S1"]["Eating"] = (cams * 2)[:n_cams]
    path = _raw_npz(tmp_path / "x.npz", positions_2d=np.array(pos2, dtype=object),
                    metadata=np.array(DEFAULT_METADATA, dtype=object))
    _expect(path, "4 cameras", load_positions_2d)


def test_2d_shorter_than_mocap(tmp_path):
    pos3 = _pos3d()
    pos2 = _pos2d(pos3)
    pos2["S1"]["Walking 1"][2] = pos2["S1"]["Walking 1"][2][:-1]
    save_positions_3d(tmp_path / "3d.npz", pos3)
    save_positions_2d(tmp_path / "2d.npz", pos2)
    with pytest.raises(DataError, match=r"camera 2: 5 2D frames but 6 mocap") as info:
        load_h36m(tmp_path / "3d.npz", tmp_path / "2d.npz")
    assert str(tmp_path / "2d.npz") in str(info.value)


@pytest.mark.parametrize("where", ["subject_3d", "subject_2d", "action_3d", "action_2d"])
def test_subjects_and_actions_must_match(tmp_path, where):
    pos3 = _pos3d()
    pos2 = _pos2d(pos3)
    if where == "subject_3d":
        del pos2["S9"]
    elif where == "subject_2d":
        del pos3["S9"]
    elif where == "action_3d":
        del pos2["S1"]["Eating"]
    else:
        del pos3["S1"]["Eating"]
    save_positions_3d(tmp_path / "3d.npz", pos3)
    save_positions_2d(tmp_path / "2d.npz", pos2)
    match = "subjects differ" if where.startswith("subject") else "actions differ"
    with pytest.raises(DataError, match=match) as info:
        load_h36m(tmp_path / "3d.npz", tmp_path / "2d.npz")
    assert str(tmp_path / "2d.npz") in str(info.value)


def test_match_positions_without_paths():
    pos3 = _pos3d()
    out = match_positions(pos3, _pos2d(pos3, extra=2))
    assert out["S1"]["Eating"][0].shape == (4, 17, 2)
