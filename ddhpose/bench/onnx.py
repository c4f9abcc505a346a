"""onnxruntime against PyTorch on this CPU, in one run: one denoiser call and the whole sampler.

For each model (random weights: the cost does not depend on them):

- ``demo_f27`` (width 64, depth 3, F 27): B = 4 clips, H = 5 hypotheses, K = 2 DDIM steps (the
  demo's sampling setting); one denoiser call is the sampler's: 2·B clips (flip pass) × H;
- ``paper_f243`` (width 512, depth 8, F 243): B = 1 clip, H = 1, K = 1.

The model is exported (:func:`ddhpose.deploy.onnx_export.export_checked`, timed; for the demo
with both exporters), then each call is timed after one warm-up (:func:`time_call`, the median
of up to 3 repeats; the paper model once after a warm-up) with the same threads for both back
ends (onnxruntime's intra-op threads = ``torch.get_num_threads()``). The sampler runs with the
same seeded noise on both, and the max abs difference of the results (metres) is recorded
beside the times.

Entry point: ``python -m ddhpose.bench.onnx [--out reports] [--threads N]`` writes
``reports/bench_onnx.json`` and ``reports/bench_onnx.md`` (date, commit, torch and onnxruntime
versions, threads, load average). Other work on the machine slows both back ends; compare the
ratios of one run, not times across runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ddhpose.bench.measure import machine_info, time_call
from ddhpose.bench.plan import DEMO_27, PAPER_243, ModelSpec
from ddhpose.bench.report import write_report

#: (model, clips B, hypotheses H, steps K, demo-style case): the demo case times both exporters
#: (export + onnxruntime check) and a separate denoiser call; the paper case (one sampler step is
#: one denoiser call on 2 clips) times the export alone and the sampler once after a warm-up
CASES = ((DEMO_27, 4, 5, 2, True), (PAPER_243, 1, 1, 1, False))


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _median(times: list[float]) -> float:
    return round(statistics.median(times), 4)


def _once(fn: Any) -> tuple[float, Any]:
    """Seconds of a second call of ``fn`` (the first is the warm-up), and its result."""
    fn()
    start = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - start, 4), out


def measure(spec: ModelSpec, clips: int, hyp: int, steps: int, demo: bool,
            folder: Path) -> dict[str, Any]:
    """Export ``spec``'s model, time one denoiser call (demo case) and the sampler on both back
    ends."""
    from ddhpose.deploy.onnx_export import example_inputs, export_checked, export_denoiser
    from ddhpose.deploy.onnx_runtime import load_onnx
    from ddhpose.model.ddhpose import DDHPose

    torch.manual_seed(0)
    model = DDHPose(spec.config()).eval()
    row: dict[str, Any] = {"model": spec.name, "clips": clips, "hypotheses": hyp,
                           "steps": steps}
    graph = folder / f"{spec.name}.onnx"
    if demo:
        for exporter in ("torchscript", "dynamo"):
            start = time.perf_counter()
            diff = export_checked(model, folder / f"{spec.name}_{exporter}.onnx",
                                  exporter=exporter)
            row[f"export_and_check_s_{exporter}"] = round(time.perf_counter() - start, 2)
            row[f"denoise_max_abs_diff_{exporter}"] = diff
        graph = folder / f"{spec.name}_torchscript.onnx"
    else:
        start = time.perf_counter()
        export_denoiser(model, graph)
        row["export_s_torchscript"] = round(time.perf_counter() - start, 2)
    lifter = load_onnx(graph)
    c = model.config
    x2d = torch.randn((clips, c.frames, 17, 2), generator=torch.Generator().manual_seed(1)) * 0.3

    def sample(m: Any) -> torch.Tensor:
        return m.sample(x2d, hypotheses=hyp, steps=steps,
                        generator=torch.Generator().manual_seed(2))

    with torch.inference_mode():
        if demo:
            inputs = example_inputs(c.frames, 17, c.timesteps, 2 * clips, hyp)
            row["denoise_s_torch"] = _median(time_call(lambda: model.denoise(*inputs), 30.0))
            row["denoise_s_onnx"] = _median(time_call(lambda: lifter.denoise(*inputs), 30.0))
            row["sample_s_torch"] = _median(time_call(lambda: sample(model), 30.0))
            row["sample_s_onnx"] = _median(time_call(lambda: sample(lifter), 30.0))
            ref, got = sample(model), sample(lifter)
        else:  # K = 1: the sampler is one denoiser call on 2 clips (flip pass)
            row["sample_s_torch"], ref = _once(lambda: sample(model))
            row["sample_s_onnx"], got = _once(lambda: sample(lifter))
            row["denoise_s_torch"], row["denoise_s_onnx"] = None, None
        row["sample_max_abs_diff"] = float((ref - got).abs().max()) / model.unit_scale
    for part in ("denoise", "sample"):
        t, o = row[f"{part}_s_torch"], row[f"{part}_s_onnx"]
        row[f"{part}_torch_over_onnx"] = None if t is None else round(t / o, 3)
    return row


def run(threads: int) -> dict[str, Any]:
    import onnxruntime

    torch.set_num_threads(threads)
    load_before = None
    try:
        import os

        load_before = list(os.getloadavg())
    except OSError:
        pass
    with tempfile.TemporaryDirectory(prefix="ddhpose-bench-onnx-") as tmp:
        rows = [measure(*case, Path(tmp)) for case in CASES]
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _commit(), "onnxruntime": onnxruntime.__version__,
            "load_avg_before": load_before, "machine": machine_info(threads), "rows": rows}


def _cell(v: Any) -> str:
    return "–" if v is None else str(v)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# onnxruntime vs PyTorch on the CPU ({report['date']}, commit {report['commit']})",
             "",
             f"{m['processor'] or m['platform']}, {m['cpu_count']} CPUs, {m['threads']} "
             f"thread(s) for both back ends, torch {m['torch']}, onnxruntime "
             f"{report['onnxruntime']}; load average before {report['load_avg_before']}, at "
             f"the end {m.get('load_avg')}. Median seconds of up to 3 calls after a warm-up; "
             "torch/onnx > 1 means onnxruntime is faster. Other work on the machine slows both: "
             "compare the ratios of this run. paper_f243 at K = 1: the sampler is one denoiser "
             "call (2 clips with the flip pass), timed once after a warm-up.", "",
             "| model | B | H | K | denoiser call torch s | onnx s | torch/onnx | sampler torch s "
             "| onnx s | torch/onnx | sampler max abs diff (m) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['clips']} | {r['hypotheses']} | {r['steps']} | "
            f"{_cell(r['denoise_s_torch'])} | {_cell(r['denoise_s_onnx'])} | "
            f"{_cell(r['denoise_torch_over_onnx'])} | "
            f"{r['sample_s_torch']} | {r['sample_s_onnx']} | {r['sample_torch_over_onnx']} | "
            f"{r['sample_max_abs_diff']:.1e} |")
    lines += ["", "Export, then the onnxruntime check against `model.denoise` (seconds, and the "
              "max abs difference in metres):", "",
              "| model | exporter | export + check s | max abs diff (m) |", "|---|---|---|---|"]
    for r in report["rows"]:
        for exporter in ("torchscript", "dynamo"):
            if f"export_and_check_s_{exporter}" in r:
                lines.append(f"| {r['model']} | {exporter} | "
                             f"{r[f'export_and_check_s_{exporter}']} | "
                             f"{r[f'denoise_max_abs_diff_{exporter}']:.1e} |")
        if "export_s_torchscript" in r:
            lines.append(f"| {r['model']} | torchscript | {r['export_s_torchscript']} (export "
                         "only; the sampler's difference above is the check) | – |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m ddhpose.bench.onnx",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="threads of both back ends (default torch's)")
    args = ap.parse_args(argv)
    report = run(args.threads)
    write_report(args.out, "bench_onnx", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
