"""Parts of the benchmark (:mod:`ddhpose.bench.suite`): measurement primitives (timing, peak RSS,
FLOP counting, matmul peak), the reference numbers and data-loader speed. The per-record
annotations and the markdown report are in :mod:`ddhpose.bench.report`, the bfloat16 accuracy
checks in :mod:`ddhpose.bench.accuracy`."""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


class RssSampler:
    """Peak resident set size of this process while active (a 10 ms polling thread; psutil)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:  # pragma: no cover - psutil is a dependency
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def __enter__(self) -> RssSampler:
        self.peak = self._rss()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self._rss())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict filled on exit: ``peak_rss_mb`` (process), ``cuda_max_allocated_mb``."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with RssSampler() as s:
        yield out
    out["peak_rss_mb"] = s.peak / 2**20
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20


def device_sync(device: torch.device | str) -> Callable[[], None]:
    """What waits for ``device`` to finish its queued work: ``torch.cuda.synchronize`` on CUDA
    (kernels run asynchronously: a clock read right after a call measures only the launches),
    nothing on the CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def time_call(fn: Callable[[], Any], budget_s: float, warmup: int = 1,
              max_repeats: int = 3, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds of ``fn()`` after ``warmup`` calls; repeated (≤ max_repeats) within ``budget_s``.

    ``sync`` (:func:`device_sync`) runs before the clock starts and before it is read, so every
    time covers the device's work of the call.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < max_repeats:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if sum(times) * (len(times) + 1) / len(times) > budget_s:
            break
    return times


def _addmm_flops(self_shape: Any, a_shape: Any, b_shape: Any, out_shape: Any = None,
                 **_: Any) -> int:
    """addmm(_) FLOPs: 2·n·k·m for a (n, k) @ (k, m) product."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs (multiply-add = 2) of ``fn()`` counted by FlopCounterMode (plus the in-place
    ``addmm_`` of the fused residual GEMMs, which its registry lacks)."""
    extra = {torch.ops.aten.addmm_: _addmm_flops}
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        fn()
    return int(counter.get_total_flops())


def square_gemms(dtype: torch.dtype, n: int,
                 device: torch.device | str = "cpu") -> dict[str, Callable[[], Any]]:
    """The square n×n @ n×n products the peak is taken over, by kernel: ``torch.matmul`` (MKL
    on x86 builds; how the authors' peak was measured; cuBLAS on CUDA, with TF32 as currently
    set) and, on the CPU where this build has it, oneDNN's linear on a prepacked weight (the
    kernel the fused inference path runs, faster on some CPUs). Taking the best of both keeps
    ``%peak`` honest whichever kernel the model uses."""
    from ddhpose.model.fused import onednn_available

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    kernels: dict[str, Callable[[], Any]] = {"torch.matmul": lambda: a @ b}
    if torch.device(device).type == "cpu" and onednn_available():
        try:
            w = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), n)
            kernels["onednn_packed"] = lambda: torch.ops.mkldnn._linear_pointwise(
                a, w, None, "none", [], "")
        except (AttributeError, RuntimeError):
            pass
    return kernels


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5,
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """Best-of / median GFLOP/s of an n×n @ n×n product in ``dtype`` (2n³ FLOPs) on ``device``,
    per kernel of :func:`square_gemms`; ``gflops_best`` is the best kernel's."""
    flops = 2.0 * n**3
    kernels: dict[str, dict[str, float]] = {}
    for name, fn in square_gemms(dtype, n, device).items():
        times = time_call(fn, budget_s=1e9, warmup=2, max_repeats=repeats,
                          sync=device_sync(device))
        kernels[name] = {"gflops_best": flops / min(times) / 1e9,
                         "gflops_median": flops / float(np.median(times)) / 1e9}
    best = max(kernels.values(), key=lambda k: k["gflops_best"])
    return {"gflops_best": best["gflops_best"], "gflops_median": best["gflops_median"], "n": n,
            "kernels": kernels}


# The authors' implementation on this kind of machine (2 cores, torch 2.13 CPU, 2 threads),
# paper-size model, sampling with its flip pass, one timed call after a warm-up.
REFERENCE: dict[str, Any] = {
    "peak_gflops": {"float32": 130.0, "bfloat16": 364.0},
    "gflop_per_clip_pass_f243": 317.0,
    # one float32 training step (forward in train mode, the three losses, backward, AdamW),
    # best of two after a warm-up
    "training": {"batch": 4, "frames": 243, "seconds": 31.1},
    "sampling": [
        {"batch": 4, "frames": 243, "hypotheses": 1, "steps": 1, "seconds": 39.2, "gflops": 65.0},
        {"batch": 2, "frames": 243, "hypotheses": 1, "steps": 1, "seconds": 15.0, "gflops": None},
        {"batch": 1, "frames": 27, "hypotheses": 20, "steps": 1, "seconds": 17.4, "gflops": 75.0},
        {"batch": 2, "frames": 27, "hypotheses": 8, "steps": 1, "seconds": 10.8, "gflops": 97.0},
    ],
}


def bench_loader(total_frames: int, frames: int = 243, batch: int = 4,
                 min_seconds: float = 1.0) -> dict[str, Any]:
    """Training data-loader throughput: ``TrainClips`` batches (gather + flip augmentation) over
    ``data/processed/train.npz`` when present, else a synthetic split of ``total_frames``."""
    from ddhpose.data.clips import TrainClips

    source = Path("data/processed/train.npz")
    if source.exists():
        from ddhpose.data.processed import load_split

        split, name = load_split(source), str(source)
    else:
        from ddhpose.synthetic.smoke import synthetic_split

        seqs = max(1, total_frames // 2000)
        split, name = synthetic_split(sequences=seqs, frames=2000), f"synthetic {seqs}x2000"
    clips = TrainClips(split, frames=frames)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:  # whole epochs until min_seconds have passed
        for x2d, _ in clips.loader(clips.plan(batch)):
            n += int(x2d.shape[0])
    sec = time.perf_counter() - t0
    return {"source": name, "frames": frames, "batch": batch, "clips": n, "seconds": sec,
            "frames_per_s": n * frames / sec}


def machine_info(threads: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "threads": threads, "processor": platform.processor()}
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info["cuda_device"] = props.name
        info["cuda_capability"] = f"{props.major}.{props.minor}"
        info["cuda_memory_gb"] = props.total_memory / 2**30
        from ddhpose.model.precision import tf32_enabled

        info["tf32_matmul"] = tf32_enabled()
    with suppress(OSError):
        info["load_avg"] = list(os.getloadavg())
    return info


def normalised_speedup(ref_seconds: float, seconds: float, peak_gflops: float,
                       ref_peak_gflops: float = REFERENCE["peak_gflops"]["float32"]) -> float:
    """Speedup over the authors' time on an equally fast machine:
    (ref s × ref peak) ÷ (s × our peak)."""
    return ref_seconds * ref_peak_gflops / (seconds * peak_gflops)
