"""``python -m ddhpose.bench.onnx``'s parts on a tiny model: both cases (demo style with both
exporters and a separate denoiser call, paper style with one sampler call) give times, ratios
and a sampler difference within 1e-4 m, rendered in the report table. No timing is asserted."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")

from ddhpose.bench.onnx import markdown, measure
from ddhpose.bench.plan import ModelSpec

TINY = ModelSpec("tiny_f9", 16, 2, 9)


@pytest.mark.parametrize("demo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_measure_and_report(tmp_path, demo):
    row = measure(TINY, 2, 2, 2, demo, tmp_path)
    assert row["sample_max_abs_diff"] <= 1e-4
    assert row["sample_s_torch"] > 0 and row["sample_s_onnx"] > 0
    if demo:
        assert row["denoise_max_abs_diff_dynamo"] <= 1e-4
        assert row["denoise_max_abs_diff_torchscript"] <= 1e-4
        assert row["denoise_torch_over_onnx"] > 0
    else:
        assert row["denoise_s_torch"] is None and row["export_s_torchscript"] > 0
    report = {"date": "d", "commit": "c", "onnxruntime": "1", "load_avg_before": None,
              "machine": {"processor": "cpu", "platform": "p", "cpu_count": 2, "threads": 1,
                          "torch": "t"}, "rows": [row]}
    text = markdown(report)
    assert "| tiny_f9 | 2 | 2 | 2 |" in text and ("dynamo" in text) == demo
