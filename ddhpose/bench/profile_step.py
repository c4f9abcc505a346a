"""Where the time of one training step goes: ``torch.profiler`` tables per operator, for the
forward (with the losses), the backward and the optimizer step separately, in one variant of
:mod:`ddhpose.bench.train_step`.

``python -m ddhpose.bench.profile_step [--width 512 --depth 8 --frames 243]
[--variant onednn_linear] [--threads 2] [--rows 25]``: one warm-up step, then one profiled
step; prints the three tables (self CPU time, descending) and the step's user/system CPU
seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ddhpose.bench.train_step import DEFAULT_VARIANT, TRAIN_VARIANTS, StepCase, TrainStep
from ddhpose.model.losses import backward_loss, pose_losses


def profile_step(step: TrainStep, variant: str, rows: int = 25) -> dict[str, str]:
    """Profile one step of ``step`` in ``variant``: {"forward", "backward", "optimizer"} tables."""
    tables: dict[str, str] = {}
    with step.variant(variant):
        step()  # warm-up
        step.masks.start_epoch(seed=1, epoch=step.steps)
        step.masks.set_batch(step.case.batch, 0, step.case.batch)
        step.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(step.device.type, dtype=step.autocast) if step.autocast
               else contextlib.nullcontext())
        gen = torch.Generator().manual_seed(step.steps)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with ctx:
                pred = step.model(step.x2d, step.x3d, generator=gen)
            total = pose_losses(pred, step.x3d, step.model.skeleton)["total"]
        tables["forward"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                      row_limit=rows)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            backward_loss(total)
        tables["backward"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                       row_limit=rows)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step.optimizer.step()
        tables["optimizer"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                        row_limit=rows)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        tables["summary"] = (f"wall {time.perf_counter() - t0:.2f} s (profiled), user "
                             f"{usage1.ru_utime - usage0.ru_utime:.2f} s, system "
                             f"{usage1.ru_stime - usage0.ru_stime:.2f} s, minor page faults "
                             f"{usage1.ru_minflt - usage0.ru_minflt}, process peak RSS "
                             f"{usage1.ru_maxrss / 1024:.0f} MB (one variant per process: "
                             "the peak of its warm-up and profiled steps)")
    return tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ddhpose.bench.profile_step")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--frames", type=int, default=243)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variant", default=DEFAULT_VARIANT, choices=TRAIN_VARIANTS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    step = TrainStep(StepCase(args.width, args.depth, args.frames, args.batch))
    tables = profile_step(step, args.variant, args.rows)
    for name in ("forward", "backward", "optimizer"):
        print(f"== {name} ({args.variant}, C={args.width} L={args.depth} F={args.frames} "
              f"B={args.batch}) ==\n{tables[name]}")
    print(tables["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
