"""`python -m ddhpose.bench.stream` on a tiny model: every case streams every frame, and the
report files name the date, commit, threads and load."""

from __future__ import annotations

import json

from demo_config import PARAMS_FILE, demo_params

from ddhpose.bench import stream
from ddhpose.bench.plan import ModelSpec


def test_report_rows_and_files(tmp_path, monkeypatch):
    tiny = ModelSpec("tiny_f9", 16, 1, 9)
    real_run = stream.run
    monkeypatch.setattr(stream, "run", lambda frames, threads, settings, repeats: real_run(
        frames, threads, settings, repeats, spec=tiny))
    assert stream.main(["--out", str(tmp_path), "--frames", "6", "--repeats", "2", "--threads",
                        "1", "--params", str(PARAMS_FILE)]) == 0
    h, k = demo_params().sample.hypotheses, demo_params().sample.steps
    report = json.loads((tmp_path / "bench_stream.json").read_text())
    rows = report["rows"]
    assert [(r["policy"], r["hypotheses"], r["steps"]) for r in rows] == [
        ("centred", h, k), ("causal", h, k), ("centred", 1, 1), ("causal", 1, 1)]
    assert all(r["frames"] == 6 and r["ms_per_frame"] > 0 and len(r["ms_per_frame_runs"]) == 2
               for r in rows)
    assert [r["latency_frames"] for r in rows] == [4, 0, 4, 0]
    assert rows[1]["push_p50_ms"] is not None  # causal serves on every push
    assert report["commit"] and report["machine"]["threads"] == 1 and "load_avg" in report[
        "machine"]
    md = (tmp_path / "bench_stream.md").read_text()
    assert "| causal | 1 | 1 | 0 | 6 × 2 |" in md and report["date"] in md
