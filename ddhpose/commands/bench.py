"""``ddhpose bench [--quick] [--training-only] [--out reports] [--mlflow]``: speed of the
denoiser, sampling, training step and data loader against this machine's matmul peak
(see :mod:`ddhpose.bench.suite`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a ~2-minute subset (default: the full case list)")
    parser.add_argument("--training-only", action="store_true",
                        help="only the denoiser-forward, training-step and data-loader rows (no "
                             "sampling grid, no accuracy check): the plan's training cases")
    parser.add_argument("--out", default="reports",
                        help="directory for bench.json and bench.md (default: reports)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N (default cpu); on CUDA every timed call is "
                             "synchronised and the peak is the device's matmul peak")
    parser.add_argument("--no-tf32", dest="tf32", action="store_false",
                        help="CUDA: IEEE float32 matmuls instead of TF32 tensor cores")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated dtypes to measure (default float32,bfloat16)")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="skip the bfloat16 accuracy check")
    parser.add_argument("--checkpoint", default=None,
                        help="trained model for the bfloat16 MPJPE check on --test-split "
                             "(default: models/best.pt in full mode, none in --quick)")
    parser.add_argument("--test-split", default="data/processed/test.npz",
                        help="processed Human3.6M-layout test split for that check")
    parser.add_argument("--mlflow", action="store_true",
                        help="log bench.json into the MLflow experiment 'ddhpose-bench'")


def build_plan(args: argparse.Namespace) -> Any:
    """The :class:`~ddhpose.bench.plan.BenchPlan` the arguments ask for (checked, not run)."""
    from ddhpose.bench.plan import full_plan, quick_plan
    from ddhpose.bench.suite import DTYPES
    from ddhpose.errors import DDHPoseError

    plan = quick_plan() if args.quick else full_plan()
    plan.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in plan.dtypes if d not in DTYPES]
    if unknown:
        raise DDHPoseError(f"--dtypes: unknown {', '.join(unknown)} (known: {', '.join(DTYPES)})")
    plan.accuracy = not args.no_accuracy
    if args.training_only:
        plan.sampling, plan.accuracy, plan.mode = [], False, "training-only"
    if args.checkpoint:
        plan.demo_checkpoint = args.checkpoint
    plan.demo_test_split = args.test_split
    return plan


def run(args: argparse.Namespace) -> int:
    from ddhpose.bench.suite import bench_device, run_benchmark, write_reports

    bench_device(args.device)  # refuse before any measurement
    plan = build_plan(args)
    result = run_benchmark(plan, threads=args.threads, device=args.device, tf32=args.tf32,
                           log=lambda msg: print(msg, flush=True))
    json_path, md_path = write_reports(result, args.out)
    print(f"wrote {json_path} and {md_path}")
    if args.mlflow:
        run_id = log_bench_to_mlflow(json_path)
        print(f"logged to MLflow run {run_id}")
    return 0


def _flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """bench.json -> flat MLflow metrics (seconds, frames/s, GFLOP/s, peak fractions)."""
    out: dict[str, float] = {f"peak_gflops.{k}": v["gflops"] for k, v in result["peak"].items()}
    for d in result["denoiser"]:
        key = f"denoiser.{d['model']}.{d['dtype']}"
        out[f"{key}.frames_per_s"] = d["frames_per_s"]
        out[f"{key}.peak_fraction"] = d.get("peak_fraction", 0.0)
    for s in result["sampling"]:
        key = (f"sample.{s['model']}.B{s['batch']}H{s['hypotheses']}K{s['steps']}."
               f"{s['dtype']}")
        for name in ("seconds", "frames_per_s", "gflops", "peak_fraction", "speedup_normalised",
                     "speedup_normalised_matmul"):
            if s.get(name) is not None:
                out[f"{key}.{name}"] = float(s[name])
    for t in result["training"]:
        key = f"train.{t['model']}.{t.get('variant', t['dtype'])}"
        for name in ("seconds", "best_seconds", "spread", "vs_original_median", "peak_fraction",
                     "speedup_normalised", "peak_rss_mb", "step_rss_mb"):
            if t.get(name) is not None:
                out[f"{key}.{name}"] = float(t[name])
    if result.get("data_loader"):
        out["data_loader.frames_per_s"] = result["data_loader"]["frames_per_s"]
    for k, v in result["peak"].items():
        for kernel, rec in v.get("by_kernel", {}).items():
            out[f"peak_gflops.{k}.{kernel}"] = rec["gflops"]
    demo = (result.get("bf16_accuracy") or {}).get("demo_test")
    if demo:
        for k, v in demo["change_mm"].items():
            out[f"bf16_demo_test.change_mm.{k}"] = v
        for agg, d in demo["joint_deviation_mm"].items():
            out[f"bf16_demo_test.joint_deviation_mm.{agg}.mean"] = d["mean"]
    return out


def log_bench_to_mlflow(bench_json_path: str | Path) -> str:
    """Log a bench.json (metrics, machine params, the file and its .md) as one run of the
    experiment ``ddhpose-bench`` (:func:`ddhpose.tracking.standalone.log_standalone_run`; tracking
    URI ``MLFLOW_TRACKING_URI`` or the project's ``mlflow.db``). Returns the run id."""
    from ddhpose.tracking.standalone import log_standalone_run

    path = Path(bench_json_path)
    result = json.loads(path.read_text(encoding="utf-8"))
    m = result.get("machine", {})
    params = {"mode": result.get("mode"), "torch": m.get("torch"), "threads": m.get("threads"),
              "cpu_count": m.get("cpu_count"), "platform": m.get("platform")}
    return log_standalone_run("ddhpose-bench", f"bench-{result.get('mode', 'custom')}",
                              root=Path(__file__).resolve().parents[2], params=params,
                              metrics=_flat_metrics(result),
                              artifacts=[path, path.with_suffix(".md")])
