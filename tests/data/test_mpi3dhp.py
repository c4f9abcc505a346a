"""MPI-INF-3DHP files: the real TS5 annotations, npz round trips and bad-file errors."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from ddhpose.data.mpi3dhp import (
    annotations_to_test_data,
    load_3dhp_test,
    load_3dhp_train,
    load_annot_mat,
    load_test_annotations,
    save_3dhp_test,
    save_3dhp_train,
)
from ddhpose.errors import DataError


def test_ts5_annotations(mpi3dhp_fixture_dir):
    ann = load_annot_mat(mpi3dhp_fixture_dir / "TS5" / "annot_data.mat")
    assert ann["annot3"].shape == (320, 17, 3)
    assert ann["univ_annot3"].shape == (320, 17, 3)
    assert ann["annot2"].shape == (320, 17, 2)
    assert ann["valid"].dtype == bool and int(ann["valid"].sum()) == 276
    assert set(np.unique(ann["activity"][ann["valid"]]).tolist()) == {1, 4, 5}
    # camera-space mm: the pelvis is metres in front of the camera
    assert 1000 < ann["annot3"][:, 14, 2].mean() < 10000
    # 2D within the 1920x1080 image
    assert ann["annot2"][..., 0].min() >= 0 and ann["annot2"][..., 0].max() <= 1920


def test_load_test_annotations_and_npz_layout(mpi3dhp_fixture_dir, tmp_path):
    anns = load_test_annotations(mpi3dhp_fixture_dir)
    assert list(anns) == ["TS5"]
    data = annotations_to_test_data(anns)
    assert set(data["TS5"]) == {"data_3d", "data_2d", "valid", "activity"}
    path = tmp_path / "data_test_3dhp_ori.npz"
    save_3dhp_test(path, data)
    back = load_3dhp_test(path)
    np.testing.assert_allclose(back["TS5"]["data_3d"], anns["TS5"]["annot3"], rtol=1e-6)
    assert int(back["TS5"]["valid"].sum()) == 276


def _train_data(n=6):
    rng = np.random.default_rng(0)
    cams = {c: {"data_3d": rng.normal(size=(n, 17, 3)) * 500,
                "data_2d": rng.uniform(0, 2048, size=(n, 17, 2))} for c in (0, 2)}
    return {"S1 Seq1": [cams], "S8 Seq2": [{0: cams[0]}]}


def test_train_round_trip(tmp_path):
    path = tmp_path / "data_train_3dhp_ori.npz"
    save_3dhp_train(path, _train_data())
    back = load_3dhp_train(path)
    assert set(back) == {"S1 Seq1", "S8 Seq2"}
    assert set(back["S1 Seq1"][0]) == {0, 2}
    assert back["S1 Seq1"][0][2]["data_2d"].shape == (6, 17, 2)


def _test_data(n=5):
    return {"TS1": {"data_3d": np.ones((n, 17, 3)), "data_2d": np.ones((n, 17, 2)),
                    "valid": np.ones(n)}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["TS1"].pop("valid"), "missing key 'valid'"),
        (lambda d: d["TS1"].__setitem__("data_3d", np.ones((5, 16, 3))), "expected shape"),
        (lambda d: d["TS1"]["data_2d"].__setitem__((0, 0, 0), np.nan), "NaN"),
        (lambda d: d["TS1"].__setitem__("valid", np.ones(4)), "frame counts differ"),
        (lambda d: d.__setitem__("TS9", d["TS1"]), "TS9"),
    ],
)
def test_bad_test_npz_names_file_and_problem(tmp_path, mutate, message):
    data = _test_data()
    mutate(data)
    path = tmp_path / "bad.npz"
    obj = np.empty((), dtype=object)
    obj[()] = data
    np.savez(path, data=obj)
    with pytest.raises(DataError, match=message) as info:
        load_3dhp_test(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError):
        save_3dhp_test(tmp_path / "out.npz", data)
    assert not (tmp_path / "out.npz").exists()


def test_bad_train_data_and_missing_data_key(tmp_path):
    bad = _train_data()
    bad["S1 Seq1"][0][0]["data_3d"] = np.ones((6, 17, 2))
    with pytest.raises(DataError, match="S1 Seq1 camera 0 data_3d"):
        save_3dhp_train(tmp_path / "t.npz", bad)
    path = tmp_path / "nodata.npz"
    np.savez(path, other=np.zeros(3))
    with pytest.raises(DataError, match="missing key 'data'"):
        load_3dhp_train(path)


def test_truncated_npz(tmp_path):
    path = tmp_path / "t.npz"
    save_3dhp_test(path, _test_data())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"t\.npz"):
        load_3dhp_test(path)


def _write_annot(path, n=4, skip=(), annot3_shape=None, nan=False):
    with h5py.File(path, "w") as fh:
        arrays = {
            "annot2": np.zeros((n, 1, 17, 2)),
            "annot3": np.zeros(annot3_shape or (n, 1, 17, 3)),
            "univ_annot3": np.zeros((n, 1, 17, 3)),
            "valid_frame": np.ones((n, 1)),
            "activity_annotation": np.full((n, 1), 2.0),
        }
        if nan:
            arrays["annot2"][0, 0, 0, 0] = np.nan
        for k, v in arrays.items():
            if k not in skip:
                fh[k] = v


def test_annot_mat_errors(tmp_path):
    ok = tmp_path / "ok.mat"
    _write_annot(ok)
    assert load_annot_mat(ok)["activity"].tolist() == [2, 2, 2, 2]
    cases = {
        "missing.mat": ({"skip": ("annot3",)}, "missing variable 'annot3'"),
        "shape.mat": ({"annot3_shape": (4, 1, 16, 3)}, "annot3: expected shape"),
        "nan.mat": ({"nan": True}, "annot2: contains NaN"),
    }
    for name, (kwargs, message) in cases.items():
        _write_annot(tmp_path / name, **kwargs)
        with pytest.raises(DataError, match=message) as info:
            load_annot_mat(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        load_annot_mat(tmp_path / "absent.mat")


def test_truncated_annot_mat(mpi3dhp_fixture_dir, tmp_path):
    src = mpi3dhp_fixture_dir / "TS5" / "annot_data.mat"
    cut = tmp_path / "TS5" / "annot_data.mat"
    cut.parent.mkdir()
    shutil.copyfile(src, cut)
    cut.write_bytes(cut.read_bytes()[: 50_000])
    with pytest.raises(DataError) as info:
        load_test_annotations(tmp_path)
    assert "annot_data.mat" in str(info.value)
