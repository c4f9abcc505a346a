"""Sampling frames/s on one process and on several, in one run: the scale-out of the sample stage.

For each model (the demo size and the paper size) the same synthetic test split is sampled
(:func:`ddhpose.evaluation.predict.predict_sequences`, per-sequence noise as the stage) by

- 1 process with ``threads`` threads, and
- P processes with ``threads // P`` threads each (at least 1), each on its share of the sequences
  (:func:`ddhpose.evaluation.predict.shard_sequences`), started together behind a barrier,

after one warm-up batch per process. frames/s = test frames ÷ the slowest process's seconds
(sampling only: model loading, process start-up and the final gather are not counted; the stage
pays them once). Random weights: the cost does not depend on them.

Entry point: ``python -m ddhpose.bench.scaleout [--out reports] [--threads 2] [--processes 2]
[--quick]`` (writes ``reports/bench_scaleout.md`` and ``reports/bench_scaleout.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ddhpose.bench.measure import machine_info
from ddhpose.bench.plan import DEMO_27, PAPER_243, ModelSpec
from ddhpose.bench.report import write_report
from ddhpose.evaluation.predict import predict_sequences, shard_sequences

#: (model, H, K, sequences, frames per sequence): the demo stage's setting, and the paper model
#: at H = K = 1 on a few 243-frame clips (its H = 20, K = 10 costs 200× per clip)
CASES = ((DEMO_27, 5, 2, 8, 120), (PAPER_243, 1, 1, 4, 243))
QUICK = ((DEMO_27, 5, 2, 4, 60), (PAPER_243, 1, 1, 2, 243))


def _worker(rank: int, processes: int, spec: ModelSpec, hyp: int, steps: int, sequences: int,
            frames: int, threads: int, barrier: Any, out: Any) -> None:
    torch.set_num_threads(threads)
    from ddhpose.model.ddhpose import DDHPose
    from ddhpose.synthetic.smoke import synthetic_split

    torch.manual_seed(0)
    model = DDHPose(spec.config()).eval()
    split = synthetic_split(sequences=sequences, frames=frames, seed=1)
    share = shard_sequences([int(n) for n in split.seq_length], processes)[rank]
    kw: dict[str, Any] = dict(hypotheses=hyp, steps=steps, batch_clips=4,
                              sequence_generator=lambda i: torch.Generator().manual_seed(i))
    x = torch.zeros(1, spec.frames, 17, 2)
    with torch.inference_mode():  # warm-up: oneDNN prepacking, allocator
        model.sample(x, hypotheses=hyp, steps=steps, x2d_flip=x)
    barrier.wait()
    start = time.perf_counter()
    predict_sequences(model, split, share, **kw)
    out.put((rank, sum(int(split.seq_length[i]) for i in share), time.perf_counter() - start))


def measure(spec: ModelSpec, hyp: int, steps: int, sequences: int, frames: int,
            processes: int, threads: int) -> dict[str, Any]:
    """Run one configuration in fresh processes; frames, seconds (slowest rank), frames/s."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, processes, spec, hyp, steps, sequences, frames,
                                                threads, barrier, out)) for r in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"bench worker exited with {p.exitcode}")
    total = sum(r[1] for r in results)
    seconds = max(r[2] for r in results)
    return {"model": spec.name, "hypotheses": hyp, "steps": steps, "processes": processes,
            "threads_per_process": threads, "frames": total, "seconds": round(seconds, 3),
            "frames_per_second": round(total / seconds, 2)}


def run(threads: int, processes: int, quick: bool = False) -> dict[str, Any]:
    rows = []
    for spec, hyp, steps, sequences, frames in (QUICK if quick else CASES):
        one = measure(spec, hyp, steps, sequences, frames, 1, threads)
        many = measure(spec, hyp, steps, sequences, frames, processes,
                       max(1, threads // processes))
        many["speedup_vs_one"] = round(many["frames_per_second"] / one["frames_per_second"], 3)
        rows += [one, many]
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(threads), "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# Sampling on 1 and several processes ({report['date']})", "",
             f"{m['processor'] or m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, "
             f"load average at the end {m.get('load_avg')}.", "",
             "| model | H | K | processes × threads | frames | s | frames/s | vs 1 process |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | {r['hypotheses']} | {r['steps']} | {r['processes']} × "
                     f"{r['threads_per_process']} | {r['frames']} | {r['seconds']} | "
                     f"{r['frames_per_second']} | {r.get('speedup_vs_one', 1.0)}× |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ddhpose.bench.scaleout", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of the one-process run, shared by the processes of the other")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smaller splits")
    args = ap.parse_args(argv)
    report = run(args.threads, args.processes, args.quick)
    write_report(args.out, "bench_scaleout", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
