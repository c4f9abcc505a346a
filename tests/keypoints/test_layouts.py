"""Each layout's Human3.6M-17 table: the detector's own pelvis / neck / head where it has them,
the fallbacks, joint-count detection and the one-line refusal of a wrong layout."""

from __future__ import annotations

import numpy as np
import pytest

from ddhpose.errors import DataError
from ddhpose.keypoints import LAYOUT_TABLES, keypoints_from_array, load_keypoints, to_h36m17
from ddhpose.keypoints.layouts import (
    HALPE26_NAMES,
    MEDIAPIPE33_NAMES,
    OPENPOSE25_NAMES,
    WHOLEBODY133_NAMES,
)
from ddhpose.skeleton import H36M17, MPI3DHP17

SIZE = (1000.0, 1000.0)
H = {n: i for i, n in enumerate(H36M17.joint_names)}


def _points(names: tuple[str, ...], t: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(100, 900, size=(t, len(names), 2))


def _at(points: np.ndarray, names: tuple[str, ...], *joints: str) -> np.ndarray:
    return np.mean([points[:, names.index(j)] for j in joints], axis=0)


def test_openpose25_uses_its_mid_hip_and_neck():
    p = _points(OPENPOSE25_NAMES)
    out = to_h36m17(p, "openpose25")
    np.testing.assert_allclose(out[:, H["pelvis"]], _at(p, OPENPOSE25_NAMES, "mid_hip"))
    np.testing.assert_allclose(out[:, H["thorax"]], _at(p, OPENPOSE25_NAMES, "neck"))
    np.testing.assert_allclose(out[:, H["spine"]], (out[:, 0] + out[:, 8]) / 2)
    np.testing.assert_allclose(out[:, H["head"]], _at(p, OPENPOSE25_NAMES, "left_eye",
                                                      "right_eye", "left_ear", "right_ear"))
    np.testing.assert_allclose(out[:, H["neck_nose"]], _at(p, OPENPOSE25_NAMES, "nose"))
    np.testing.assert_allclose(out[:, H["right_knee"]], _at(p, OPENPOSE25_NAMES, "right_knee"))
    np.testing.assert_allclose(out[:, H["left_wrist"]], _at(p, OPENPOSE25_NAMES, "left_wrist"))
    # without its mid-hip: the mean of the hips; without an ankle: the heel
    p[1, OPENPOSE25_NAMES.index("mid_hip")] = np.nan
    p[2, OPENPOSE25_NAMES.index("right_ankle")] = np.nan
    out = to_h36m17(p, "openpose25")
    np.testing.assert_allclose(out[1, 0], _at(p, OPENPOSE25_NAMES, "left_hip", "right_hip")[1])
    np.testing.assert_allclose(out[2, H["right_ankle"]],
                               p[2, OPENPOSE25_NAMES.index("right_heel")])


def test_halpe26_uses_its_hip_neck_and_head_top():
    p = _points(HALPE26_NAMES)
    out = to_h36m17(p, "halpe26")
    np.testing.assert_allclose(out[:, H["pelvis"]], _at(p, HALPE26_NAMES, "hip"))
    np.testing.assert_allclose(out[:, H["thorax"]], _at(p, HALPE26_NAMES, "neck"))
    np.testing.assert_allclose(out[:, H["head"]], _at(p, HALPE26_NAMES, "head"))
    np.testing.assert_allclose(out[:, H["neck_nose"]], _at(p, HALPE26_NAMES, "nose"))


def test_mediapipe33_and_wholebody133():
    p = _points(MEDIAPIPE33_NAMES)
    out = to_h36m17(p, "mediapipe33")
    np.testing.assert_allclose(out[:, 0], _at(p, MEDIAPIPE33_NAMES, "left_hip", "right_hip"))
    np.testing.assert_allclose(out[:, 8], _at(p, MEDIAPIPE33_NAMES, "left_shoulder",
                                              "right_shoulder"))
    np.testing.assert_allclose(out[:, 10], _at(p, MEDIAPIPE33_NAMES, "left_eye", "right_eye",
                                               "left_ear", "right_ear"))
    np.testing.assert_allclose(out[:, H["left_elbow"]], _at(p, MEDIAPIPE33_NAMES, "left_elbow"))
    w = _points(WHOLEBODY133_NAMES)
    # the body part is COCO-17: the same result as coco17 on the first 17 points
    np.testing.assert_allclose(to_h36m17(w, "coco_wholebody133"), to_h36m17(w[:, :17], "coco17"))


def test_mpi_inf_3dhp17_matches_the_models_correspondence():
    from ddhpose.inference.infer import H36M17_TO_3DHP17

    p = _points(MPI3DHP17.joint_names)
    out = to_h36m17(p, "mpi_inf_3dhp17")
    np.testing.assert_array_equal(out[:, list(H36M17_TO_3DHP17)], p)


@pytest.mark.parametrize("name", ["openpose25", "halpe26", "coco_wholebody133", "mediapipe33"])
def test_joint_count_picks_the_layout(tmp_path, name):
    kp = _points(LAYOUT_TABLES[name].joint_names, t=5)
    np.savez(tmp_path / "k.npz", keypoints=kp, image_size=np.array(SIZE))
    got = load_keypoints(tmp_path / "k.npz")
    assert got.source_layout == name and got.xy.shape == (5, 17, 2)
    np.testing.assert_allclose(got.xy, to_h36m17(kp, name))


def test_17_joints_stay_explicit(tmp_path):
    np.savez(tmp_path / "k.npz", keypoints=_points(H36M17.joint_names), image_size=SIZE)
    with pytest.raises(DataError, match=r"k\.npz: no joint layout: 17 joints can be h36m17 or "
                                        r"coco17 or mpi_inf_3dhp17"):
        load_keypoints(tmp_path / "k.npz")
    assert load_keypoints(tmp_path / "k.npz", "mpi_inf_3dhp17").source_layout == "mpi_inf_3dhp17"


def test_wrong_layout_is_one_line_naming_file_found_and_accepted(tmp_path):
    np.savez(tmp_path / "k.npz", keypoints=_points(OPENPOSE25_NAMES), image_size=SIZE,
             layout="coco17")
    with pytest.raises(DataError) as info:
        load_keypoints(tmp_path / "k.npz")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "k.npz"))
    assert "found 25 joints" in msg and "openpose25 (25)" in msg and "coco17" in msg
    np.savez(tmp_path / "u.npz", keypoints=np.ones((3, 18, 2)), image_size=SIZE)
    with pytest.raises(DataError, match=r"u\.npz: no joint layout: 18 joints match no accepted "
                                        r"layout \(h36m17, coco17, mpi_inf_3dhp17 \(17 joints\), "
                                        r"openpose25 \(25\)"):
        load_keypoints(tmp_path / "u.npz")


def test_a_joint_never_seen_names_the_detectors_joints():
    kp = _points(HALPE26_NAMES, t=3)
    conf = np.ones((3, 26, 1))
    for j in ("left_knee",):
        conf[:, HALPE26_NAMES.index(j)] = 0
    with pytest.raises(DataError, match=r"src: AlphaPose Halpe-26 keypoints: left_knee missing "
                                        r"in every frame"):
        keypoints_from_array(np.concatenate([kp, conf], -1), "halpe26", SIZE, source="src")
