"""The shared processed split format and its builders (docs/model.md "Data files and cameras")."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ddhpose.camera import H36M_EXTRINSICS, h36m_camera, mpi3dhp_test_intrinsic_px
from ddhpose.data.processed import ProcessedSplit, load_split, manifest, save_split
from ddhpose.data.processed_build import h36m_to_processed, mpi3dhp_to_processed
from ddhpose.errors import DataError
from ddhpose.skeleton import H36M32_KEPT


def _rotation_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _h36m_dicts() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)

    def world(n: int) -> np.ndarray:  # a person ~1 m around (1, 0.5, 0.9) m in the world
        centre = np.array([1.0, 0.5, 0.9])
        return (rng.normal(scale=0.3, size=(n, 32, 3)) + centre).astype(np.float32)

    pos3 = {"S1": {"Walking 1": world(4), "Eating": world(3)}, "S9": {"Walking": world(2)}}
    pos2 = {  # the 2D file lists S1's actions in the other order; two extra 2D frames
        "S1": {a: [rng.uniform(0, 1000, size=(len(pos3["S1"][a]) + 2, 17, 2)).astype(np.float32)
                   for _ in range(4)] for a in ("Eating", "Walking 1")},
        "S9": {"Walking": [rng.uniform(0, 1000, size=(2, 17, 2)).astype(np.float32)
                           for _ in range(4)]},
    }
    return pos3, pos2


@pytest.fixture(scope="module")
def h36m() -> tuple[dict, dict, ProcessedSplit]:
    pos3, pos2 = _h36m_dicts()
    return pos3, pos2, h36m_to_processed(pos3, pos2, "S1,S9")


def test_h36m_order_and_metadata(h36m):
    _, _, split = h36m
    assert split.dataset == "h36m" and split.layout == "h36m17"
    assert split.num_sequences == 12 and split.num_frames == 4 * (3 + 4 + 2)
    assert split.seq_name[:5].tolist() == ["S1/Eating/cam0", "S1/Eating/cam1", "S1/Eating/cam2",
                                           "S1/Eating/cam3", "S1/Walking 1/cam0"]
    assert split.seq_action.tolist()[4] == "Walking 1"
    assert split.seq_length.tolist() == [3] * 4 + [4] * 4 + [2] * 4
    assert split.seq_start.tolist() == [0, 3, 6, 9, 12, 16, 20, 24, 28, 30, 32, 34]
    assert split.res.tolist()[:4] == [[1000, 1002], [1000, 1000], [1000, 1000], [1000, 1002]]
    np.testing.assert_array_equal(split.intrinsic[1], h36m_camera("S1", 1).intrinsic)
    assert split.valid.all() and (split.activity == 0).all()
    for name, (dtype, _) in {"pose_2d": (np.float32, 0), "traj": (np.float32, 0),
                             "valid": (np.bool_, 0), "activity": (np.int16, 0)}.items():
        assert getattr(split, name).dtype == dtype


@pytest.mark.parametrize(("action", "cam"), [("Walking 1", 0), ("Eating", 3)])
def test_h36m_camera_space_by_hand(h36m, action, cam):
    pos3, pos2, split = h36m
    seq = next(s for s in split.sequences() if s.name == f"S1/{action}/cam{cam}")
    orient, trans_mm = H36M_EXTRINSICS["S1"][cam]
    r = _rotation_matrix(np.asarray(orient))
    world = pos3["S1"][action][:, list(H36M32_KEPT)].astype(np.float64)
    x_cam = (world - np.asarray(trans_mm) / 1000.0) @ r  # R^T (X - t), row vectors
    np.testing.assert_allclose(seq.traj, x_cam[:, 0], atol=2e-6)
    np.testing.assert_allclose(seq.pose_3d, x_cam - x_cam[:, :1], atol=2e-6)
    assert (seq.pose_3d[:, 0] == 0).all()
    w, h = h36m_camera("S1", cam).res_w, h36m_camera("S1", cam).res_h
    kp = pos2["S1"][action][cam][: len(world)].astype(np.float64)
    np.testing.assert_allclose(seq.pose_2d, kp / w * 2 - [1, h / w], atol=1e-6)


def test_h36m_accepts_reduced_17_joint_3d(h36m):
    pos3, pos2, split = h36m
    reduced = {s: {a: x[:, list(H36M32_KEPT)] for a, x in acts.items()} for s, acts in pos3.items()}
    split17 = h36m_to_processed(reduced, pos2, ["S1", "S9"])
    np.testing.assert_array_equal(split17.pose_3d, split.pose_3d)
    np.testing.assert_array_equal(split17.pose_2d, split.pose_2d)


def test_h36m_action_filter_and_errors():
    pos3, pos2 = _h36m_dicts()
    walk = h36m_to_processed(pos3, pos2, ["S1", "S9"], actions=["Walk"])
    assert sorted(set(walk.seq_action.tolist())) == ["Walking", "Walking 1"]
    with pytest.raises(DataError, match=r"no Human3\.6M sequences"):
        h36m_to_processed(pos3, pos2, "S1", actions="Sitting")
    with pytest.raises(DataError, match="S5"):
        h36m_to_processed(pos3, pos2, "S5")
    pos3["S2"], pos2["S2"] = pos3["S9"], pos2["S9"]
    with pytest.raises(DataError, match="no camera extrinsics for subject S2"):
        h36m_to_processed(pos3, pos2, "S2")
    pos2["S1"]["Eating"][1] = pos2["S1"]["Eating"][1][:2]
    with pytest.raises(DataError, match="camera 1: 2 2D frames but 3 mocap"):
        h36m_to_processed(pos3, pos2, "S1")


def test_sequences_are_views_and_select(h36m):
    _, _, split = h36m
    views = list(split.sequences())
    assert len(views) == split.num_sequences
    v = views[5]
    assert (v.subject, v.action, v.camera, v.res) == ("S1", "Walking 1", 1, (1000, 1000))
    assert np.shares_memory(v.pose_2d, split.pose_2d) and np.shares_memory(v.traj, split.traj)
    np.testing.assert_array_equal(v.pose_3d, split.pose_3d[16:20])
    s9 = split.select(subjects=["S9"])
    assert s9.num_sequences == 4 and s9.seq_start.tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(s9.pose_2d, split.pose_2d[28:])
    eat = split.select(actions="Eat")
    assert eat.seq_action.tolist() == ["Eating"] * 4
    assert split.select(actions="*").num_frames == split.num_frames
    assert split.select(subjects="S1", actions=["Walking"]).num_sequences == 4
    with pytest.raises(DataError, match="no sequences match"):
        split.select(subjects="S11")


# --- files ------------------------------------------------------------------------------------


def test_save_load_round_trip_and_manifest(tmp_path, h36m):
    _, _, split = h36m
    path = tmp_path / "processed" / "train.npz"
    save_split(path, split)
    with np.load(path, allow_pickle=False) as npz:  # no pickles anywhere
        assert str(npz["dataset"]) == "h36m"
    back = load_split(path)
    for name, value in split.arrays().items():
        got = getattr(back, name)
        if isinstance(value, str):
            assert got == value
        else:
            assert got.dtype == value.dtype
            np.testing.assert_array_equal(got, value)
    man = manifest(back, path)
    assert man["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert man["subjects"] == ["S1", "S9"] and man["actions"] == ["Eating", "Walking 1", "Walking"]
    assert man["cameras"] == [0, 1, 2, 3]
    assert (man["sequences"], man["frames"], man["valid_frames"]) == (12, 36, 36)
    assert man["sequence_frames"]["S9/Walking/cam3"] == 2
    assert manifest(split)["sha256"] is None


def _tampered(tmp_path, split: ProcessedSplit, **changes):
    arrays = {k: (np.array(v) if isinstance(v, str) else v) for k, v in split.arrays().items()}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"traj": None}, "missing keys.*traj"),
        ({"pose_2d": "float64"}, "'pose_2d' has dtype float64"),
        ({"pose_3d": "shape"}, "'pose_3d' has shape"),
        ({"valid": "short"}, "'valid' has 35 rows"),
        ({"seq_start": "shift"}, "do not tile"),
        ({"traj": "nan"}, "'traj' contains NaN"),
        ({"pose_3d": "root"}, "root joint 0 is not zero"),
        ({"dataset": "humaneva"}, "unknown dataset"),
        ({"layout": "3dhp17"}, "does not belong"),
        ({"seq_name": "dup"}, "duplicate sequence names"),
        ({"seq_camera": "object"}, "not a readable processed npz"),
    ],
)
def test_load_rejects_bad_content(tmp_path, h36m, change, match):
    _, _, split = h36m
    (key, how), = change.items()
    value = getattr(split, key)
    if how is None:
        new = None
    elif how == "float64":
        new = value.astype(np.float64)
    elif how == "shape":
        new = value[:, :16]
    elif how == "short":
        new = value[:-1]
    elif how == "shift":
        new = value + 1
    elif how == "nan":
        new = value.copy()
        new[3, 1] = np.nan
    elif how == "root":
        new = value.copy()
        new[7, 0, 2] = 0.5
    elif how == "dup":
        new = value.copy()
        new[1] = new[0]
    elif how == "object":
        new = value.astype(object)
    else:
        new = np.array(how)
    path = _tampered(tmp_path, split, **{key: new})
    with pytest.raises(DataError, match=match) as info:
        load_split(path)
    assert str(path) in str(info.value)


def test_load_missing_and_corrupt_files(tmp_path, h36m):
    with pytest.raises(DataError, match="file not found"):
        load_split(tmp_path / "none.npz")
    good = tmp_path / "good.npz"
    save_split(good, h36m[2])
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a readable processed npz"):
        load_split(cut)


# --- MPI-INF-3DHP -----------------------------------------------------------------------------


def _mm(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = np.array([0.0, 0.0, 4000.0])  # 4 m in front of the camera
    return (rng.normal(scale=300.0, size=(n, 17, 3)) + centre).astype(np.float32)


def test_mpi3dhp_test_split_by_hand():
    data = {
        "TS1": {"data_3d": _mm(3, 0), "data_2d": np.full((3, 17, 2), 1024.0, np.float32),
                "valid": np.array([1, 0, 1]), "activity": np.array([2, 2, 7])},
        "TS5": {"data_3d": _mm(2, 1), "data_2d": np.zeros((2, 17, 2), np.float32),
                "valid": np.array([1, 1])},
    }
    split = mpi3dhp_to_processed(data, "test")
    assert (split.dataset, split.layout) == ("3dhp", "3dhp17")
    assert split.seq_name.tolist() == ["TS1", "TS5"]
    assert split.seq_subject.tolist() == split.seq_action.tolist() == ["TS1", "TS5"]
    assert split.res.tolist() == [[2048, 2048], [1920, 1080]]
    ts1, ts5 = split.sequences()
    x = data["TS1"]["data_3d"].astype(np.float64)
    np.testing.assert_allclose(ts1.pose_3d, (x - x[:, 14:15]) / 1000.0, atol=1e-6)
    np.testing.assert_allclose(ts1.traj, x[:, 14] / 1000.0, atol=1e-6)
    assert (ts1.pose_3d[:, 14] == 0).all()
    assert ts1.valid.tolist() == [True, False, True] and ts1.activity.tolist() == [2, 2, 7]
    assert ts5.activity.tolist() == [0, 0]
    np.testing.assert_allclose(ts1.pose_2d, 0.0, atol=1e-7)  # image centre (1024, 1024)
    np.testing.assert_allclose(ts5.pose_2d, np.broadcast_to([-1.0, -1080 / 1920], (2, 17, 2)),
                               atol=1e-7)
    cam5, _, _ = mpi3dhp_test_intrinsic_px("TS5")
    np.testing.assert_array_equal(ts5.intrinsic_px, cam5)
    np.testing.assert_allclose(ts5.intrinsic[:2], cam5[:2] * 2 / 1920, rtol=1e-6)
    np.testing.assert_allclose(ts5.intrinsic[2:4], cam5[2:4] / 1920 * 2 - [1, 1080 / 1920],
                               atol=1e-6)
    assert (ts5.intrinsic[4:] == 0).all()


def test_mpi3dhp_train_split():
    data = {
        "S1 Seq1": [{0: {"data_3d": _mm(4, 2), "data_2d": np.zeros((4, 17, 2), np.float32)},
                     8: {"data_3d": _mm(4, 3), "data_2d": np.zeros((4, 17, 2), np.float32)}}],
        "S2 Seq2": [{"1": {"data_3d": _mm(2, 4), "data_2d": np.zeros((2, 17, 2), np.float32)}}],
    }
    split = mpi3dhp_to_processed(data, "train")
    assert split.seq_name.tolist() == ["S1/Seq1/cam0", "S1/Seq1/cam8", "S2/Seq2/cam1"]
    assert split.seq_subject.tolist() == ["S1", "S1", "S2"]
    assert split.seq_action.tolist() == ["Seq1", "Seq1", "Seq2"]
    assert split.seq_camera.tolist() == [0, 8, 1] and split.valid.all()
    ts1, _, _ = mpi3dhp_test_intrinsic_px("TS1")
    np.testing.assert_array_equal(split.intrinsic_px, np.stack([ts1] * 3))
    assert (split.res == [2048, 2048]).all()
    with pytest.raises(ValueError, match="kind"):
        mpi3dhp_to_processed(data, "val")
    bad = {"S1 Seq1": [{0: {"data_3d": _mm(4, 2)[:, :16], "data_2d": np.zeros((4, 17, 2))}}]}
    with pytest.raises(DataError, match="data_3d"):
        mpi3dhp_to_processed(bad, "train")


def test_3dhp_save_load(tmp_path):
    data = {"TS6": {"data_3d": _mm(3, 5), "data_2d": np.zeros((3, 17, 2), np.float32),
                    "valid": np.array([1, 1, 0])}}
    split = mpi3dhp_to_processed(data, "test")
    save_split(tmp_path / "test.npz", split)
    back = load_split(tmp_path / "test.npz")
    assert back.skeleton.root == 14
    np.testing.assert_array_equal(back.pose_3d, split.pose_3d)
    assert manifest(back)["valid_frames"] == 2
