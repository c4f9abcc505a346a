"""The same people given to ``ddhpose infer`` as COCO-17 and in every other layout (written from
the COCO ones with the documented joint tables, tests/layout_keypoints.py) give the same 3D poses:
the joints both layouts have are the same points, so the Human3.6M-17 keypoints, and the lifted
poses, agree. Also for a two-person file in each layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from demo_config import tiny_checkpoint
from layout_keypoints import from_coco, random_walk

from ddhpose.cli import main
from ddhpose.keypoints import LAYOUTS

F = 9
SIZE = (640.0, 480.0)
ARGS = ["--hypotheses", "2", "--steps", "2", "--seed", "5"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), F)


def _coco(t: int, seed: int, x0: float) -> np.ndarray:
    return random_walk(t, seed, centre=(x0, 240.0), spread=60.0, step=2.0, confidence=0.9)


def _write_npz(path, kp: np.ndarray, layout: str) -> str:
    np.savez(path, keypoints=kp, image_size=np.asarray(SIZE), layout=layout)
    return str(path)


def _infer(ckpt: str, keypoints: str, out) -> dict:
    assert main(["infer", "--checkpoint", ckpt, "--keypoints", keypoints, "--out", str(out),
                 *ARGS]) == 0
    return dict(np.load(out))


@pytest.fixture(scope="module")
def coco_result(tmp_path_factory, ckpt) -> tuple[np.ndarray, dict]:
    root = tmp_path_factory.mktemp("coco")
    coco = _coco(20, 0, 320.0)
    return coco, _infer(ckpt, _write_npz(root / "coco.npz", coco, "coco17"), root / "out.npz")


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "coco17"])
def test_each_layout_gives_the_poses_of_the_same_people_as_coco17(tmp_path, ckpt, coco_result,
                                                                  layout):
    coco, ref = coco_result
    kp = from_coco(coco, layout)
    z = _infer(ckpt, _write_npz(tmp_path / f"{layout}.npz", kp, layout), tmp_path / "out.npz")
    assert str(z["source_layout"]) == layout
    np.testing.assert_allclose(z["keypoints_2d"], ref["keypoints_2d"], atol=1e-3)
    np.testing.assert_allclose(z["poses_3d"], ref["poses_3d"], atol=1e-5)
    np.testing.assert_allclose(z["uncertainty"], ref["uncertainty"], atol=1e-5)


@pytest.mark.parametrize("layout", ["openpose25", "halpe26", "mediapipe33",
                                    "coco_wholebody133"])
def test_a_layout_is_picked_from_the_joint_count(tmp_path, ckpt, coco_result, layout):
    """A file that does not name its layout: the joint count does (not for 17 joints)."""
    coco, ref = coco_result
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({"image_size": list(SIZE),
                                "keypoints": from_coco(coco, layout).tolist()}))
    z = _infer(ckpt, str(path), tmp_path / "out.npz")
    assert str(z["source_layout"]) == layout
    np.testing.assert_allclose(z["poses_3d"], ref["poses_3d"], atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_people_in_each_layout(tmp_path, ckpt, layout):
    people = {"1": _coco(16, 1, 200.0), "2": _coco(12, 2, 440.0)}
    results = {}
    for name, lay in (("coco", "coco17"), ("other", layout)):
        doc = {"layout": lay, "image_size": list(SIZE), "tracks": [
            {"id": tid, "start": 2 * n, "keypoints": from_coco(kp, lay).tolist()}
            for n, (tid, kp) in enumerate(people.items())]}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        results[name] = _infer(ckpt, str(path), tmp_path / f"{name}_out.npz")
    for tid in people:
        np.testing.assert_allclose(results["other"][f"track_{tid}_poses_3d"],
                                   results["coco"][f"track_{tid}_poses_3d"], atol=1e-5)
        np.testing.assert_array_equal(results["other"][f"track_{tid}_frames"],
                                      results["coco"][f"track_{tid}_frames"])
