"""Synthetic Human3.6M / MPI-INF-3DHP data: determinism, file layouts, human plausibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from demo_config import demo_synthetic

from ddhpose.camera import (
    h36m_camera,
    image_coordinates,
    mpi3dhp_test_intrinsic_px,
    project_to_2d,
    world_to_camera,
)
from ddhpose.errors import ConfigError
from ddhpose.skeleton import H36M17, MPI3DHP17, reduce_h36m32
from ddhpose.synthetic.body import two_bone_ik
from ddhpose.synthetic.config import SyntheticConfig
from ddhpose.synthetic.h36m import detect, synthesize_h36m_3d

FRAMES = 60
SUBJECTS = ("S1", "S11")
STANDING = ("Directions", "Discussion", "Greeting", "Phoning", "Smoking", "Waiting", "Walking",
            "WalkDog", "WalkTogether")
# Target bone lengths (m) for the 17-joint H36M skeleton, from the Human3.6M averages.
TARGETS = {
    (0, 1): 0.13, (1, 2): 0.45, (2, 3): 0.45, (0, 4): 0.13, (4, 5): 0.45, (5, 6): 0.45,
    (0, 7): 0.23, (7, 8): 0.25, (8, 9): 0.11, (9, 10): 0.11, (8, 11): 0.15, (11, 12): 0.28,
    (12, 13): 0.25, (8, 14): 0.15, (14, 15): 0.28, (15, 16): 0.25,
}


@pytest.fixture(scope="module")
def cfg() -> SyntheticConfig:
    return demo_synthetic(frames=FRAMES, subjects=SUBJECTS)


@pytest.fixture(scope="module")
def mocap(cfg: SyntheticConfig) -> dict[str, dict[str, np.ndarray]]:
    return synthesize_h36m_3d(cfg)


@pytest.fixture(scope="module")
def h36m_files(cfg: SyntheticConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ddhpose.synthetic.h36m import write_synthetic_h36m

    return write_synthetic_h36m(tmp_path_factory.mktemp("h36m"), cfg)


def _load(path: Path, key: str):
    with np.load(path, allow_pickle=True) as npz:
        return npz[key].item()


def _poses17(mocap: dict[str, dict[str, np.ndarray]], action: str) -> list[np.ndarray]:
    return [reduce_h36m32(acts[f"{action} 1"]) for acts in mocap.values()
            if f"{action} 1" in acts]


# --- determinism and layout -----------------------------------------------------------------------


def test_same_seed_same_data_and_different_seed_differs(mocap, cfg: SyntheticConfig) -> None:
    small = demo_synthetic(frames=FRAMES, subjects=("S1",), actions=("Walking",))
    again = synthesize_h36m_3d(small)
    np.testing.assert_array_equal(again["S1"]["Walking 1"], mocap["S1"]["Walking 1"])
    other = synthesize_h36m_3d(demo_synthetic(
        seed=1, frames=FRAMES, subjects=("S1",), actions=("Walking",)))
    assert np.abs(other["S1"]["Walking 1"] - mocap["S1"]["Walking 1"]).max() > 0.05


def test_h36m_files_have_the_videopose3d_layout(h36m_files, cfg: SyntheticConfig) -> None:
    assert {p.name for p in h36m_files.values()} == {
        "data_3d_h36m.npz", "data_2d_h36m_gt.npz", "data_2d_h36m_detections.npz"}
    pos3d = _load(h36m_files["3d"], "positions_3d")
    assert set(pos3d) == set(SUBJECTS)
    assert len(pos3d["S1"]) == 15 and "Walking 1" in pos3d["S1"]
    assert "Directions 1" not in pos3d["S11"] and len(pos3d["S11"]) == 14
    for kind in ("2d_gt", "2d_detections"):
        pos2d = _load(h36m_files[kind], "positions_2d")
        meta = _load(h36m_files[kind], "metadata")
        assert meta == {"layout_name": "h36m", "num_joints": 17,
                        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
        for subject, actions in pos3d.items():
            assert set(pos2d[subject]) == set(actions)
            for name, arr in actions.items():
                assert arr.shape == (FRAMES, 32, 3) and arr.dtype == np.float32
                views = pos2d[subject][name]
                assert len(views) == 4
                assert all(v.shape == (FRAMES, 17, 2) and v.dtype == np.float32 for v in views)


def test_subactions_and_action_prefixes() -> None:
    cfg = demo_synthetic(frames=FRAMES, subjects=("S5",), actions=("Sitting",),
                          subactions=2)
    assert cfg.selected_actions() == ("Sitting", "SittingDown")
    data = synthesize_h36m_3d(cfg)["S5"]
    assert sorted(data) == ["Sitting 1", "Sitting 2", "SittingDown 1", "SittingDown 2"]
    assert np.abs(data["Sitting 1"] - data["Sitting 2"]).max() > 0.01


@pytest.mark.parametrize("kwargs", [{"subjects": ("S2",)}, {"actions": ("Dancing",)},
                                    {"frames": 1}, {"outlier_rate": 2.0}])
def test_bad_config_is_rejected(kwargs) -> None:
    with pytest.raises(ConfigError):
        demo_synthetic(**kwargs)


@pytest.mark.parametrize("key", ["subjects_train", "subjects_test"])
def test_an_unknown_subject_names_the_key_that_lists_it(key) -> None:
    import dataclasses

    from demo_config import demo_params

    data = dataclasses.replace(demo_params().data, **{key: ("S99",)})
    with pytest.raises(ConfigError) as err:
        SyntheticConfig.from_params(data)
    assert err.value.key == f"data.{key}"
    assert "unknown subjects ['S99']" in str(err.value)


# --- a plausible human ----------------------------------------------------------------------------


def test_bone_lengths_near_h36m_and_constant(mocap) -> None:
    for subject, actions in mocap.items():
        poses = np.concatenate([reduce_h36m32(a) for a in actions.values()]).astype(np.float64)
        for (p, c), target in TARGETS.items():
            length = np.linalg.norm(poses[:, c] - poses[:, p], axis=-1)
            assert abs(length.mean() / target - 1) < 0.1, (subject, p, c, length.mean())
            assert length.std() < 1e-4, (subject, p, c)
        left = np.linalg.norm(poses[:, 12] - poses[:, 11], axis=-1).mean()
        right = np.linalg.norm(poses[:, 15] - poses[:, 14], axis=-1).mean()
        assert left == pytest.approx(right, rel=1e-4)
    s1 = np.linalg.norm(mocap["S1"]["Walking 1"][0, 2] - mocap["S1"]["Walking 1"][0, 1])
    s11 = np.linalg.norm(mocap["S11"]["Walking 1"][0, 2] - mocap["S11"]["Walking 1"][0, 1])
    assert s1 != pytest.approx(s11, abs=1e-4)  # subjects differ


def test_joint_speeds_are_human(mocap) -> None:
    for actions in mocap.values():
        for name, pos in actions.items():
            step = np.linalg.norm(np.diff(reduce_h36m32(pos), axis=0), axis=-1)
            assert step.max() < 0.1, (name, step.max())  # 5 m/s at 50 fps


def test_people_stand_on_the_floor_near_the_origin(mocap) -> None:
    for actions in mocap.values():
        for name, pos in actions.items():
            assert pos[..., 2].min() > -0.01, name
            assert np.linalg.norm(pos[:, 0, :2], axis=-1).max() < 2.0, name
    for action in STANDING:
        for pose in _poses17(mocap, action):
            lowest_ankle = pose[:, [3, 6], 2].min(axis=1)
            assert (lowest_ankle < 0.2).all() and (lowest_ankle > 0.0).all(), action  # heel lifts
            assert (pose[:, 10, 2] - pose[:, 0, 2] > 0.5).all(), action  # upright


def test_sitting_pelvis_is_lower_than_walking(mocap) -> None:
    for subject in SUBJECTS:
        walk = reduce_h36m32(mocap[subject]["Walking 1"])[:, 0, 2].mean()
        sit = reduce_h36m32(mocap[subject]["Sitting 1"])[:, 0, 2].mean()
        assert walk > 0.85 and sit < walk - 0.3


def test_walking_travels_and_swings_the_legs(mocap) -> None:
    for walk in _poses17(mocap, "Walking"):
        travelled = np.linalg.norm(np.diff(walk[:, 0, :2], axis=0), axis=-1).sum()
        assert travelled > 0.7 * FRAMES / 50  # > 0.7 m/s
        stride = walk[:, 3, :2] - walk[:, 6, :2]
        assert np.linalg.norm(stride, axis=-1).max() > 0.3
    for wait in _poses17(mocap, "Waiting"):
        assert np.linalg.norm(np.diff(wait[:, 0, :2], axis=0), axis=-1).sum() < 0.5


def test_removed_mocap_joints_sit_next_to_kept_ones(mocap) -> None:
    pos = mocap["S1"]["Eating 1"]
    np.testing.assert_allclose(pos[:, 11], pos[:, 0], atol=1e-6)  # spine base on the pelvis
    np.testing.assert_allclose(pos[:, 16], pos[:, 13], atol=1e-6)  # collars on the thorax
    np.testing.assert_allclose(pos[:, 24], pos[:, 13], atol=1e-6)
    for removed, parent in ((4, 3), (9, 8), (20, 19), (22, 19), (28, 27), (30, 27)):
        dist = np.linalg.norm(pos[:, removed] - pos[:, parent], axis=-1)
        assert (dist > 0.01).all() and (dist < 0.2).all(), removed


# --- 2D -------------------------------------------------------------------------------------------


def test_gt_2d_is_the_projection_of_the_reduced_pose(h36m_files) -> None:
    pos3d = _load(h36m_files["3d"], "positions_3d")
    gt = _load(h36m_files["2d_gt"], "positions_2d")
    inside = []
    for subject in SUBJECTS:
        for cam_idx in range(4):
            cam = h36m_camera(subject, cam_idx)
            for name in ("Walking 1", "Posing 1"):
                x = world_to_camera(reduce_h36m32(pos3d[subject][name]), cam.orientation,
                                    cam.translation)
                uv = image_coordinates(project_to_2d(x, cam.intrinsic), cam.res_w, cam.res_h)
                np.testing.assert_allclose(gt[subject][name][cam_idx], uv, atol=1e-3)
                assert (x[..., 2] > 1.0).all()
        for views in gt[subject].values():
            for cam_idx, uv in enumerate(views):
                cam = h36m_camera(subject, cam_idx)
                inside.append(((uv >= 0) & (uv <= [cam.res_w, cam.res_h])).all(-1).mean())
    assert np.mean(inside) > 0.95


def test_detections_differ_from_gt_by_a_realistic_amount(h36m_files) -> None:
    gt = _load(h36m_files["2d_gt"], "positions_2d")
    det = _load(h36m_files["2d_detections"], "positions_2d")
    err = np.concatenate([
        np.linalg.norm(d - g, axis=-1).ravel()
        for s in gt for a in gt[s] for d, g in zip(det[s][a], gt[s][a], strict=True)
    ])
    assert 2.0 < np.median(err) < 12.0
    assert 0.0 < (err > 30).mean() < 0.03  # a few outliers, not many


def test_detector_noise_model() -> None:
    gt = np.random.default_rng(0).uniform(100, 900, size=(400, 17, 2)).astype(np.float32)
    clean = demo_synthetic(jitter_px=0.0, bias_px=0.0, outlier_rate=0.0)
    np.testing.assert_allclose(detect(gt, clean, np.random.default_rng(1)), gt, atol=1e-3)
    jitter = demo_synthetic(jitter_px=3.0, bias_px=0.0, outlier_rate=0.0)
    noise = detect(gt, jitter, np.random.default_rng(1)) - gt
    assert 2.0 < noise.std() < 5.0
    lag1 = np.corrcoef(noise[1:].ravel(), noise[:-1].ravel())[0, 1]
    assert 0.3 < lag1 < 0.9  # temporally correlated, not constant
    bias = demo_synthetic(jitter_px=0.0, bias_px=2.0, outlier_rate=0.0)
    offset = detect(gt, bias, np.random.default_rng(1)) - gt
    np.testing.assert_allclose(offset, offset[:1].repeat(400, axis=0), atol=1e-3)
    assert np.abs(offset).max() > 0.5


# --- small pieces ---------------------------------------------------------------------------------


def test_two_bone_ik_keeps_lengths_and_reaches_targets() -> None:
    rng = np.random.default_rng(3)
    start = rng.normal(size=(200, 3))
    target = start + rng.normal(size=(200, 3)) * 0.25
    pole = rng.normal(size=(200, 3))
    mid, end = two_bone_ik(start, target, pole, 0.28, 0.25)
    np.testing.assert_allclose(np.linalg.norm(mid - start, axis=-1), 0.28, rtol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(end - mid, axis=-1), 0.25, rtol=1e-9)
    reachable = np.linalg.norm(target - start, axis=-1) < 0.5
    np.testing.assert_allclose(end[reachable], target[reachable], atol=1e-9)


# --- MPI-INF-3DHP ---------------------------------------------------------------------------------


def test_3dhp_files_have_the_d3dp_structure(tmp_path: Path) -> None:
    from ddhpose.synthetic.mpi3dhp import write_synthetic_3dhp

    cfg = demo_synthetic(frames=FRAMES, mpi3dhp_subjects=1, mpi3dhp_sequences=2,
                          mpi3dhp_cameras=(0, 5), mpi3dhp_test_sequences=("TS1", "TS5"))
    paths = write_synthetic_3dhp(tmp_path, cfg)
    train = _load(paths["train"], "data")
    assert list(train) == ["S1 Seq1", "S1 Seq2"]
    for seq in train.values():
        assert isinstance(seq, list) and sorted(seq[0]) == [0, 5]
        for cam in seq[0].values():
            assert cam["data_3d"].shape == (FRAMES, 17, 3)
            assert cam["data_2d"].shape == (FRAMES, 17, 2)
            assert (cam["data_3d"][..., 2] > 1500).all()  # mm, in front of the camera
            assert ((cam["data_2d"] > 0) & (cam["data_2d"] < 2048)).all()
    test = _load(paths["test"], "data")
    assert list(test) == ["TS1", "TS5"]
    for ts, seq in test.items():
        intrinsic, width, height = mpi3dhp_test_intrinsic_px(ts)
        assert set(seq) == {"data_3d", "data_2d", "valid", "activity"}
        x = seq["data_3d"].astype(np.float64)
        uv = intrinsic[:2] * x[..., :2] / x[..., 2:] + intrinsic[2:4]
        np.testing.assert_allclose(seq["data_2d"], uv, atol=0.05)
        assert ((seq["data_2d"] > 0) & (seq["data_2d"] < [width, height])).all()
        assert set(np.unique(seq["valid"])) <= {0, 1} and seq["valid"].mean() > 0.7
        assert seq["activity"].min() >= 1 and seq["activity"].max() <= 7
        assert len(np.unique(seq["activity"])) >= 2
        # 3DHP joint order: thigh ~450 mm, neck above pelvis (camera y points down)
        thigh = np.linalg.norm(x[:, 9] - x[:, 8], axis=-1)
        assert 380 < thigh.mean() < 520 and thigh.std() < 0.5
        assert MPI3DHP17.joint_names[14] == "pelvis"
        assert (x[:, 1, 1] < x[:, 14, 1]).mean() > 0.9


def test_3dhp_is_deterministic() -> None:
    from ddhpose.synthetic.mpi3dhp import synthesize_3dhp_test

    cfg = demo_synthetic(frames=30, mpi3dhp_test_sequences=("TS2",))
    a, b = synthesize_3dhp_test(cfg), synthesize_3dhp_test(cfg)
    np.testing.assert_array_equal(a["TS2"]["data_3d"], b["TS2"]["data_3d"])
    c = synthesize_3dhp_test(demo_synthetic(seed=5, frames=30,
                                             mpi3dhp_test_sequences=("TS2",)))
    assert np.abs(c["TS2"]["data_3d"] - a["TS2"]["data_3d"]).max() > 10.0


@pytest.mark.slow
def test_render_preview_writes_a_png(tmp_path: Path) -> None:
    from ddhpose.synthetic.preview import render_preview

    out = render_preview(tmp_path / "preview.png", demo_synthetic(frames=50))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_h36m17_bone_table_matches_targets() -> None:
    assert set(TARGETS) == set(H36M17.bones)


def test_every_h36m_action_has_a_motion_recipe():
    from ddhpose.synthetic.actions import RECIPES
    from ddhpose.synthetic.config import H36M_ACTIONS

    assert len(H36M_ACTIONS) == 15 and set(H36M_ACTIONS) <= set(RECIPES)
