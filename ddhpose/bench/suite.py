"""Speed benchmark: denoiser forward, DDIM sampling, training step, data loader, matmul peak.

Every throughput is put next to this machine's matmul peak measured in the same run (a large
square matmul, float32 and bfloat16), because the wall-clock seconds of a shared 2-core machine
move with its load; and next to the authors' implementation measured on the same kind of machine
(:data:`REFERENCE`), compared both raw and peak-normalised
(``normalised_speedup = ref_seconds·ref_peak / (seconds·peak)``, float32 peaks).

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device
(exact shapes, no arithmetic; attention is counted as its two matmuls). A sampling call costs
K denoiser passes over 2·B·H clips (flip pass batched); the element-wise DDIM update is not
counted. Cases too slow for the budget are *extrapolated*: the time of a measured case with the
same model and batch is scaled by (H·K)/(H'·K') (the cost is linear in H·K); the output says so.

Entry points: :func:`run_benchmark` (returns the JSON-able dict), :func:`render_markdown`,
:func:`write_reports`. ``ddhpose bench`` wraps them (:mod:`ddhpose.commands.bench`).
"""

from __future__ import annotations

import datetime as _dt
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.bench.accuracy import bf16_accuracy, demo_test_accuracy
from ddhpose.bench.measure import (
    REFERENCE,
    RssSampler,
    bench_loader,
    count_flops,
    device_sync,
    machine_info,
    matmul_peak,
    peak_memory,
    square_gemms,
    time_call,
)
from ddhpose.bench.plan import PAPER_243, BenchPlan, ModelSpec, SampleCase
from ddhpose.bench.report import annotate, render_markdown
from ddhpose.bench.train_step import DEFAULT_VARIANT, StepCase, TrainStep
from ddhpose.errors import DDHPoseError
from ddhpose.io import atomic_open, write_json
from ddhpose.model.ddhpose import DDHPose
from ddhpose.model.losses import pose_losses
from ddhpose.model.precision import set_tf32

SCHEMA = "ddhpose-bench/1"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# --- measurement primitives ---------------------------------------------------------------------


def _inputs(spec: ModelSpec, batch: int, hyp: int, device: torch.device,
            seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    f = spec.frames
    return tuple(torch.randn(s, generator=g).to(device) for s in
                 ((batch, f, 17, 2), (batch, hyp, f, 17, 3), (batch, hyp, f, 17, 1),
                  (batch, f, 17, 3)))


def denoiser_flops(spec: ModelSpec, clips: int) -> int:
    """FLOPs of one denoiser pass over ``clips`` clips (meta device, eval layout)."""
    with torch.device("meta"):
        model = DDHPose(spec.config()).eval()
        x2d, d, ln, _ = (torch.empty(s) for s in ((clips, spec.frames, 17, 2),
                         (clips, 1, spec.frames, 17, 3), (clips, 1, spec.frames, 17, 1),
                         (1,)))
        t = torch.full((clips,), 999, dtype=torch.long)
        return count_flops(lambda: model.dir_bone_estimator(x2d, d, ln, t))


def training_flops(spec: ModelSpec, batch: int) -> int:
    """FLOPs of forward + loss + backward of one training batch (meta device)."""
    with torch.device("meta"):
        model = DDHPose(spec.config()).train()
        x2d = torch.empty(batch, spec.frames, 17, 2)
        x3d = torch.empty(batch, spec.frames, 17, 3)

        def step() -> None:
            loss = pose_losses(model(x2d, x3d), x3d, model.skeleton)["total"]
            loss.backward()

        return count_flops(step)


# --- the benchmark --------------------------------------------------------------------------------


class _Runner:
    """Holds the models, FLOP counts and timings of one :func:`run_benchmark` call."""

    def __init__(self, plan: BenchPlan, device: torch.device, log: Callable[[str], None]) -> None:
        self.plan, self.device, self.log = plan, device, log
        self.specs = {m.name: m for m in plan.models}
        self._models: dict[str, DDHPose] = {}
        self._flops: dict[tuple[str, int], int] = {}
        self._sample_times: dict[tuple, dict[str, Any]] = {}
        self.dtypes = list(dict.fromkeys(["float32", *plan.dtypes]))
        self.probes: dict[str, dict[str, list[float]]] = {dt: {} for dt in self.dtypes}
        self.sync = device_sync(device)
        self._gemms = {dt: square_gemms(DTYPES[dt], plan.peak_size, device)
                       for dt in self.dtypes}

    def probe_peak(self) -> None:
        """One square product per dtype and kernel (GFLOP/s) before each case: the peak is the
        best seen."""
        n = self.plan.peak_size
        for dt, kernels in self._gemms.items():
            for name, fn in kernels.items():
                self.sync()
                t0 = time.perf_counter()
                fn()
                self.sync()
                self.probes[dt].setdefault(name, []).append(
                    2.0 * n**3 / (time.perf_counter() - t0) / 1e9)

    def model(self, name: str) -> DDHPose:
        if name not in self._models:
            torch.manual_seed(0)
            self._models[name] = DDHPose(self.specs[name].config()).to(self.device).eval()
        return self._models[name]

    def flops(self, name: str, clips: int) -> int:
        """Denoiser FLOPs per pass over ``clips`` clips (linear in clips: count 1, scale)."""
        if (name, 1) not in self._flops:
            self._flops[(name, 1)] = denoiser_flops(self.specs[name], 1)
        return self._flops[(name, 1)] * clips

    def _timed(self, fn: Callable[[], Any], est_s: float,
               warm_heavy: bool = False) -> tuple[list[float], dict, str]:
        """Cheap calls: median of up to 3 after a warm-up call. Heavy ones: 1 call, after a
        warm-up call of the same case when ``warm_heavy`` (the authors' protocol), else warmed
        by the denoiser measurement of the same model and dtype."""
        self.probe_peak()
        cheap = est_s * 3 < self.plan.budget_s
        with peak_memory(self.device) as mem:
            times = time_call(fn, self.plan.budget_s, warmup=1 if cheap or warm_heavy else 0,
                              max_repeats=3 if cheap else 1, sync=self.sync)
        how = (f"median of {len(times)} after 1 warm-up call" if cheap else
               "1 call after 1 warm-up call" if warm_heavy else
               "1 call (warmed up by the denoiser measurement of the same model and dtype)")
        return times, mem, how

    def denoiser(self, name: str, dtype: str) -> dict[str, Any]:
        spec, clips = self.specs[name], self.plan.denoiser_clips[name]
        model = self.model(name)
        x2d, d, ln, _ = _inputs(spec, clips, 1, self.device)
        t = torch.full((clips,), 999, dtype=torch.long, device=self.device)
        kw = {"dtype": DTYPES[dtype]}  # float32: the parameters' own dtype, the default path

        def fn() -> Any:
            with torch.inference_mode():
                return model.denoise(x2d, d, ln, t, **kw)

        fn()  # warm-up (also builds the low-precision copy)
        flops = self.flops(name, clips)
        times, mem, _ = self._timed(fn, flops / 50e9)
        sec = float(np.median(times))
        return {"model": name, "dtype": dtype, "clips": clips, "frames": spec.frames,
                "seconds": sec, "times": times, "frames_per_s": clips * spec.frames / sec,
                "gflop": flops / 1e9, **mem}

    def sample_seconds(self, case: SampleCase, dtype: str) -> dict[str, Any]:
        key = (case.model, case.batch, case.hypotheses, case.steps, dtype)
        if key in self._sample_times:
            return self._sample_times[key]
        spec, model = self.specs[case.model], self.model(case.model)
        x2d = _inputs(spec, case.batch, 1, self.device)[0]
        kw = {"dtype": DTYPES[dtype]}  # float32: the parameters' own dtype, the default path

        def fn() -> Any:
            torch.manual_seed(0)
            return model.sample(x2d, case.hypotheses, case.steps, **kw)

        est = self.flops(case.model, 2 * case.batch * case.hypotheses) * case.steps / 50e9
        times, mem, how = self._timed(fn, est, warm_heavy=True)
        out = {"seconds": float(np.median(times)), "times": times, "how": how, **mem}
        self._sample_times[key] = out
        return out

    def sampling(self, case: SampleCase, dtype: str) -> dict[str, Any]:
        spec = self.specs[case.model]
        rec: dict[str, Any] = {"model": case.model, "dtype": dtype, "batch": case.batch,
                               "frames": spec.frames, "hypotheses": case.hypotheses,
                               "steps": case.steps}
        if case.from_hk is None:
            m = self.sample_seconds(case, dtype)
            rec.update(m, method="timed")
        else:
            h, k = case.from_hk
            src = SampleCase(case.model, case.batch, h, k)
            m = self.sample_seconds(src, dtype)
            factor = case.hypotheses * case.steps / (h * k)
            rec.update(m, seconds=m["seconds"] * factor, method="extrapolated",
                       how=f"timed H={h},K={k} ({m['how']}) x {factor:g}")
            rec.pop("times")
        passes = 2 * case.batch * case.hypotheses
        rec["gflop"] = self.flops(case.model, passes) * case.steps / 1e9
        rec["frames_per_s"] = case.batch * spec.frames / rec["seconds"]
        rec["denoised_frames_per_s"] = passes * case.steps * spec.frames / rec["seconds"]
        return rec

    def training(self, name: str) -> list[dict[str, Any]]:
        """One training step (batch 4 × F, drop-path 0.1, losses, loss-scaled backward, AdamW)
        in the original code's structure and in ours (float32, and bfloat16 autocast when
        measured), timed interleaved in this process: one warm-up step each, then
        ``plan.train_repeats`` rounds of one step per variant."""
        spec = self.specs[name]
        step = TrainStep(StepCase(spec.width, spec.depth, spec.frames, batch=4, drop_path=0.1),
                         self.device)
        variants = [("original", "float32"), (DEFAULT_VARIANT, "float32")]
        if "bfloat16" in self.plan.dtypes:
            variants.append(("bf16_autocast", "bfloat16"))
        flops = training_flops(spec, 4)
        times: dict[str, list[float]] = {v: [] for v, _ in variants}
        rss: dict[str, dict[str, float]] = {v: {"peak_rss_mb": 0.0, "step_rss_mb": 0.0}
                                            for v, _ in variants}
        for v, _ in variants:
            with step.variant(v):
                step()  # warm-up (allocator, kernels, optimizer state)
        for _ in range(self.plan.train_repeats):
            self.probe_peak()
            for v, _ in variants:
                with step.variant(v), RssSampler() as sampler:
                    before = sampler.peak
                    self.sync()
                    t0 = time.perf_counter()
                    step()
                    self.sync()
                    times[v].append(time.perf_counter() - t0)
                mb = rss[v]
                mb["peak_rss_mb"] = max(mb["peak_rss_mb"], sampler.peak / 2**20)
                mb["step_rss_mb"] = max(mb["step_rss_mb"], (sampler.peak - before) / 2**20)
        ref = REFERENCE["training"]
        base = times["original"]
        out = []
        for v, dt in variants:
            ts = times[v]
            sec = float(np.median(ts))
            rec = {"model": name, "dtype": dt, "variant": v, "batch": 4,
                   "frames": spec.frames, "seconds": sec, "best_seconds": min(ts),
                   "times": ts, "spread": (max(ts) - min(ts)) / sec,
                   "vs_original_best": min(base) / min(ts),
                   "vs_original_median": float(np.median(base)) / sec,
                   "how": f"median of {len(ts)}, interleaved with the other variants, after 1 "
                          "warm-up step each",
                   "gflop": flops / 1e9, "frames_per_s": 4 * spec.frames / sec, **rss[v]}
            if (spec.width, spec.depth, spec.frames) == (512, 8, ref["frames"]):
                rec["reference_seconds"] = ref["seconds"]
            out.append(rec)
        return out


def bench_device(spec: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a device; a one-line :class:`DDHPoseError` naming
    ``--device`` for anything else or for CUDA asked for on a machine without it (checked before
    any measurement)."""
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise DDHPoseError(f"--device {spec!r}: not a device (cpu, cuda or cuda:N)") from exc
    if dev.type not in ("cpu", "cuda"):
        raise DDHPoseError(f"--device {spec!r}: only cpu, cuda or cuda:N are measured")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DDHPoseError(f"--device {spec!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DDHPoseError(f"--device {spec!r}: only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible")
    return dev


def run_benchmark(plan: BenchPlan, threads: int = 2, device: str = "cpu",
                  log: Callable[[str], None] = print, tf32: bool = True) -> dict[str, Any]:
    """Measure everything in ``plan``; returns the bench.json content. On CUDA float32 matmuls
    use TF32 unless ``tf32`` is False (the pipeline's default, ``train.tf32``/``sample.tf32``)."""
    dev = bench_device(device)
    if dev.type == "cuda":
        set_tf32(tf32)
    torch.set_num_threads(threads)
    run = _Runner(plan, dev, log)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "mode": plan.mode, "device": dev.type, "machine": machine_info(threads, dev),
        "reference": REFERENCE,
        "plan": {"models": [asdict(m) for m in plan.models], "dtypes": plan.dtypes,
                 "budget_s": plan.budget_s},
        "peak": {}, "denoiser": [], "sampling": [], "training": [],
    }
    dtypes = run.dtypes
    first = {dt: matmul_peak(DTYPES[dt], plan.peak_size, device=dev) for dt in dtypes}
    log("matmul peak GFLOP/s: " + ", ".join(f"{k} {v['gflops_best']:.0f}"
                                             for k, v in first.items()))
    for spec in plan.models:
        for dt in plan.dtypes:
            rec = run.denoiser(spec.name, dt)
            log(f"denoiser {spec.name} {dt}: {rec['seconds']:.3f} s, "
                f"{rec['frames_per_s']:.0f} frames/s")
            result["denoiser"].append(rec)
    for case in plan.sampling:
        for dt in plan.dtypes:
            rec = run.sampling(case, dt)
            log(f"sample {case.model} B={case.batch} H={case.hypotheses} K={case.steps} {dt}: "
                f"{rec['seconds']:.2f} s ({rec['method']})")
            result["sampling"].append(rec)
    for name in plan.training:
        for rec in run.training(name):
            log(f"train step {name} 4x{rec['frames']} {rec['variant']}: {rec['seconds']:.2f} s "
                f"(x{rec['vs_original_median']:.2f} the original-style step)")
            result["training"].append(rec)
    loader = bench_loader(plan.loader_frames)
    consumed = max((t["frames_per_s"] for t in result["training"]), default=0.0)
    loader["training_frames_per_s"] = consumed
    loader["vs_training"] = loader["frames_per_s"] / consumed if consumed else None
    result["data_loader"] = loader
    log(f"data loader: {loader['frames_per_s']:.0f} frames/s")
    if plan.accuracy and "bfloat16" in plan.dtypes:
        big = "paper_f27" if "paper_f27" in run.specs else plan.models[0].name
        result["bf16_accuracy"] = bf16_accuracy(run.model(big), dev)
        if plan.demo_checkpoint:
            demo = demo_test_accuracy(plan.demo_checkpoint, plan.demo_test_split)
            if demo:
                result["bf16_accuracy"]["demo_test"] = demo
                log(f"bf16 on {plan.demo_test_split}: J-Agg P1 change "
                    f"{demo['change_mm'].get('p1_j_agg', float('nan')):+.3f} mm")
            else:
                log(f"bf16 demo-test check skipped: {plan.demo_checkpoint} or "
                    f"{plan.demo_test_split} missing (run `dvc repro` first)")
    last = {dt: matmul_peak(DTYPES[dt], plan.peak_size, device=dev) for dt in dtypes}
    for dt in dtypes:
        by_kernel = {}
        for name in first[dt]["kernels"]:
            probes = run.probes[dt].get(name, [])
            by_kernel[name] = {
                "gflops": max([first[dt]["kernels"][name]["gflops_best"],
                               last[dt]["kernels"][name]["gflops_best"], *probes]),
                "probes_gflops": probes,
                "probes_median": float(np.median(probes)) if probes else None}
        kernel = max(by_kernel, key=lambda k: by_kernel[k]["gflops"])
        result["peak"][dt] = {"gflops": by_kernel[kernel]["gflops"], "kernel": kernel,
                              "by_kernel": by_kernel, "start": first[dt], "end": last[dt]}
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["machine"]["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["gflop_per_clip_pass_f243"] = denoiser_flops(PAPER_243, 1) / 1e9
    result["notes"] = [
        "extrapolated rows: the time of the named measured case scaled by H·K/(H'·K') (the "
        "cost is linear in H·K; larger batches run slightly more efficiently, so this leans "
        "pessimistic)",
        "heavy sampling cases are timed once after one warm-up call of the same case (the "
        "authors' protocol); heavy denoiser and training cases once after the denoiser "
        "measurement of the same model warmed it up; cheap ones are the median of up to 3 calls "
        "after a warm-up call",
        "peak RSS: whole process (all models built so far stay resident), polled every 10 ms; "
        "training rows also give `step RSS`: the growth of RSS during one step over the RSS "
        "before it (activations, gradients, temporaries)",
        "training rows: `original` is the original code's structure written by us (see "
        "ddhpose/bench/train_step.py), timed interleaved with ours in the same process on the "
        "same weights; `norm. speedup` compares with the authors' code itself (31.1 s per "
        "float32 step of the paper-size model on a machine with a 130 GFLOP/s float32 peak)",
    ]
    result["wall_seconds"] = time.perf_counter() - started
    annotate(result)
    return result


def write_reports(result: dict[str, Any], out_dir: str | Path = "reports") -> tuple[Path, Path]:
    """Write ``bench.json`` and ``bench.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    write_json(out / "bench.json", result)
    with atomic_open(out / "bench.md", "w", encoding="utf-8") as fh:
        fh.write(render_markdown(result))
    return out / "bench.json", out / "bench.md"
