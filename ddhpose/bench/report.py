"""The benchmark's report (:mod:`ddhpose.bench.suite`): the per-record annotations (GFLOP/s,
fractions of the same-run peak, the authors' reference times), the markdown report, and
:func:`write_report`, which every bench uses to write its JSON and markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddhpose.bench.measure import REFERENCE, normalised_speedup
from ddhpose.bench.train_step import DEFAULT_VARIANT


def annotate(result: dict[str, Any]) -> None:
    """Add GFLOP/s, fractions of the same-run peak and reference comparisons to the records."""
    peak = {dt: v["gflops"] for dt, v in result["peak"].items()}
    for group in ("denoiser", "sampling", "training"):
        for rec in result[group]:
            rec["gflops"] = rec["gflop"] / rec["seconds"]
            if rec["dtype"] in peak:
                rec["peak_fraction"] = rec["gflops"] / peak[rec["dtype"]]
            rec["float32_peak_fraction"] = rec["gflops"] / peak["float32"]
    if result.get("device", "cpu") != "cpu":
        return  # the authors' numbers are CPU times: no like-for-like comparison on a GPU
    for rec in result["training"]:
        if rec.get("reference_seconds"):
            rec["speedup_raw"] = rec["reference_seconds"] / rec["seconds"]
            rec["speedup_normalised"] = normalised_speedup(rec["reference_seconds"],
                                                           rec["seconds"], peak["float32"])
    for rec in result["sampling"]:
        if not rec["model"].startswith("paper"):
            continue
        for ref in REFERENCE["sampling"]:
            same = all(rec[k] == ref[k] for k in ("batch", "frames", "hypotheses", "steps"))
            if same:
                rec["reference_seconds"] = ref["seconds"]
                rec["speedup_raw"] = ref["seconds"] / rec["seconds"]
                rec["speedup_normalised"] = normalised_speedup(
                    ref["seconds"], rec["seconds"], peak["float32"])
                mm = _kernel_peak(result, "float32", "torch.matmul")
                if mm:  # like for like: the authors' peak is a torch.matmul peak
                    rec["speedup_normalised_matmul"] = normalised_speedup(
                        ref["seconds"], rec["seconds"], mm)


def _kernel_peak(result: dict[str, Any], dtype: str, kernel: str) -> float | None:
    by = result["peak"].get(dtype, {}).get("by_kernel", {})
    return by[kernel]["gflops"] if kernel in by else None


# --- markdown -----------------------------------------------------------------------------------


def _f(v: Any, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def render_markdown(r: dict[str, Any]) -> str:
    """The human-readable summary of a bench.json dict."""
    m, peak, ref = r["machine"], r["peak"], r["reference"]
    gpu = (f" · device {m['cuda_device']} (capability {m['cuda_capability']}, "
           f"{m['cuda_memory_gb']:.0f} GB, TF32 matmul {'on' if m['tf32_matmul'] else 'off'}; "
           "timed calls synchronised, peaks and GFLOP/s of the GPU, no comparison with the "
           "authors' CPU times)" if "cuda_device" in m else "")
    on_gpu = r.get("device", "cpu") == "cuda"
    mem_key = "cuda_max_allocated_mb" if on_gpu else "peak_rss_mb"
    mem_head = "peak GPU MB (allocated)" if on_gpu else "peak RSS MB"
    lines = [f"# ddhpose benchmark ({r['mode']})", "",
             f"{r['created']} · torch {m['torch']}{gpu} · {m['cpu_count']} CPUs, "
             f"{m['threads']} threads"
             f" · load average at start {_f(m.get('load_avg', [None])[0])}, at end "
             f"{_f(m.get('load_avg_end', [None])[0])} · wall {r['wall_seconds']:.0f} s", "",
             "Matmul peak, this run (best square n×n product seen: at start, at end and one "
             "probe before every case; GFLOP/s), the best kernel: "
             + ", ".join(f"{k} **{v['gflops']:.0f}** ({v.get('kernel', 'torch.matmul')})"
                         for k, v in peak.items())
             + "; by kernel: "
             + "; ".join(f"{k} " + ", ".join(f"{n} {b['gflops']:.0f}"
                                              for n, b in v.get("by_kernel", {}).items())
                         for k, v in peak.items())
             + f". The authors' machine (torch.matmul): float32 "
             f"{ref['peak_gflops']['float32']:.0f}, "
             f"bfloat16 {ref['peak_gflops']['bfloat16']:.0f}.", "",
             "`%peak` = achieved GFLOP/s ÷ the same-run best-kernel peak of that dtype; `%f32` ÷ "
             "the float32 peak. `norm. speedup` = (ref s × ref f32 peak) ÷ (s × f32 peak): the "
             "speedup over the authors' code on an equally fast machine (our peak = the best "
             "kernel, the stricter choice); `norm. (mm)` uses our torch.matmul peak instead, like "
             "for like with how the authors' peak was taken. FLOPs counted by "
             "FlopCounterMode (one F=243 clip pass: "
             f"{r.get('gflop_per_clip_pass_f243', 0):.0f} GFLOP here, "
             f"{ref['gflop_per_clip_pass_f243']:.0f} in the authors' code, which computes q·kᵀ "
             "and q·k_cᵀ separately).", "",
             "## Sampling (flip pass batched; frames/s = B·F input frames per second)", ""]
    rows = []
    for s in r["sampling"]:
        rows.append([s["model"], s["dtype"], str(s["batch"]), str(s["hypotheses"]),
                     str(s["steps"]), _f(s["seconds"]), _f(s["frames_per_s"], ".1f"),
                     _f(s["gflops"], ".0f"), _f(s.get("peak_fraction", 0) * 100, ".0f"),
                     _f(s["float32_peak_fraction"] * 100, ".0f"),
                     _f(s.get("reference_seconds")), _f(s.get("speedup_raw")),
                     _f(s.get("speedup_normalised")), _f(s.get("speedup_normalised_matmul")),
                     _f(s.get(mem_key), ".0f"),
                     s["method"] + ("" if s["method"] == "timed" else f": {s['how']}")])
    lines += _table(["model", "dtype", "B", "H", "K", "s", "frames/s", "GFLOP/s", "%peak",
                     "%f32", "ref s", "speedup", "norm. speedup", "norm. (mm)", mem_head,
                     "how"], rows)
    lines += ["Reference (authors' code, same kind of machine, f32): "
              + "; ".join(f"B={x['batch']},F={x['frames']},H={x['hypotheses']},K={x['steps']} "
                          f"{x['seconds']} s" + (f" (≈{x['gflops']:.0f} GFLOP/s)"
                                                  if x["gflops"] else "")
                          for x in ref["sampling"]), "", "## Denoiser forward", ""]
    lines += _table(["model", "dtype", "clips", "F", "s", "frames/s", "GFLOP/s", "%peak",
                     mem_head],
                    [[d["model"], d["dtype"], str(d["clips"]), str(d["frames"]),
                      _f(d["seconds"], ".3f"), _f(d["frames_per_s"], ".0f"), _f(d["gflops"], ".0f"),
                      _f(d.get("peak_fraction", 0) * 100, ".0f"), _f(d.get(mem_key), ".0f")]
                     for d in r["denoiser"]])
    lines += ["## Training step (batch 4 × F, drop-path 0.1, losses, backward, AdamW)", "",
              "`original`: the original code's structure (written by us), `"
              + DEFAULT_VARIANT + "`: ours (the training default), `bf16_autocast`: ours under "
              "bfloat16 autocast; all three timed interleaved in this run on the same weights. "
              "`s` = median, `best` = fastest step, `spread` = (slowest − fastest) ÷ median; "
              "`× orig.` = same-run speedup over the original-style step (median; best-of in "
              "brackets); `%peak` against the same-run peak of the row's dtype; `norm. speedup` = "
              "(31.1 s × 130) ÷ (s × our f32 peak), the authors' float32 step normalised by peak. "
              "Where the time goes: `reports/training_profile.md` (`python -m "
              "ddhpose.bench.profile_step`); what each change bought: "
              "`reports/bench_ablation_training.md`; "
              "the accuracy cost of bfloat16 autocast training: `reports/amp_training.md`.", ""]
    lines += _table(["model", "variant", "dtype", "s", "best", "spread", "× orig.", "frames/s",
                     "GFLOP/s", "%peak", "%f32", "ref s", "norm. speedup", mem_head,
                     "step RSS MB"],
                    [[t["model"], t.get("variant", "–"), t["dtype"], _f(t["seconds"]),
                      _f(t.get("best_seconds")), _f(t.get("spread", 0) * 100, ".0f") + " %",
                      _f(t.get("vs_original_median")) + f" ({_f(t.get('vs_original_best'))})",
                      _f(t["frames_per_s"], ".0f"), _f(t["gflops"], ".0f"),
                      _f(t.get("peak_fraction", 0) * 100, ".0f"),
                      _f(t["float32_peak_fraction"] * 100, ".0f"), _f(t.get("reference_seconds")),
                      _f(t.get("speedup_normalised")), _f(t.get(mem_key), ".0f"),
                      _f(t.get("step_rss_mb"), ".0f")] for t in r["training"]])
    dl = r.get("data_loader")
    if dl:
        ratio = dl.get("vs_training")
        lines += [f"## Data loader\n\n`TrainClips` ({dl['source']}), batch {dl['batch']} × "
                  f"{dl['frames']}: **{dl['frames_per_s']:.0f} frames/s** "
                  f"({dl['clips']} clips in {dl['seconds']:.2f} s)"
                  + (f": {ratio:.0f}× the fastest training row above "
                     f"({dl['training_frames_per_s']:.0f} frames/s)." if ratio else "."), ""]
    acc = dict(r.get("bf16_accuracy") or {})
    demo = acc.pop("demo_test", None)
    if acc:
        lines += ["## bfloat16 accuracy cost", ""]
        lines += [f"- `{k}`: {v:.4g}" if isinstance(v, float) else f"- `{k}`: {v}"
                  for k, v in acc.items()]
        lines.append("")
    if demo:
        mm, ch = demo["mm"], demo["change_mm"]
        lines += [f"### On a trained model's test set (`{demo['checkpoint']}`, width "
                  f"{demo['width']}, depth {demo['depth']}; `{demo['test_split']}`, "
                  f"{demo['frames']} frames, H={demo['hypotheses']}, K={demo['steps']}, same "
                  "seed)", "",
                  "Per-joint distance between the float32 and bfloat16 poses (mm): "
                  + "; ".join(f"{a} mean {d['mean']:.3f}, 99th percentile {d['p99']:.3f}, max "
                              f"{d['max']:.1f}" for a, d in demo["joint_deviation_mm"].items())
                  + ". J-Agg picks one hypothesis per joint: where bfloat16 changes the pick, "
                  "the joint moves by the spread of the hypotheses. Sampling time: float32 "
                  f"{demo['seconds']['float32']:.1f} s, bfloat16 "
                  f"{demo['seconds']['bfloat16']:.1f} s.", ""]
        lines += _table(["metric (last step, mm)", "float32", "bfloat16", "change"],
                        [[k, f"{mm['float32'][k]:.3f}", f"{mm['bfloat16'][k]:.3f}",
                          f"{ch[k]:+.3f}"] for k in mm["float32"]])
    for note in r.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def write_report(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """A bench's result as ``out/<name>.json`` and its ``text`` (markdown) as ``out/<name>.md``,
    each written atomically; the markdown also goes to stdout."""
    import sys

    from ddhpose.io import atomic_open, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", report)
    with atomic_open(out / f"{name}.md", "w") as fh:
        fh.write(text)
    sys.stdout.write(text)
