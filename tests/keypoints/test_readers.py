"""Keypoint files (npz/json/csv), COCO-17 -> Human3.6M-17, gap filling and input errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ddhpose.errors import DataError, UnknownLayoutError
from ddhpose.keypoints import (
    COCO17_NAMES,
    MissingKeypointsWarning,
    coco17_to_h36m17,
    load_keypoints,
    save_keypoints_json,
)
from ddhpose.skeleton import H36M17

SIZE = (640.0, 480.0)


def _pose(t: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(50, 450, size=(t, 17, 2)).round(2)


def _write_csv(path, kp: np.ndarray, names: bool = False) -> None:
    conf = kp.shape[-1] == 3
    lines = ["frame,joint,u,v" + (",confidence" if conf else "")]
    for f in range(kp.shape[0]):
        for j in reversed(range(17)):  # any row order is fine
            joint = H36M17.joint_names[j] if names else str(j)
            lines.append(",".join([str(f), joint, *(repr(float(v)) for v in kp[f, j])]))
    path.write_text("\n".join(lines) + "\n")


def test_npz_round_trip(tmp_path):
    kp = _pose()
    np.savez(tmp_path / "k.npz", keypoints=kp, image_size=np.array(SIZE), layout="h36m17")
    got = load_keypoints(tmp_path / "k.npz")
    np.testing.assert_allclose(got.xy, kp)
    assert got.image_size == SIZE and got.layout == "h36m17" and got.filled == 0
    # the argument wins over the stored image size; normalisation follows docs/model.md
    # "Cameras and projection"
    got = load_keypoints(tmp_path / "k.npz", image_size=(1000, 1002))
    np.testing.assert_allclose(got.normalized(), kp / 1000 * 2 - [1, 1.002], atol=1e-6)


def test_json_round_trip_with_confidence(tmp_path):
    kp = np.concatenate([_pose(), np.full((6, 17, 1), 0.9)], axis=-1)
    save_keypoints_json(tmp_path / "k.json", kp, "h36m17", SIZE)
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["layout"] == "h36m17" and doc["image_size"] == list(SIZE)
    got = load_keypoints(tmp_path / "k.json")
    np.testing.assert_allclose(got.xy, kp[..., :2])


@pytest.mark.parametrize("names", [False, True])
def test_csv_round_trip(tmp_path, names):
    kp = _pose(5)
    _write_csv(tmp_path / "k.csv", kp, names=names)
    got = load_keypoints(tmp_path / "k.csv", "h36m17", SIZE)
    np.testing.assert_allclose(got.xy, kp)
    assert got.xy.shape == (5, 17, 2)


def test_coco_to_h36m_formulas():
    c = {n: np.array([10.0 * i, 100.0 + 3 * i]) for i, n in enumerate(COCO17_NAMES)}
    coco = np.stack([c[n] for n in COCO17_NAMES])[None]
    h = coco17_to_h36m17(coco)[0]
    pelvis = (c["left_hip"] + c["right_hip"]) / 2
    thorax = (c["left_shoulder"] + c["right_shoulder"]) / 2
    head = (c["left_eye"] + c["right_eye"] + c["left_ear"] + c["right_ear"]) / 4
    expected = {
        "pelvis": pelvis, "right_hip": c["right_hip"], "right_knee": c["right_knee"],
        "right_ankle": c["right_ankle"], "left_hip": c["left_hip"], "left_knee": c["left_knee"],
        "left_ankle": c["left_ankle"], "spine": (pelvis + thorax) / 2, "thorax": thorax,
        "neck_nose": c["nose"], "head": head, "left_shoulder": c["left_shoulder"],
        "left_elbow": c["left_elbow"], "left_wrist": c["left_wrist"],
        "right_shoulder": c["right_shoulder"], "right_elbow": c["right_elbow"],
        "right_wrist": c["right_wrist"],
    }
    for j, name in enumerate(H36M17.joint_names):
        np.testing.assert_allclose(h[j], expected[name], err_msg=name)
    # fallbacks: head from the present face points, neck/nose between thorax and head
    coco2 = coco.copy()
    coco2[0, [0, 3, 4]] = np.nan  # nose and both ears missing
    h2 = coco17_to_h36m17(coco2)[0]
    head2 = (c["left_eye"] + c["right_eye"]) / 2
    np.testing.assert_allclose(h2[10], head2)
    np.testing.assert_allclose(h2[9], (thorax + head2) / 2)


def test_missing_joints_interpolated_with_one_warning(tmp_path):
    kp = np.concatenate([_pose(8), np.ones((8, 17, 1))], axis=-1)
    kp[2:5, 13, 2] = 0.0  # left wrist: confidence 0 in frames 2..4
    kp[7, 3, :2] = np.nan  # right ankle: NaN in the last frame
    kp[0, 6, 2] = 0.2  # left ankle below min_confidence in the first frame
    np.savez(tmp_path / "k.npz", keypoints=kp, image_size=np.array(SIZE))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_keypoints(tmp_path / "k.npz", "h36m17", min_confidence=0.5)
    ours = [w for w in caught if issubclass(w.category, MissingKeypointsWarning)]
    assert len(ours) == 1 and "filled 5 missing" in str(ours[0].message)
    assert got.filled == 5
    for f in (2, 3, 4):
        frac = (f - 1) / 4
        np.testing.assert_allclose(got.xy[f, 13], (1 - frac) * kp[1, 13, :2] + frac * kp[5, 13, :2])
    np.testing.assert_allclose(got.xy[7, 3], kp[6, 3, :2])  # held at the end
    np.testing.assert_allclose(got.xy[0, 6], kp[1, 6, :2])  # and at the start
    assert got.missing[2:5, 13].all() and got.missing.sum() == 5


def test_coco_file_with_missing_derived_joint(tmp_path):
    kp = np.concatenate([_pose(4), np.ones((4, 17, 1))], axis=-1)
    kp[1, 11, 2] = 0  # COCO left hip -> H36M left hip and pelvis (and spine) missing in frame 1
    save_keypoints_json(tmp_path / "c.json", kp, "coco17", SIZE)
    with pytest.warns(MissingKeypointsWarning, match="filled 3 missing"):
        got = load_keypoints(tmp_path / "c.json")
    assert got.source_layout == "coco17" and got.missing[1, [0, 4, 7]].all()
    direct = coco17_to_h36m17(np.round(kp[..., :2], 2))
    np.testing.assert_allclose(got.xy[1, 0], (direct[0, 0] + direct[2, 0]) / 2)


def test_unknown_layout(tmp_path):
    np.savez(tmp_path / "k.npz", keypoints=_pose(), image_size=np.array(SIZE), layout="mpii16")
    with pytest.raises(UnknownLayoutError, match=r"k\.npz.*mpii16"):
        load_keypoints(tmp_path / "k.npz")
    with pytest.raises(UnknownLayoutError, match="openpose18"):
        load_keypoints(tmp_path / "k.npz", "openpose18")


def test_no_layout_and_conflicting_layout(tmp_path):
    np.savez(tmp_path / "a.npz", keypoints=_pose(), image_size=np.array(SIZE))
    with pytest.raises(DataError, match=r"a\.npz: no joint layout"):
        load_keypoints(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", keypoints=_pose(), image_size=np.array(SIZE), layout="coco17")
    with pytest.raises(DataError, match=r"b\.npz: file says layout 'coco17'"):
        load_keypoints(tmp_path / "b.npz", "h36m17")


@pytest.mark.parametrize("shape", [(6, 16, 2), (6, 17, 4), (17, 2), (0, 17, 2)])
def test_wrong_shape(tmp_path, shape):
    np.savez(tmp_path / "k.npz", keypoints=np.ones(shape), image_size=np.array(SIZE))
    with pytest.raises(DataError, match=r"k\.npz: keypoints must have shape"):
        load_keypoints(tmp_path / "k.npz", "h36m17")


def test_joint_missing_everywhere(tmp_path):
    kp = _pose()
    kp[:, 16] = np.nan
    np.savez(tmp_path / "k.npz", keypoints=kp, image_size=np.array(SIZE))
    with pytest.raises(DataError, match=r"k\.npz: joint 16 \(right_wrist\) is missing in every"):
        load_keypoints(tmp_path / "k.npz", "h36m17")


@pytest.mark.parametrize("size", [[640, float("nan")], [640, 0], [640], "big"])
def test_bad_image_size(tmp_path, size):
    doc = {"layout": "h36m17", "image_size": size, "keypoints": _pose(3).tolist()}
    path = tmp_path / "k.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"k\.json: image size must be"):
        load_keypoints(path)


def test_missing_image_size_and_bad_files(tmp_path):
    _write_csv(tmp_path / "k.csv", _pose(2))
    with pytest.raises(DataError, match=r"k\.csv: no image size"):
        load_keypoints(tmp_path / "k.csv", "h36m17")
    (tmp_path / "bad.csv").write_text("t,j,x,y\n0,0,1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv: CSV header"):
        load_keypoints(tmp_path / "bad.csv", "h36m17", SIZE)
    (tmp_path / "k.txt").write_text("")
    with pytest.raises(DataError, match=r"k\.txt: unknown keypoint file type"):
        load_keypoints(tmp_path / "k.txt", "h36m17", SIZE)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match=r"broken\.json: unreadable JSON"):
        load_keypoints(tmp_path / "broken.json", "h36m17", SIZE)


def test_coco_file_without_hips_names_the_file_and_the_joints(tmp_path):
    kp = np.random.default_rng(0).uniform(100, 900, size=(6, 17, 3))
    kp[..., 2] = 0.9
    kp[:, 11:13, 2] = 0.0  # no hips in any frame
    path = tmp_path / "no_hips.json"
    path.write_text(json.dumps({"keypoints": kp.tolist(), "layout": "coco17",
                                "image_size": [1000, 1000]}))
    with pytest.raises(DataError) as info:
        load_keypoints(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "left_hip, right_hip missing in every frame" in msg
