"""`ddhpose infer` on several people: a two-person AlphaPose file gives two 3D tracks keyed by
id, each the same as lifting that track alone; `--track` keeps today's single-person output;
`ddhpose render` draws the tracks side by side or one with `--track`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from demo_config import tiny_checkpoint
from layout_keypoints import random_walk

from ddhpose.cli import main

F = 9
SIZE = (640.0, 480.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), F)


def _coco(t: int, seed: int, x0: float) -> np.ndarray:
    return random_walk(t, seed, centre=(x0, 240.0), spread=60.0, step=1.5)


def _alphapose_two_people(path) -> None:
    """Person 1 in frames 0-11, person 2 in frames 2-11 without frame 6 (AlphaPose --pose_track
    output: one entry per person and frame, ``idx`` the track)."""
    a, b = _coco(12, 1, 200.0), _coco(12, 2, 440.0)
    entries = []
    for f in range(12):
        for idx, kp in ((1, a), (2, b)):
            if idx == 2 and (f < 2 or f == 6):
                continue
            flat = np.concatenate([kp[f], np.full((17, 1), 0.9)], axis=1).reshape(-1)
            entries.append({"image_id": f"{f}.jpg", "category_id": 1,
                            "keypoints": flat.round(3).tolist(), "score": 2.7,
                            "box": [0.0, 0.0, 100.0, 200.0], "idx": idx})
    path.write_text(json.dumps(entries))


def test_two_person_alphapose_gives_two_tracks(tmp_path, ckpt, capsys):
    kp = tmp_path / "alphapose-results.json"
    _alphapose_two_people(kp)
    out = tmp_path / "two.npz"
    base = ["infer", "--checkpoint", ckpt, "--keypoints", str(kp), "--image-size", "640", "480",
            "--hypotheses", "2", "--seed", "3"]
    assert main([*base, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 tracks (frames per track: 1: 12, 2: 10)" in captured.out
    assert "track 2: filled 17 missing" in captured.err  # frame 6 of person 2
    with np.load(out) as z:
        assert z["tracks"].tolist() == ["1", "2"] and "poses_3d" not in z
        assert z["track_1_poses_3d"].shape == (12, 17, 3)
        assert z["track_2_poses_3d"].shape == (10, 17, 3)
        np.testing.assert_array_equal(z["track_2_frames"], np.arange(2, 12))
        assert z["track_2_keypoints_2d"].shape == (10, 17, 2) and int(z["track_2_filled"]) == 17
        assert np.all(z["track_1_poses_3d"][:, 0] == 0)
        two = {k: z[k] for k in z.files}
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["tracks"] == ["1", "2"]
    np.testing.assert_allclose(doc["track_2_poses_3d"], two["track_2_poses_3d"], atol=1e-6)
    # --track 1: today's single-person output; the first track drew the same noise
    one = tmp_path / "one.npz"
    assert main([*base, "--out", str(one), "--track", "1"]) == 0
    with np.load(one) as z:
        assert z["poses_3d"].shape == (12, 17, 3) and str(z["track"]) == "1"
        assert "tracks" not in z
        np.testing.assert_array_equal(z["poses_3d"], two["track_1_poses_3d"])
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "x.npz"), "--track", "9"]) == 2
    err = capsys.readouterr().err
    assert "no track '9' (the file's tracks: 1, 2)" in err and err.count("\n") == 1
    # render: side by side, or one track
    png = tmp_path / "two.png"
    assert main(["render", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    gif = tmp_path / "two.gif"
    assert main(["render", str(out), "--out", str(gif), "--max-frames", "3"]) == 0
    assert gif.read_bytes()[:3] == b"GIF" and "2 tracks side by side" in capsys.readouterr().out
    png1 = tmp_path / "one.png"
    assert main(["render", str(out), "--out", str(png1), "--track", "2"]) == 0
    assert png1.read_bytes()[:4] == b"\x89PNG"
    assert main(["render", str(out), "--out", str(tmp_path / "n.png"), "--track", "5"]) == 2
    assert "no track '5'" in capsys.readouterr().err


def test_wrong_layout_and_track_are_one_line(tmp_path, ckpt, capsys):
    """A 17-joint AlphaPose file (COCO) given as OpenPose BODY_25, and --track on a file
    without ids: exit 2, one line naming the file, nothing written."""
    kp = tmp_path / "alphapose-results.json"
    _alphapose_two_people(kp)
    out = tmp_path / "o.npz"
    base = ["infer", "--checkpoint", ckpt, "--out", str(out), "--image-size", "640", "480"]
    assert main([*base, "--keypoints", str(kp), "--layout", "openpose25"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(kp) in err and "coco17" in err and "openpose25" in err
    from ddhpose.keypoints import save_keypoints_json

    single = tmp_path / "kp.json"
    save_keypoints_json(single, np.ones((3, 17, 2)) * 300, "coco17", SIZE)
    assert main([*base, "--keypoints", str(single), "--track", "1"]) == 2
    err = capsys.readouterr().err
    assert "kp.json: --track 1: the file has no track ids" in err and err.count("\n") == 1
    assert not out.exists()


def test_single_person_output_keys_unchanged(tmp_path, ckpt):
    """A file without track ids writes today's keys, in today's order, and only the keys added
    since (``runtime``; ``smooth_window``, ``uncertainty``, ``jitter``) besides."""
    from ddhpose.keypoints import save_keypoints_json

    kp = np.concatenate([_coco(10, 5, 320.0), np.ones((10, 17, 1))], axis=-1)
    save_keypoints_json(tmp_path / "kp.json", kp, "coco17", SIZE)
    out = tmp_path / "p.npz"
    assert main(["infer", "--checkpoint", ckpt, "--keypoints", str(tmp_path / "kp.json"),
                 "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    today = ["poses_3d", "layout", "keypoints_2d", "image_size", "spread", "aggregate",
             "num_hypotheses", "steps", "seed", "precision", "checkpoint", "keypoints_file",
             "source_layout", "filled"]
    added = {"runtime", "smooth_window", "uncertainty", "jitter"}
    assert [k for k in doc if k not in added] == today
    assert added <= set(doc)
