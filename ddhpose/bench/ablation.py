"""What each speed change buys: the sampling cases of the authors' measurements, timed with the
optimisations switched on one at a time (cumulative), in one process and one run.

Variants, in order (each adds one change to the previous):

1. ``baseline``: one denoiser call per hypothesis and per flip pass (as the authors' loop),
   attention with explicit score matrices, plain ``nn.Linear`` modules, no chunking;
2. ``batched``: the flip pass and all hypotheses in ONE denoiser call;
3. ``sdpa``: ``scaled_dot_product_attention`` wherever the scores are not edited (HRTT uses
   q·(k + k_c)ᵀ);
4. ``chunks``: CPU calls split into cache-sized chunks of clips (:attr:`DDHPose.chunk_elements`);
5. ``fused_addmm``: residual adds folded into in-place ``addmm_`` (no oneDNN);
6. ``onednn``: oneDNN linear with prepacked weights, GELU and residual in the GEMM epilogue
   (the default);
7. ``bfloat16``: the default path in bfloat16 (``sample(dtype=torch.bfloat16)``).

All float32 variants give the same outputs up to float32 round-off (the parity tests cover the
default and the plain path).

Training: one training step (batch 4, drop-path 0.1, losses, backward, AdamW) in the variants of
:data:`ddhpose.bench.train_step.TRAIN_VARIANTS`, from the original code's structure to ours,
cumulative, float32 and bfloat16 autocast; timed interleaved (one step per variant per round,
after one warm-up step each) on one model, so the load of a shared machine hits all variants
alike. Entry point:
``python -m ddhpose.bench.ablation [--out reports] [--threads 2] [--train-repeats 2]
[--skip-sampling] [--skip-training]`` (writes ``reports/bench_ablation.{json,md}``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ddhpose.bench.measure import REFERENCE, machine_info, matmul_peak, normalised_speedup
from ddhpose.bench.plan import ModelSpec, bench_model
from ddhpose.bench.suite import denoiser_flops, training_flops
from ddhpose.bench.train_step import TRAIN_VARIANTS, StepCase, TrainStep
from ddhpose.io import atomic_open, write_json
from ddhpose.model import fused as fused_mod
from ddhpose.model.ddhpose import DDHPose

VARIANTS = ("baseline", "batched", "sdpa", "chunks", "fused_addmm", "onednn", "bfloat16")
CASES = ((4, 243, 1), (1, 27, 20), (2, 27, 8))  # (B, F, H), K = 1: the authors' measurements
#: training-step sizes (width, depth, frames), batch 4: the paper's and the demo's
TRAIN_CASES = ((512, 8, 243), (64, 3, 27))


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``obj.name`` for the block; restore it after (removing an instance attribute that
    only shadowed a class attribute or method)."""
    own = name in vars(obj)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def _per_call(denoise: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``denoise`` run once per clip of the (x, x_flip) batch and per hypothesis."""

    def each(x: torch.Tensor, d: torch.Tensor, ln: torch.Tensor, t: torch.Tensor,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.cat([
            torch.cat([denoise(x[i:i + 1], d[i:i + 1, h:h + 1], ln[i:i + 1, h:h + 1],
                               t[i:i + 1], dtype=dtype) for h in range(d.shape[1])], dim=1)
            for i in range(x.shape[0])])

    return each


@contextlib.contextmanager
def variant(model: DDHPose, name: str) -> Iterator[dict[str, Any]]:
    """Switch ``model`` (and the fused-kernel module) to ``name``'s configuration; yields the
    ``model.sample`` options (``dtype``)."""
    level = VARIANTS.index(name)
    with contextlib.ExitStack() as stack:
        if level < VARIANTS.index("batched"):
            stack.enter_context(_patched(model, "denoise", _per_call(model.denoise)))
        attn = [m for m in model.modules() if hasattr(m, "fused")]
        for m in attn:
            stack.enter_context(_patched(m, "fused", level >= VARIANTS.index("sdpa")))
        if level < VARIANTS.index("chunks"):
            stack.enter_context(_patched(model, "chunk_elements", 1 << 62))
        if level < VARIANTS.index("fused_addmm"):
            stack.enter_context(_patched(fused_mod, "FUSE_MIN_WIDTH", 1 << 30))
        if level < VARIANTS.index("onednn"):
            stack.enter_context(_patched(fused_mod, "onednn_available", lambda: False))
        yield {"dtype": torch.bfloat16 if name == "bfloat16" else None}


def _sample(model: DDHPose, x2d: torch.Tensor, hypotheses: int,
            dtype: torch.dtype | None) -> torch.Tensor:
    """One K = 1 sampling call in the current variant."""
    return model.sample(x2d, hypotheses=hypotheses, steps=1, dtype=dtype)


def run_ablation(cases: tuple[tuple[int, int, int], ...] = CASES,
                 variants: tuple[str, ...] = VARIANTS, threads: int = 2,
                 log: Callable[[str], None] = print, width: int = 512,
                 depth: int = 8) -> dict[str, Any]:
    """Time every case under every variant (one call each after one warm-up call per case);
    ``width``/``depth``: the model size (the paper's by default)."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    peak = {dt: matmul_peak(d) for dt, d in (("float32", torch.float32),
                                              ("bfloat16", torch.bfloat16))}
    rows: list[dict[str, Any]] = []
    for b, f, h in cases:
        torch.manual_seed(0)
        model = DDHPose(bench_model(width, depth, f)).eval()
        gflop = denoiser_flops(ModelSpec("ablation", width, depth, f), 2 * b * h) / 1e9
        x2d = torch.randn(b, f, 17, 2, generator=torch.Generator().manual_seed(0))
        ref = next((r for r in REFERENCE["sampling"]
                    if (r["batch"], r["frames"], r["hypotheses"]) == (b, f, h)), None)
        if (width, depth) != (512, 8):
            ref = None  # the authors' times are for the paper-size model
        with variant(model, "onednn") as opts:
            _sample(model, x2d, h, **opts)  # warm-up (allocator, oneDNN kernels)
        previous = None
        for name in variants:
            with variant(model, name) as opts:
                if name == "bfloat16":
                    _sample(model, x2d, h, **opts)  # builds the bf16 copy and packs it
                t0 = time.perf_counter()
                _sample(model, x2d, h, **opts)
                seconds = time.perf_counter() - t0
            row = {"batch": b, "frames": f, "hypotheses": h, "variant": name,
                   "seconds": seconds, "gflop": gflop, "gflops": gflop / seconds,
                   "step_speedup": (previous / seconds) if previous else None,
                   "reference_seconds": ref["seconds"] if ref else None}
            previous = seconds
            rows.append(row)
            log(f"B={b} F={f} H={h} {name}: {seconds:.2f} s ({row['gflops']:.0f} GFLOP/s)")
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "machine": {**machine_info(threads), "load_avg_end": list(os.getloadavg())},
            "model": {"width": width, "depth": depth},
            "peak": peak, "reference_peak_gflops": REFERENCE["peak_gflops"], "rows": rows,
            "wall_seconds": time.perf_counter() - started}


def run_train_ablation(cases: tuple[tuple[int, int, int], ...] = TRAIN_CASES,
                       variants: tuple[str, ...] = TRAIN_VARIANTS, repeats: int = 2,
                       log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Training-step rows: every case under every variant, interleaved (see module docstring).
    Reports the median and best step and the speedup over the previous variant and over the
    first (median ratios)."""
    rows: list[dict[str, Any]] = []
    for width, depth, frames in cases:
        step = TrainStep(StepCase(width=width, depth=depth, frames=frames))
        gflop = training_flops(ModelSpec("ablation", width, depth, frames), 4) / 1e9
        times: dict[str, list[float]] = {v: [] for v in variants}
        for name in variants:
            with step.variant(name):
                step()  # warm-up
        for _ in range(repeats):
            for name in variants:
                with step.variant(name):
                    t0 = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - t0)
        first = previous = None
        for name in variants:
            sec = float(sorted(times[name])[len(times[name]) // 2])
            row = {"width": width, "depth": depth, "frames": frames, "batch": 4,
                   "variant": name, "dtype": "bfloat16" if "bf16" in name else "float32",
                   "seconds": sec, "best_seconds": min(times[name]), "times": times[name],
                   "gflop": gflop, "gflops": gflop / sec,
                   "step_speedup": previous / sec if previous else None,
                   "vs_first": first / sec if first else None}
            first, previous = first or sec, sec
            rows.append(row)
            log(f"train C={width} L={depth} F={frames} {name}: {sec:.2f} s")
    return rows


def render_ablation(r: dict[str, Any]) -> str:
    """Markdown table of :func:`run_ablation`'s result."""
    pk = {dt: v["gflops_best"] for dt, v in r["peak"].items()}
    lines = ["# What each speed change buys (cumulative)", "",
             f"{r['created']} · torch {r['machine']['torch']} · {r['machine']['threads']} "
             f"threads · load average at start {r['machine'].get('load_avg', [0])[0]:.2f}, at "
             f"end {r['machine']['load_avg_end'][0]:.2f} · wall {r['wall_seconds']:.0f} s", "",
             f"Model width {r['model']['width']}, depth {r['model']['depth']} (the paper's: 512, "
             "8), sampling K = 1 with the flip pass, one timed "
             "call per variant after one warm-up call per case. Same-run peak (best square "
             "kernel): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in pk.items()) + ". "
             "`×prev` = speedup over the previous row; `norm. vs authors` = (authors' s × 130) ÷ "
             "(s × our float32 peak). Variants are defined in `ddhpose/bench/ablation.py`.", "",
             "| case | variant | s | GFLOP/s | % f32 peak | ×prev | norm. vs authors |",
             "|---|---|---|---|---|---|---|"]
    ref_peak = r["reference_peak_gflops"]["float32"]
    for row in r["rows"]:
        norm = (normalised_speedup(row["reference_seconds"], row["seconds"], pk["float32"],
                                   ref_peak) if row["reference_seconds"] else None)
        lines.append(
            f"| B={row['batch']},F={row['frames']},H={row['hypotheses']} | {row['variant']} | "
            f"{row['seconds']:.2f} | {row['gflops']:.0f} | "
            f"{100 * row['gflops'] / pk['float32']:.0f} | "
            + (f"{row['step_speedup']:.2f}" if row["step_speedup"] else "–") + " | "
            + (f"{norm:.2f}" if norm else "–") + " |")
    if r.get("training"):
        lines += ["", "## Training step (batch 4, drop-path 0.1, losses, backward, AdamW)", "",
                  "Variants are cumulative, from the original code's structure to ours (defined "
                  "in `ddhpose/bench/train_step.py`), timed interleaved after one warm-up step "
                  "each; `s` = median, `best` = fastest step, `×prev` / `×orig.` = median "
                  "speedup over the previous row / the first row.", "",
                  "| model (C, L, F) | variant | dtype | s | best | GFLOP/s | % f32 peak | ×prev "
                  "| ×orig. |", "|---|---|---|---|---|---|---|---|---|"]
        for row in r["training"]:
            lines.append(
                f"| {row['width']}, {row['depth']}, {row['frames']} | {row['variant']} | "
                f"{row['dtype']} | {row['seconds']:.2f} | {row['best_seconds']:.2f} | "
                f"{row['gflops']:.0f} | {100 * row['gflops'] / pk['float32']:.0f} | "
                + (f"{row['step_speedup']:.2f}" if row["step_speedup"] else "–") + " | "
                + (f"{row['vs_first']:.2f}" if row["vs_first"] else "–") + " |")
    return "\n".join(lines) + "\n"


def write_ablation(result: dict[str, Any], out_dir: str | Path = "reports") -> Path:
    out = Path(out_dir)
    write_json(out / "bench_ablation.json", result)
    with atomic_open(out / "bench_ablation.md", "w", encoding="utf-8") as fh:
        fh.write(render_ablation(result))
    return out / "bench_ablation.md"


__all__ = ["CASES", "TRAIN_CASES", "VARIANTS", "render_ablation", "run_ablation",
           "run_train_ablation", "variant", "write_ablation"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddhpose.bench.ablation")
    parser.add_argument("--out", default="reports", help="output directory (default reports)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--train-repeats", type=int, default=2,
                        help="interleaved rounds of training steps (default 2)")
    parser.add_argument("--skip-sampling", action="store_true", help="no sampling rows")
    parser.add_argument("--skip-training", action="store_true", help="no training rows")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log = lambda m: print(m, flush=True)  # noqa: E731
    result = run_ablation(cases=() if args.skip_sampling else CASES, threads=args.threads,
                          log=log)
    if not args.skip_training:
        result["training"] = run_train_ablation(repeats=args.train_repeats, log=log)
        result["machine"]["load_avg_end"] = list(os.getloadavg())
        result["wall_seconds"] = time.perf_counter() - started
    print(f"wrote {write_ablation(result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
