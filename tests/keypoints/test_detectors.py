"""Detector output files written here from each project's published format description, read
as they are: OpenPose's per-frame folder, AlphaPose's results, MMPose predictions, MediaPipe
landmark dumps (JSON and CSV); track ids make tracks, gaps filled per track."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ddhpose.errors import DataError
from ddhpose.keypoints import (
    MissingKeypointsWarning,
    SeveralPeopleWarning,
    load_keypoints,
    load_tracks,
    to_h36m17,
)
from ddhpose.keypoints.layouts import HALPE26_NAMES, MEDIAPIPE33_NAMES, OPENPOSE25_NAMES

SIZE = (1280.0, 720.0)


def _xy(joints: int, t: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(100, 700, size=(t, joints, 2)).round(2)


def _triples(xy: np.ndarray, conf: float | np.ndarray = 0.8) -> list[float]:
    c = np.broadcast_to(np.asarray(conf, dtype=np.float64), xy.shape[:1])
    return np.concatenate([xy, c[:, None]], axis=1).reshape(-1).tolist()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingKeypointsWarning)
        return fn(*args, **kwargs)


# --- OpenPose -------------------------------------------------------------------------------------


def _openpose_frame(people: list[dict]) -> dict:
    return {"version": 1.3, "people": [
        {"person_id": p.get("id", [-1]), "pose_keypoints_2d": p["kp"],
         "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
         "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
         "hand_right_keypoints_3d": []} for p in people]}


def test_openpose_folder_body25(tmp_path):
    folder = tmp_path / "openpose"
    folder.mkdir()
    xy = _xy(25, 4, 1)
    for f in range(4):
        kp = _triples(xy[f])
        if f == 2:  # OpenPose writes an undetected point as 0, 0, 0
            kp[3 * 4:3 * 4 + 3] = [0.0, 0.0, 0.0]  # right wrist
        people = [{"kp": kp}]
        if f == 1:  # a second, less confident person (no person_id: -1)
            people.append({"kp": _triples(_xy(25, 1, 9)[0], 0.2)})
        (folder / f"clip_{f:012d}_keypoints.json").write_text(json.dumps(_openpose_frame(people)))
    with pytest.warns(SeveralPeopleWarning, match="1 extra person"), \
            pytest.warns(MissingKeypointsWarning, match="filled 1 missing"):
        got = load_keypoints(folder, image_size=SIZE)
    assert got.source_layout == "openpose25" and got.xy.shape == (4, 17, 2)
    expect = to_h36m17(xy, "openpose25")
    np.testing.assert_allclose(got.xy[[0, 1, 3]], expect[[0, 1, 3]])
    assert got.missing[2, 16] and not got.missing[[0, 1, 3]].any()  # right wrist interpolated
    np.testing.assert_allclose(got.xy[:, 0], xy[:, OPENPOSE25_NAMES.index("mid_hip")])


def test_openpose_coco18_is_refused(tmp_path):
    path = tmp_path / "x_000000000000_keypoints.json"
    path.write_text(json.dumps(_openpose_frame([{"kp": _triples(_xy(18, 1, 0)[0])}])))
    with pytest.raises(DataError, match=r"keypoints\.json: OpenPose keypoints with 18 joints .*"
                                        r"accepted layouts: h36m17"):
        load_keypoints(path, image_size=SIZE)


# --- AlphaPose ------------------------------------------------------------------------------------


def _alphapose(entries: list[tuple[int, object, np.ndarray]]) -> list[dict]:
    out = []
    for frame, idx, xy in entries:
        e = {"image_id": f"{frame}.jpg", "category_id": 1, "keypoints": _triples(xy, 0.9),
             "score": 2.5, "box": [10.0, 20.0, 100.0, 200.0]}
        if idx is not None:
            e["idx"] = idx
        out.append(e)
    return out


def test_alphapose_two_tracks_with_a_gap(tmp_path):
    a, b = _xy(17, 6, 1), _xy(17, 6, 2)
    entries = [(f, 1, a[f]) for f in range(6)] + [(f, [2], b[f]) for f in (1, 2, 4, 5)]
    path = tmp_path / "alphapose-results.json"
    path.write_text(json.dumps(_alphapose(entries)))
    with pytest.warns(MissingKeypointsWarning, match=r"track 2: filled 17 missing"):
        res = load_tracks(path, image_size=SIZE)
    assert res.tracked and res.kind == "AlphaPose" and list(res.tracks) == ["1", "2"]
    one, two = res.tracks["1"], res.tracks["2"]
    assert one.source_layout == "coco17" and one.track == "1"
    np.testing.assert_array_equal(one.frames, np.arange(6))
    np.testing.assert_array_equal(two.frames, np.arange(1, 6))  # first to last frame
    np.testing.assert_allclose(one.xy, to_h36m17(a, "coco17"))
    expect = to_h36m17(b[[1, 2, 4, 5]], "coco17")
    np.testing.assert_allclose(two.xy[[0, 1, 3, 4]], expect)
    np.testing.assert_allclose(two.xy[2], (expect[1] + expect[2]) / 2)  # frame 3 filled
    assert two.missing[2].all() and not two.missing[[0, 1, 3, 4]].any()
    with pytest.raises(DataError, match=r"alphapose-results\.json: 2 tracks \(1, 2\): choose "
                                        r"one with --track ID"):
        load_keypoints(path, image_size=SIZE)
    got = _quiet(load_keypoints, path, image_size=SIZE, track="2")
    np.testing.assert_allclose(got.xy, two.xy)
    with pytest.raises(DataError, match=r"no track '7' \(the file's tracks: 1, 2\)"):
        load_tracks(path, image_size=SIZE, track="7")


def test_alphapose_halpe26_and_untracked_and_refused(tmp_path):
    xy = _xy(26, 3, 3)
    path = tmp_path / "halpe.json"
    path.write_text(json.dumps(_alphapose([(f, None, xy[f]) for f in range(3)])))
    got = load_keypoints(path, image_size=SIZE)
    assert got.source_layout == "halpe26" and got.track is None
    np.testing.assert_allclose(got.xy[:, 10], xy[:, HALPE26_NAMES.index("head")])
    bad = tmp_path / "halpe136.json"
    bad.write_text(json.dumps(_alphapose([(0, None, _xy(136, 1, 0)[0])])))
    with pytest.raises(DataError, match=r"halpe136\.json: AlphaPose keypoints with 136 joints "
                                        r"match no accepted layout"):
        load_keypoints(bad, image_size=SIZE)


# --- MMPose ---------------------------------------------------------------------------------------


def _instance(xy: np.ndarray, score: float = 0.85, track=None) -> dict:
    inst = {"keypoints": xy.tolist(), "keypoint_scores": [score] * len(xy),
            "bbox": [[1.0, 2.0, 300.0, 400.0]], "bbox_score": 0.97}
    if track is not None:
        inst["track_id"] = track
    return inst


def test_mmpose_inferencer_video_predictions(tmp_path):
    xy = _xy(17, 3, 4)
    path = tmp_path / "video.json"
    path.write_text(json.dumps([{"frame_id": f, "instances": [_instance(xy[f])]}
                                for f in range(3)]))
    with pytest.raises(DataError, match=r"video\.json: no joint layout: 17 joints can be"):
        load_keypoints(path, image_size=SIZE)
    got = load_keypoints(path, "coco17", SIZE)
    np.testing.assert_allclose(got.xy, to_h36m17(xy, "coco17"))


def test_mmpose_saved_predictions_with_meta_and_tracks(tmp_path):
    a, b = _xy(26, 2, 5), _xy(26, 2, 6)
    doc = {"meta_info": {"dataset_name": "halpe26", "num_keypoints": 26},
           "instance_info": [{"frame_id": f + 1, "instances": [_instance(a[f], track=3),
                                                               _instance(b[f], track=4)]}
                             for f in range(2)]}
    path = tmp_path / "results_clip.json"
    path.write_text(json.dumps(doc))
    res = load_tracks(path, image_size=SIZE)
    assert list(res.tracks) == ["3", "4"] and res.kind == "MMPose"
    np.testing.assert_array_equal(res.tracks["4"].frames, [1, 2])
    np.testing.assert_allclose(res.tracks["4"].xy, to_h36m17(b, "halpe26"))


# --- MediaPipe ------------------------------------------------------------------------------------


def test_mediapipe_json_and_csv(tmp_path):
    norm = np.random.default_rng(7).uniform(0.2, 0.8, size=(3, 33, 2)).round(4)
    vis = np.full((3, 33), 0.95)
    vis[1, MEDIAPIPE33_NAMES.index("left_knee")] = 0.0  # not visible: missing
    frames = [{"frame": f, "landmarks": [{"x": float(x), "y": float(y), "z": -0.1,
                                          "visibility": float(v)}
                                         for (x, y), v in zip(norm[f], vis[f], strict=True)]}
              for f in range(3)]
    jpath = tmp_path / "pose.json"
    jpath.write_text(json.dumps({"image_size": list(SIZE), "frames": frames}))
    with pytest.warns(MissingKeypointsWarning, match="filled 1 missing"):
        got = load_keypoints(jpath)
    px = norm * np.array(SIZE)
    assert got.source_layout == "mediapipe33" and got.missing[1, 5]
    np.testing.assert_allclose(got.xy[[0, 2]], to_h36m17(px, "mediapipe33")[[0, 2]])
    lines = ["frame,landmark,x,y,z,visibility"]
    for f in range(3):
        for j in range(33):
            lines.append(f"{f},{MEDIAPIPE33_NAMES[j] if j % 2 else j},{norm[f, j, 0]},"
                         f"{norm[f, j, 1]},-0.1,{vis[f, j]}")
    cpath = tmp_path / "pose.csv"
    cpath.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"pose\.csv: no image size"):
        load_keypoints(cpath)
    np.testing.assert_allclose(_quiet(load_keypoints, cpath, image_size=SIZE).xy, got.xy)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"image_size": list(SIZE), "frames": [
        {"frame": 0, "landmarks": frames[0]["landmarks"][:25]}]}))
    with pytest.raises(DataError, match=r"short\.json: frames\[0\]: MediaPipe pose has 33 "
                                        r"landmarks, found 25 \(accepted layouts"):
        load_keypoints(short)


# --- our formats with tracks ----------------------------------------------------------------------


def test_json_tracks_and_csv_track_column(tmp_path):
    a, b = _xy(17, 4, 8), _xy(17, 3, 9)
    doc = {"layout": "coco17", "image_size": list(SIZE),
           "tracks": [{"id": "left", "keypoints": a.tolist()},
                      {"id": 5, "start": 2, "keypoints": b.tolist()}]}
    jpath = tmp_path / "two.json"
    jpath.write_text(json.dumps(doc))
    res = load_tracks(jpath)
    assert list(res.tracks) == ["left", "5"]
    np.testing.assert_array_equal(res.tracks["5"].frames, [2, 3, 4])
    np.testing.assert_allclose(res.tracks["5"].xy, to_h36m17(b, "coco17"))
    lines = ["track,frame,joint,u,v"]
    for tid, start, kp in (("left", 0, a), ("5", 2, b)):
        for f in range(len(kp)):
            for j in range(17):
                lines.append(f"{tid},{start + f},{j},{kp[f, j, 0]},{kp[f, j, 1]}")
    cpath = tmp_path / "two.csv"
    cpath.write_text("\n".join(lines) + "\n")
    res_csv = load_tracks(cpath, "coco17", SIZE)
    for tid in ("left", "5"):
        np.testing.assert_allclose(res_csv.tracks[tid].xy, res.tracks[tid].xy)
        np.testing.assert_array_equal(res_csv.tracks[tid].frames, res.tracks[tid].frames)
    doc["tracks"][1]["id"] = "a b"
    jpath.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"two\.json: track id 'a b' must be"):
        load_tracks(jpath)


def test_our_csv_in_a_detector_layout(tmp_path):
    """Our CSV with BODY_25 joint names: --layout names the 25 joints; without it, a joint
    beyond 16 is one line asking for it."""
    xy = _xy(25, 2, 11)
    lines = ["frame,joint,u,v,confidence"]
    for f in range(2):
        for j in range(25):
            lines.append(f"{f},{OPENPOSE25_NAMES[j]},{xy[f, j, 0]},{xy[f, j, 1]},0.7")
    path = tmp_path / "body25.csv"
    path.write_text("\n".join(lines) + "\n")
    got = load_keypoints(path, "openpose25", SIZE)
    np.testing.assert_allclose(got.xy, to_h36m17(xy, "openpose25"))
    with pytest.raises(DataError, match=r"body25\.csv: line 2: joint name 'nose' needs --layout "
                                        r"\(accepted layouts: h36m17"):
        load_keypoints(path, image_size=SIZE)
    numbered = [lines[0]] + [",".join([ln.split(",")[0], str(k % 25), *ln.split(",")[2:]])
                             for k, ln in enumerate(lines[1:])]
    path.write_text("\n".join(numbered) + "\n")
    np.testing.assert_allclose(load_keypoints(path, "openpose25", SIZE).xy, got.xy)
    with pytest.raises(DataError, match=r"body25\.csv: line 19: joint 17 needs --layout for "
                                        r"more than 17 joints"):
        load_keypoints(path, image_size=SIZE)
