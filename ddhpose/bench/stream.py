"""Live lifting cost: milliseconds per frame of :class:`ddhpose.inference.stream.StreamLifter`
for each policy, on this CPU.

For each (H, K) — ``sample.hypotheses`` and ``sample.steps`` of params.yaml, and H = K = 1 — and
each policy (``centred``, ``causal``), a synthetic walk of ``frames`` frames (Human3.6M-17
pixels) is pushed one frame at a time through a lifter on the demo-size model (width 64, depth 3,
F = 27; random weights of ``models/best.pt``'s size: the cost does not depend on the weights),
after one warm-up window; every case runs ``repeats`` times, the cases interleaved. Reported
per case:

- ``ms_per_frame``: wall time of all pushes and the flush ÷ frames, the median over the repeats
  (each frame is one sampled window: the sustained cost, so ``1000 / ms_per_frame`` is the most
  frames per second the lifter keeps up with);
- ``push_p50_ms`` / ``push_p95_ms``: time of a push that served one frame (the compute part of
  a frame's delay);
- ``latency_frames``: frames a frame waits for (F // 2 centred, 0 causal); at a camera's fps
  the wait is ``latency_frames / fps`` seconds on top of the compute.

Entry point: ``python -m ddhpose.bench.stream [--out reports] [--frames 30] [--repeats 3]
[--threads N]``
(writes ``reports/bench_stream.json`` and ``reports/bench_stream.md`` with the date, commit,
threads and load average).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.bench.measure import machine_info
from ddhpose.bench.plan import DEMO_27, ModelSpec
from ddhpose.bench.report import write_report
from ddhpose.evaluation.streaming import POLICIES

SIZE = (1000.0, 1000.0)


def walk(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 17, 2) pixels: a skeleton-sized point cloud drifting smoothly across the image."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(400, 600, size=(1, 17, 2))
    return base + np.cumsum(rng.normal(0, 2, size=(frames, 17, 2)), axis=0)


def measure(model: Any, policy: str, hypotheses: int, steps: int,
            frames: int) -> tuple[float, list[float], int]:
    """Push ``frames`` frames one by one: (seconds of all pushes and the flush, seconds of each
    push that served one frame, the policy's latency in frames)."""
    from ddhpose.inference.stream import StreamLifter

    kp = walk(frames)
    warm = StreamLifter(model, policy="causal", hypotheses=hypotheses, steps=steps,
                        image_size=SIZE)
    warm.push(kp[0])  # oneDNN prepacking, allocator
    lifter = StreamLifter(model, policy=policy, hypotheses=hypotheses, steps=steps,
                          image_size=SIZE)
    pushes, served = [], 0
    start = time.perf_counter()
    for frame in kp:
        t0 = time.perf_counter()
        out = lifter.push(frame)
        if len(out) == 1:
            pushes.append(time.perf_counter() - t0)
        served += len(out)
    served += len(lifter.flush())
    total = time.perf_counter() - start
    if served != frames:
        raise RuntimeError(f"{policy}: {served} poses for {frames} frames")
    return total, pushes, lifter.latency_frames


def summary(policy: str, hypotheses: int, steps: int, frames: int, window: int, latency: int,
            runs: list[tuple[float, list[float]]]) -> dict[str, Any]:
    """One row: ms/frame of each repeat (and their median), push percentiles over all."""
    per_run = [round(1000 * total / frames, 2) for total, _ in runs]
    ms = 1000 * np.asarray([p for _, pushes in runs for p in pushes])
    return {"policy": policy, "hypotheses": hypotheses, "steps": steps, "frames": frames,
            "window": window, "latency_frames": latency, "repeats": len(runs),
            "ms_per_frame_runs": per_run, "ms_per_frame": float(np.median(per_run)),
            "push_p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "push_p95_ms": round(float(np.percentile(ms, 95)), 2) if len(ms) else None}


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run(frames: int, threads: int, settings: list[tuple[int, int]], repeats: int = 3,
        spec: ModelSpec = DEMO_27) -> dict[str, Any]:
    """Every (H, K) x policy case ``repeats`` times, the cases interleaved round by round (a
    change in the machine's load hits every case alike)."""
    from ddhpose.model.ddhpose import DDHPose

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DDHPose(spec.config()).eval()
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    cases = [(policy, h, k) for h, k in settings for policy in POLICIES]
    runs: dict[tuple[str, int, int], list[tuple[float, list[float]]]] = {c: [] for c in cases}
    latency: dict[str, int] = {}
    for _ in range(repeats):
        for policy, h, k in cases:
            total, pushes, latency[policy] = measure(model, policy, h, k, frames)
            runs[(policy, h, k)].append((total, pushes))
    rows = [summary(p, h, k, frames, spec.frames, latency[p], runs[(p, h, k)])
            for p, h, k in cases]
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _commit(), "model": spec.name, "load_avg_before": load_before,
            "machine": machine_info(threads), "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# Live lifting cost per frame ({report['date']}, commit {report['commit']})", "",
             f"`python -m ddhpose.bench.stream`: model {report['model']} (random weights), "
             f"{m['processor'] or m['platform']}, {m['cpu_count']} CPUs, {m['threads']} torch "
             f"threads, torch {m['torch']}; load average before "
             f"{report['load_avg_before']}, after {m.get('load_avg')} (other work shares the "
             "CPUs when the load exceeds the CPU count).", "",
             "| policy | H | K | latency (frames) | frames × repeats | ms/frame (median) | "
             "ms/frame of each repeat | push p50 ms | push p95 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['policy']} | {r['hypotheses']} | {r['steps']} | "
                     f"{r['latency_frames']} | {r['frames']} × {r['repeats']} | "
                     f"{r['ms_per_frame']:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in r['ms_per_frame_runs'])} | "
                     f"{r['push_p50_ms']} | {r['push_p95_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ddhpose.bench.stream", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--frames", type=int, default=30, help="frames per run (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="H and K of its sample section (default params.yaml)")
    args = ap.parse_args(argv)
    from ddhpose.config.schema import load_params

    sample = load_params(args.params).sample
    settings = [(int(sample.hypotheses), int(sample.steps)), (1, 1)]
    report = run(args.frames, args.threads, settings, args.repeats)
    write_report(args.out, "bench_stream", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
