"""Uncertainty calibration by known answers: a spread ranked exactly like the error gives
Spearman 1, a shuffled one about 0, a per-joint-only signal is seen through by the within-joint
number, and the 10 % most / least uncertain joints pick the right errors."""

from __future__ import annotations

import numpy as np
import pytest

from ddhpose.evaluation.calibration import (
    calibration,
    calibration_by_aggregation,
    uncertainty_dict,
    uncertainty_metrics,
    uncertainty_table,
)


def _errors(t_len: int = 200, joints: int = 17, seed: int = 0) -> np.ndarray:
    err = np.random.default_rng(seed).uniform(0.01, 0.2, size=(t_len, joints))  # metres
    err[:, 0] = 0.0  # the root
    return err


def test_spread_ranked_like_the_error_gives_one_and_a_shuffled_one_about_zero():
    err = _errors()
    r = calibration(err ** 2 * 3.0, err, root=0)  # monotonic: same ranks
    assert r["pairs"] == 200 * 16
    assert r["spearman"] == pytest.approx(1.0)
    assert r["spearman_within_joint"] == pytest.approx(1.0)
    shuffled = np.random.default_rng(1).permutation(err.ravel()).reshape(err.shape)
    r0 = calibration(shuffled, err, root=0)
    assert abs(r0["spearman"]) < 0.06
    assert abs(r0["spearman_within_joint"]) < 0.06
    assert r["spearman"] - r0["spearman"] > 0.9
    anti = calibration(-err, err, root=0)
    assert anti["spearman"] == pytest.approx(-1.0)


def test_top_and_bottom_ten_percent_in_mm():
    err = np.zeros((10, 2))  # joint 0 is the root; joint 1: errors 1..10 mm
    err[:, 1] = np.arange(1, 11) / 1000.0
    spread = err.copy()
    r = calibration(spread, err, root=0)
    assert r["pairs"] == 10
    assert r["top10_mm"] == pytest.approx(10.0) and r["bottom10_mm"] == pytest.approx(1.0)
    assert r["all_mm"] == pytest.approx(5.5)
    assert r["deciles"]["error_mm"] == pytest.approx(list(range(1, 11)))
    assert r["deciles"]["spread_mm"] == pytest.approx(list(range(1, 11)))


def test_a_per_joint_difficulty_alone_is_not_within_joint_calibration():
    """Spread = a constant per joint that follows the joints' mean difficulty, plus noise
    unrelated to the frame's error: pooled Spearman looks good, within-joint is ~0."""
    rng = np.random.default_rng(2)
    difficulty = np.linspace(0.01, 0.2, 17)
    err = difficulty[None] * rng.uniform(0.5, 1.5, size=(400, 17))
    spread = difficulty[None] + rng.normal(scale=1e-4, size=(400, 17))
    r = calibration(spread, err, root=0)
    assert r["spearman"] > 0.6
    assert abs(r["spearman_within_joint"]) < 0.1


def test_the_root_and_invalid_frames_are_left_out():
    err = _errors(20, 3)
    spread = err.copy()
    spread[:, 0] = 5.0  # a root spread would dominate the top 10 % if it were counted
    valid = np.ones(20, bool)
    valid[:10] = False
    err_bad = err.copy()
    err_bad[:10] = 9.0  # huge errors in invalid frames
    r = calibration(spread, err_bad, root=0, valid=valid)
    assert r["pairs"] == 10 * 2
    assert r["all_mm"] == pytest.approx(err[10:, 1:].mean() * 1000)
    assert r["spearman"] == pytest.approx(1.0)


def test_one_hypothesis_spread_is_undefined_not_a_number_that_looks_real():
    err = _errors(30, 5)
    r = calibration(np.zeros_like(err), err, root=0)
    assert np.isnan(r["spearman"]) and np.isnan(r["spearman_within_joint"])
    assert np.isnan(r["top10_mm"]) and np.isnan(r["bottom10_mm"])
    d = uncertainty_dict({"p_agg": r})
    assert d["p_agg"]["spearman"] is None and d["p_agg"]["all_mm"] == pytest.approx(r["all_mm"])
    assert uncertainty_metrics({"p_agg": r}) == {}


def test_by_aggregation_uses_each_aggregations_joint_error_at_the_last_step():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(50, 4, 3))
    gt[:, 0] = 0
    noise = rng.normal(size=(50, 4, 3)) * rng.uniform(0.001, 0.1, size=(50, 4, 1))
    good = np.stack([gt + 1.0, gt + noise], axis=1)  # (T, K=2, J, 3): step 1 is far off
    spread = np.linalg.norm(noise, axis=-1)  # exactly the last step's error
    res = calibration_by_aggregation(spread, {"p_agg": good, "j_agg": gt + noise[::-1]}, gt,
                                     root=0)
    assert res["p_agg"]["spearman"] == pytest.approx(1.0)
    assert res["j_agg"]["spearman"] < 0.5
    table = uncertainty_table(res)
    assert list(table["aggregation"]) == ["p_agg", "j_agg"]
    assert set(uncertainty_metrics(res)) == {
        f"unc_{k}_{a}" for a in ("p_agg", "j_agg")
        for k in ("spearman", "spearman_within_joint", "top10_mm", "bottom10_mm")}
    with pytest.raises(ValueError, match=r"\(T, J\)"):
        calibration(spread[:, :3], spread)
