"""A served request's checks and its lifting in process (no server): the layouts, the tracks and
frames of several people, ``uncertainty``, and every bad param refused in one line naming it.
The same requests through a real ``mlflow models serve`` are in test_served_model.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.inference.infer import infer_h36m17
from ddhpose.inference.limits import MAX_SERVED_FRAMES
from ddhpose.keypoints import LAYOUTS, keypoints_from_array
from ddhpose.model.ddhpose import DDHPose
from ddhpose.registry.request import (
    DEFAULT_PARAMS,
    RequestError,
    RequestTooLarge,
    check_body,
    check_params,
    check_size,
    split_rows,
)
from ddhpose.registry.served_model import DDHPoseModel, request_layout

F = 9
SIZE = [640.0, 480.0]


@pytest.fixture(scope="module")
def served_model() -> DDHPoseModel:
    torch.manual_seed(0)
    wrapper = DDHPoseModel()
    wrapper.model = DDHPose(demo_model(width=8, depth=1, heads=2, frames=F, timesteps=50)).eval()
    return wrapper


def _coco(t: int, seed: int, x0: float) -> np.ndarray:
    """(T, 17, 3) COCO-17 pixels of a person drifting slowly, confidence 0.9."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-60, 60, size=(1, 17, 2)) + np.array([x0, 240.0])
    xy = xy + np.cumsum(rng.normal(0, 1.5, size=(t, 17, 2)), axis=0)
    return np.concatenate([xy, np.full((t, 17, 1), 0.9)], axis=-1)


def _reason(exc: pytest.ExceptionInfo) -> str:
    message = exc.value.message
    assert "\n" not in message and len(message) < 300, message
    return message


# --- params ---------------------------------------------------------------------------------------


def test_defaults_are_backwards_compatible():
    p = check_params(None)
    assert p == DEFAULT_PARAMS and p["uncertainty"] is False
    assert p["tracks"] == [] and p["frames"] == []
    # auto: 17 joints stay Human3.6M-17 as before; the other counts name their layout
    assert request_layout("auto", 17) == "h36m17"
    assert request_layout("auto", 25) == "openpose25"
    assert request_layout("auto", 26) == "halpe26"
    assert request_layout("auto", 33) == "mediapipe33"
    assert request_layout("auto", 133) == "coco_wholebody133"
    assert request_layout("auto", 16) == "h36m17"  # refused later with the shape message
    assert request_layout("coco17", 17) == "coco17"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_is_accepted(layout):
    assert check_params({"layout": layout})["layout"] == layout


@pytest.mark.parametrize(("params", "needles"), [
    ({"layout": "openpose"}, ["params.layout", "'openpose'", "mediapipe33", "auto"]),
    ({"tracks": "a"}, ["params.tracks", "one per input row"]),
    ({"tracks": [1, 2]}, ["params.tracks", "1"]),
    ({"tracks": ["a b"]}, ["params.tracks", "'a b'"]),
    ({"frames": [0, -1]}, ["params.frames", "-1"]),
    ({"frames": [0, 1.5]}, ["params.frames", "1.5"]),
    ({"frames": [True]}, ["params.frames"]),
    ({"uncertainty": "yes"}, ["params.uncertainty", "'yes'"]),
    ({"uncertainty": 1}, ["params.uncertainty"]),
])
def test_bad_params_are_one_line_naming_the_key(params, needles):
    with pytest.raises(RequestError) as exc:
        check_params(params)
    message = _reason(exc)
    for needle in needles:
        assert needle in message, message


def test_split_rows_by_track_in_first_row_order_and_by_frame():
    groups = split_rows(6, ["b", "a", "b", "a", "b", "a"], [4, 0, 2, 1, 3, 2])
    assert [g.track for g in groups] == ["b", "a"]
    b, a = groups
    np.testing.assert_array_equal(b.rows, [2, 4, 0])
    np.testing.assert_array_equal(b.frames, [2, 3, 4])
    np.testing.assert_array_equal(a.rows, [1, 3, 5])
    assert b.span == 3 and a.span == 3
    # without frames a track's rows are consecutive frames in request order
    a, b = split_rows(4, ["a", "b", "a", "b"])
    np.testing.assert_array_equal(a.rows, [0, 2])
    np.testing.assert_array_equal(a.frames, [0, 1])
    # without tracks: one person (track None), today's request
    (one,) = split_rows(3)
    assert one.track is None and one.span == 3
    (gap,) = split_rows(2, (), [10, 14])
    assert gap.span == 5


@pytest.mark.parametrize(("tracks", "frames", "needles"), [
    (["a", "b"], [], ["params.tracks has 2 entries for 3 input rows"]),
    ([], [0, 1, 2, 3], ["params.frames has 4 entries for 3 input rows"]),
    (["a", "a", "b"], [5, 5, 5], ["track a has frame 5 twice", "rows 0 and 1"]),
])
def test_split_rows_refuses_wrong_lengths_and_repeated_frames(tracks, frames, needles):
    with pytest.raises(RequestError) as exc:
        split_rows(3, tracks, frames)
    message = _reason(exc)
    for needle in needles:
        assert needle in message, message


def test_a_gap_in_frames_counts_toward_the_frame_bound():
    body = {"inputs": _coco(2, 0, 300.0).tolist(), "params": {"frames": [0, MAX_SERVED_FRAMES]}}
    with pytest.raises(RequestTooLarge) as exc:
        check_body(json.dumps(body).encode(), F)
    assert f"{MAX_SERVED_FRAMES + 1} frames" in _reason(exc)
    check_size(10, 1, 1, F, spans=[5, 5])  # two tracks of 5 frames: fine
    with pytest.raises(RequestTooLarge):
        check_size(2, 1, 1, F, spans=[MAX_SERVED_FRAMES, 1])


def test_check_body_checks_the_tracks_length_before_the_model():
    body = {"inputs": _coco(3, 0, 300.0).tolist(), "params": {"tracks": ["1", "2"]}}
    with pytest.raises(RequestError) as exc:
        check_body(json.dumps(body).encode(), F)
    assert "params.tracks has 2 entries for 3 input rows" in _reason(exc)


# --- predict in process ---------------------------------------------------------------------------


def _lift(model, kp: np.ndarray, layout: str, seed: int, hypotheses: int) -> np.ndarray:
    kps = keypoints_from_array(kp, layout, SIZE)
    return infer_h36m17(model, kps.xy, kps.image_size, hypotheses=hypotheses, steps=1,
                        generator=torch.Generator().manual_seed(seed), keep_hypotheses=False)


def test_the_default_answer_is_unchanged(served_model):
    kp = _coco(12, 0, 300.0)
    out = served_model.predict(None, kp, {"layout": "coco17", "image_size": SIZE,
                                          "hypotheses": 2})
    assert isinstance(out, np.ndarray) and out.shape == (12, 17, 3)
    ref = _lift(served_model.model, kp, "coco17", 0, 2)
    np.testing.assert_allclose(out, ref.poses_3d, atol=1e-6)


def test_uncertainty_is_the_spread_of_the_hypotheses(served_model):
    kp = _coco(12, 0, 300.0)
    params = {"layout": "coco17", "image_size": SIZE, "hypotheses": 3, "seed": 4,
              "uncertainty": True}
    out = served_model.predict(None, kp, params)
    assert set(out) == {"poses_3d", "uncertainty"}
    assert out["poses_3d"].shape == (12, 17, 3) and out["uncertainty"].shape == (12, 17)
    ref = _lift(served_model.model, kp, "coco17", 4, 3)
    np.testing.assert_allclose(out["poses_3d"], ref.poses_3d, atol=1e-6)
    np.testing.assert_allclose(out["uncertainty"], ref.spread, atol=1e-6)
    assert out["uncertainty"][:, 1:].min() > 0  # H = 3 hypotheses differ
    one = served_model.predict(None, kp, {**params, "hypotheses": 1})
    np.testing.assert_array_equal(one["uncertainty"], 0.0)  # H = 1: no spread


def test_two_tracks_interleaved_keep_the_request_row_order(served_model):
    """Rows of two people interleaved, person b with a gap: each track is lifted as its own
    sequence (a first: it has the first row), the answer in the request's row order."""
    a, b = _coco(12, 1, 200.0), _coco(12, 2, 440.0)
    rows, tracks, frames = [], [], []
    for f in range(12):
        rows.append(a[f]), tracks.append("a"), frames.append(f)
        if f not in (5, 6):
            rows.append(b[f]), tracks.append("b"), frames.append(100 + f)
    order = np.random.default_rng(0).permutation(len(rows))  # any row order
    inputs = np.asarray(rows)[order]
    params = {"layout": "coco17", "image_size": SIZE, "hypotheses": 2, "seed": 7,
              "tracks": [tracks[i] for i in order], "frames": [frames[i] for i in order],
              "uncertainty": True}
    out = served_model.predict(None, inputs, params)
    assert out["poses_3d"].shape == (len(rows), 17, 3)
    first = tracks[order[0]]
    # the reference: one generator running through the tracks in the order of their first row
    gen = torch.Generator().manual_seed(7)
    refs = {}
    b_gap = b.copy()
    b_gap[5:7] = np.nan  # frames 105, 106 have no row: interpolated
    for tid in (first, "b" if first == "a" else "a"):
        kp = a if tid == "a" else b_gap
        kps = keypoints_from_array(kp, "coco17", SIZE)
        refs[tid] = infer_h36m17(served_model.model, kps.xy, kps.image_size, hypotheses=2,
                                 steps=1, generator=gen, keep_hypotheses=False)
    for n, i in enumerate(order):
        at = frames[i] - (0 if tracks[i] == "a" else 100)
        np.testing.assert_allclose(out["poses_3d"][n], refs[tracks[i]].poses_3d[at], atol=1e-6)
        np.testing.assert_allclose(out["uncertainty"][n], refs[tracks[i]].spread[at], atol=1e-6)


def test_a_joint_count_picks_its_layout_and_a_wrong_one_is_refused(served_model):
    kp = np.concatenate([_coco(10, 3, 300.0), np.full((10, 8, 3), np.nan)], axis=1)
    kp[:, 17:, 2] = 0.0  # openpose25's extra joints absent: its mid-hip falls back to the hips
    from ddhpose.keypoints.layouts import COCO17_NAMES, OPENPOSE25_NAMES

    op = np.full((10, 25, 3), np.nan)
    for i, name in enumerate(COCO17_NAMES):
        op[:, OPENPOSE25_NAMES.index(name)] = kp[:, i]
    op[:, OPENPOSE25_NAMES.index("neck")] = kp[:, 5:7].mean(axis=1)  # = mid-shoulders
    auto = served_model.predict(None, op, {"image_size": SIZE})
    coco = served_model.predict(None, kp[:, :17], {"layout": "coco17", "image_size": SIZE})
    np.testing.assert_allclose(auto, coco, atol=1e-6)
    with pytest.raises(RequestError) as exc:
        served_model.predict(None, op, {"layout": "coco17"})
    message = _reason(exc)
    assert "(T, 17, 2)" in message and "got (10, 25, 3)" in message, message
    with pytest.raises(RequestError) as exc:
        served_model.predict(None, kp[:, :16], {})
    assert "keypoints must have shape (T, 17, 2) or (T, 17, 3)" in _reason(exc)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_poses_of_the_same_people_as_coco17(served_model, layout):
    """The same people in each layout (tests/layout_keypoints.py), named or, for the joint
    counts that name one, left to ``auto``."""
    from layout_keypoints import from_coco

    coco = _coco(10, 3, 300.0)
    ref = served_model.predict(None, coco, {"layout": "coco17", "image_size": SIZE})
    kp = from_coco(coco, layout)
    named = served_model.predict(None, kp, {"layout": layout, "image_size": SIZE})
    np.testing.assert_allclose(named, ref, atol=1e-5)
    if kp.shape[1] != 17:
        auto = served_model.predict(None, kp, {"image_size": SIZE})
        np.testing.assert_allclose(auto, ref, atol=1e-5)


def test_a_wrong_joint_count_with_tracks_names_the_request_shape(served_model):
    kp = np.concatenate([_coco(6, 3, 300.0), np.full((6, 8, 3), 1.0)], axis=1)  # 25 joints
    with pytest.raises(RequestError) as exc:
        served_model.predict(None, kp, {"layout": "coco17", "tracks": ["a"] * 3 + ["b"] * 3})
    assert "layout coco17, got (6, 25, 3)" in _reason(exc)
