"""The scale-out benchmark runs 1 and 2 real processes on the same split and counts every frame."""

from __future__ import annotations

from ddhpose.bench.plan import ModelSpec
from ddhpose.bench.scaleout import markdown, measure


def test_one_and_two_processes_sample_every_frame():
    spec = ModelSpec("tiny", 16, 1, 9)
    one = measure(spec, 2, 1, sequences=3, frames=20, processes=1, threads=1)
    two = measure(spec, 2, 1, sequences=3, frames=20, processes=2, threads=1)
    assert one["frames"] == two["frames"] == 60
    assert one["processes"] == 1 and two["processes"] == 2
    assert one["frames_per_second"] > 0 and two["frames_per_second"] > 0
    text = markdown({"date": "d", "machine": {"processor": "p", "platform": "x", "cpu_count": 2,
                                              "torch": "t"}, "rows": [one, two]})
    assert "| tiny | 2 | 1 | 2 × 1 | 60 |" in text
