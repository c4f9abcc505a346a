"""`ddhpose.evaluation.streaming`: the window policies (which window, which frame of it), the
evenly spaced evaluation frames, and the evaluate stage's accuracy-per-policy measurement on a
tiny project (a real checkpoint file, the sample stage's predictions and meta)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from demo_config import demo_model, tiny_model

from ddhpose.evaluation.metrics import joint_errors
from ddhpose.evaluation.predict import predict_split
from ddhpose.evaluation.streaming import (
    STREAM_EVAL_NOISE,
    evaluation_frames,
    frames_ready,
    latency_frames,
    noise_generator,
    stream_policy_errors,
    streaming_report,
    window_indices,
    window_noise,
    window_offset,
)
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose
from ddhpose.pipeline.sample import sequence_generator
from ddhpose.synthetic.smoke import synthetic_split

F = 9


def test_window_policies():
    assert (window_offset("centred", 9), latency_frames("centred", 9)) == (4, 4)
    assert (window_offset("causal", 9), latency_frames("causal", 9)) == (8, 0)
    assert (window_offset("centred", 243), latency_frames("centred", 243)) == (121, 121)
    assert latency_frames("centred", 8) == 3  # even F: frame t at position 4 of 0..7
    np.testing.assert_array_equal(window_indices(10, "centred", 5), [8, 9, 10, 11, 12])
    np.testing.assert_array_equal(window_indices(10, "causal", 5), [6, 7, 8, 9, 10])
    # the start: frame 0 repeated; the end (flush): the last frame repeated
    np.testing.assert_array_equal(window_indices(1, "centred", 5), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(window_indices(1, "causal", 5), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(window_indices(6, "centred", 5, last=7), [4, 5, 6, 7, 7])
    assert frames_ready(3, "centred", 9) == 0 and frames_ready(5, "centred", 9) == 1
    assert frames_ready(5, "causal", 9) == 5
    with pytest.raises(ValueError, match="policy"):
        window_offset("ahead", 9)


def test_causal_windows_never_look_ahead_and_centred_ones_are_centred():
    for t in range(30):
        causal = window_indices(t, "causal", 9)
        assert causal.max() == t and causal[-1] == t
        centred = window_indices(t, "centred", 9)
        assert centred[4] == t and centred.max() == t + 4


def test_evaluation_frames_are_evenly_spaced_and_distinct():
    picks = evaluation_frames([10, 5, 20], 7)
    assert len(picks) == 7 and len(set(picks)) == 7
    assert picks[0] == (0, 0) and picks[-1] == (2, 19)
    flat = [[0, 10, 15][s] + t for s, t in picks]
    assert flat == sorted(flat) and np.ptp(np.diff(flat)) <= 1
    assert all(t < [10, 5, 20][s] for s, t in picks)
    assert evaluation_frames([3, 4], 100) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2),
                                              (1, 3)]
    assert evaluation_frames([3, 4], 0) == []
    valid = np.array([False, False, True, False, True, True, False])
    assert evaluation_frames([3, 4], 2, valid) == [(0, 2), (1, 2)]


def test_window_noise_is_per_window():
    gens = [noise_generator(1, 2), noise_generator(1, 3)]
    both = window_noise(gens)((2, 3, 4))
    alone = window_noise([noise_generator(1, 3)])((1, 3, 4))
    np.testing.assert_array_equal(both[1:], alone)
    assert not torch.equal(both[0], both[1])
    with pytest.raises(ValueError, match="2 generators"):
        window_noise(gens)((3, 4))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny evaluated project: a checkpoint file, the test split, the sample stage's
    predictions (its per-sequence noise rule) and meta.json."""
    root = tmp_path_factory.mktemp("tiny")
    model = tiny_model(F)
    best = save_checkpoint(root / "best.pt", model)
    split = synthetic_split(sequences=3, frames=25, seed=4)
    meta = {"hypotheses": 3, "steps": 2, "seed": 5, "device": "cpu", "dtype": "float32"}
    pred = predict_split(model, split, hypotheses=3, steps=2, batch_clips=2,
                         sequence_generator=sequence_generator(5))
    return {"root": root, "model": model, "best": best, "split": split, "meta": meta,
            "pred": pred}


def test_policy_errors_by_hand(project):
    model, split = project["model"], project["split"]
    res = stream_policy_errors(model, split, project["pred"].poses, count=4, hypotheses=3,
                               steps=2, seed=5, batch=3)
    picks = evaluation_frames([int(n) for n in split.seq_length], 4)
    assert res.frames == 4 and len(res.rows) == 6
    got = {(r["policy"], r["aggregation"]): r["p1_mm"] for r in res.rows}
    for policy in ("centred", "causal"):  # P-Agg: each window sampled alone, mean pose
        errs = []
        for s, t in picks:
            seq = split.sequence(s)
            idx = window_indices(t, policy, F, seq.num_frames - 1)
            x = torch.from_numpy(seq.pose_2d[idx].astype(np.float32))[None]
            out = model.sample(x, hypotheses=3, steps=2,
                               generator=noise_generator(5, s, t, STREAM_EVAL_NOISE))
            pose = out[0, -1, :, window_offset(policy, F)].double()  # (H, J, 3)
            pose[:, 0] = 0.0  # the protocol zeroes the root (aggregate.zero_root)
            pose = pose.mean(0)
            gt = torch.from_numpy(seq.pose_3d[t].astype(np.float64))
            errs.append(float(joint_errors(pose, gt - gt[:1]).mean()))
        assert got[(policy, "p_agg")] == pytest.approx(1000 * np.mean(errs), abs=1e-3)
    offline = []  # the offline row reads the predictions at the same frames
    for s, t in picks:
        g = int(split.seq_start[s]) + t
        p = project["pred"].poses["j_agg"][g, -1].astype(np.float64)
        gt = split.pose_3d[g].astype(np.float64)
        offline.append(float(joint_errors(torch.from_numpy(p - p[:1]),
                                          torch.from_numpy(gt - gt[:1])).mean()))
    assert got[("offline", "j_agg")] == pytest.approx(1000 * np.mean(offline), abs=1e-6)
    assert {r["latency_frames"] for r in res.rows} == {4, 0, None}


def test_policy_errors_are_reproducible_and_the_truth_scores_zero(project):
    split = project["split"]
    truth = {a: np.repeat(split.pose_3d[:, None], 2, axis=1) for a in ("j_agg", "p_agg")}
    kw = dict(count=5, hypotheses=2, steps=2)
    a = stream_policy_errors(project["model"], split, truth, seed=1, **kw)
    b = stream_policy_errors(project["model"], split, truth, seed=1, **kw)
    c = stream_policy_errors(project["model"], split, truth, seed=2, **kw)
    assert a.rows == b.rows
    assert [r["p1_mm"] for r in a.rows] != [r["p1_mm"] for r in c.rows]
    assert all(r["p1_mm"] == 0 for r in a.rows if r["policy"] == "offline")
    assert all(r["p1_mm"] > 1 for r in a.rows if r["policy"] != "offline")


def test_the_evaluate_stage_report(project, tmp_path):
    rep = streaming_report(project["best"], project["split"], project["pred"].poses,
                           project["meta"], tmp_path, 6)
    table = pd.read_csv(tmp_path / "streaming.csv")
    assert rep.files == [tmp_path / "streaming.csv"]
    assert list(table.columns) == ["policy", "latency_frames", "aggregation", "p1_mm", "frames"]
    assert table["policy"].tolist() == ["centred"] * 2 + ["causal"] * 2 + ["offline"] * 2
    assert (table["frames"] == 6).all()
    s = rep.metrics["streaming"]
    json.dumps(s)  # goes into metrics.json
    assert s["frames"] == 6 and s["window"] == F and (s["hypotheses"], s["steps"]) == (3, 2)
    assert s["centred"]["latency_frames"] == 4 and s["causal"]["latency_frames"] == 0
    assert set(rep.mlflow) == {f"stream_{p}_{a}_p1_mm" for p in ("centred", "causal", "offline")
                               for a in ("j_agg", "p_agg")} | {"stream_seconds"}
    assert rep.mlflow["stream_causal_p_agg_p1_mm"] == pytest.approx(s["causal"]["p1_p_agg_mm"])
    assert "streaming on 6 test frames" in rep.lines[0]
    off = streaming_report(project["best"], project["split"], project["pred"].poses,
                           project["meta"], tmp_path / "off", 0)
    assert off.metrics == {} and off.files == [] and not (tmp_path / "off").exists()


def test_mpi_inf_3dhp_scores_valid_frames_with_the_pixel_camera(tmp_path):
    """3DHP: root 14, only valid frames, pixel JPMA with each sequence's camera, the model's
    unit; the offline row reads the predictions like the stage (metres)."""
    torch.manual_seed(1)
    model = DDHPose(demo_model(dataset="3dhp", width=16, depth=2, heads=2, frames=F)).eval()
    split = synthetic_split("3dhp", sequences=2, frames=20, seed=8, invalid_every=3)
    pred = predict_split(model, split, hypotheses=2, steps=1, batch_clips=2,
                         sequence_generator=sequence_generator(0))
    res = stream_policy_errors(model, split, pred.poses, count=8, hypotheses=2, steps=1, seed=0)
    picks = evaluation_frames([int(n) for n in split.seq_length], 8, split.valid)
    assert res.frames == len(picks) == 8
    assert all(split.valid[int(split.seq_start[s]) + t] for s, t in picks)
    got = {(r["policy"], r["aggregation"]): r["p1_mm"] for r in res.rows}
    root = split.skeleton.root
    errs = []
    for s, t in picks:
        g = int(split.seq_start[s]) + t
        p = pred.poses["p_agg"][g, -1].astype(np.float64)
        gt = split.pose_3d[g].astype(np.float64)
        p[root] = 0.0
        errs.append(np.linalg.norm(p - (gt - gt[root]), axis=-1).mean())
    assert got[("offline", "p_agg")] == pytest.approx(1000 * np.mean(errs), abs=1e-6)
    assert all(np.isfinite(v) and v > 0 for v in got.values())
    best = save_checkpoint(tmp_path / "best3dhp.pt", model)
    rep = streaming_report(best, split, pred.poses, {"hypotheses": 2, "steps": 1, "seed": 0},
                           tmp_path, 8)
    assert rep.metrics["streaming"]["causal"]["p1_j_agg_mm"] == pytest.approx(
        got[("causal", "j_agg")], abs=1e-6)
