"""The benchmark machinery on a tiny configuration: JSON schema, FLOP counting, markdown, CLI.
No timing is asserted (speed is shown by ``ddhpose bench``, never by tests)."""

from __future__ import annotations

import json

import pytest
import torch
from demo_config import demo_model
from torch import nn

from ddhpose.bench.plan import BenchPlan, ModelSpec, SampleCase, full_plan, quick_plan
from ddhpose.bench.report import render_markdown
from ddhpose.bench.suite import SCHEMA, count_flops, denoiser_flops, run_benchmark, write_reports
from ddhpose.bench.train_step import DEFAULT_VARIANT
from ddhpose.commands.bench import _flat_metrics

TINY = ModelSpec("tiny", 16, 2, 9)


@pytest.fixture(scope="module")
def result():
    plan = BenchPlan([TINY], [SampleCase("tiny", 1, 1, 1), SampleCase("tiny", 1, 2, 3, (2, 1))],
                     {"tiny": 2}, ["tiny"], peak_size=128, loader_frames=2000, budget_s=0.5,
                     accuracy=True, train_repeats=1)
    threads = torch.get_num_threads()
    try:
        return run_benchmark(plan, threads=1, log=lambda _msg: None)
    finally:
        torch.set_num_threads(threads)


def test_linear_flops_match_analytic_count():
    n, cin, cout = 7, 5, 3
    lin = nn.Linear(cin, cout)
    assert count_flops(lambda: lin(torch.randn(n, cin))) == 2 * n * cin * cout
    with torch.device("meta"):
        lin_meta = nn.Linear(cin, cout)
        assert count_flops(lambda: lin_meta(torch.empty(4, n, cin))) == 2 * 4 * n * cin * cout


def test_denoiser_flops_positive_and_linear_in_clips():
    one, three = denoiser_flops(TINY, 1), denoiser_flops(TINY, 3)
    assert one > 0
    assert three == 3 * one


def test_schema(result):
    assert result["schema"] == SCHEMA
    for key in ("machine", "peak", "denoiser", "sampling", "training", "data_loader",
                "reference", "bf16_accuracy", "notes", "wall_seconds"):
        assert key in result, key
    for dt in ("float32", "bfloat16"):
        assert result["peak"][dt]["gflops"] > 0
    assert {d["dtype"] for d in result["denoiser"]} == {"float32", "bfloat16"}
    assert len(result["sampling"]) == 4  # 2 cases x 2 dtypes
    for rec in result["denoiser"] + result["sampling"] + result["training"]:
        assert rec["gflop"] > 0 and rec["seconds"] > 0 and rec["gflops"] > 0
        assert rec["peak_fraction"] > 0 and rec["peak_rss_mb"] > 0
    timed = [s for s in result["sampling"] if s["method"] == "timed"]
    extra = [s for s in result["sampling"] if s["method"] == "extrapolated"]
    assert len(timed) == 2 and len(extra) == 2
    for s in extra:  # K=3, H=2 from H=2, K=1: 3 x the measured seconds, 3 x the FLOPs
        assert "H=2,K=1" in s["how"]
        assert s["gflop"] == pytest.approx(3 * 2 * 2 * denoiser_flops(TINY, 1) / 1e9)
    assert result["data_loader"]["frames_per_s"] > 0
    assert result["data_loader"]["vs_training"] > 0
    train = {(t["variant"], t["dtype"]): t for t in result["training"]}
    assert set(train) == {("original", "float32"), (DEFAULT_VARIANT, "float32"),
                          ("bf16_autocast", "bfloat16")}
    for t in train.values():
        assert len(t["times"]) == 1 and t["spread"] >= 0 and t["vs_original_median"] > 0
        assert "reference_seconds" not in t  # the authors' 31.1 s is for the paper size only
    acc = result["bf16_accuracy"]
    assert acc["model_denoiser_max_abs_dev"] >= 0.0
    json.dumps(result)  # JSON-able


def test_reports_written(result, tmp_path):
    js, md = write_reports(result, tmp_path)
    assert json.loads(js.read_text())["schema"] == SCHEMA
    text = md.read_text()
    assert "| model | dtype |" in text and "39.2 s" in text
    assert render_markdown(result) == text
    metrics = _flat_metrics(result)
    assert metrics["peak_gflops.float32"] > 0


def test_the_full_plan_covers_the_paper_sampling_settings():
    full = full_plan()
    hk = {(c.model, c.hypotheses, c.steps) for c in full.sampling}
    for model in ("demo_f27", "paper_f27", "paper_f243"):
        for h, k in ((1, 1), (5, 1), (20, 10)):
            assert (model, h, k) in hk
    assert {(c.batch, c.hypotheses) for c in full.sampling if c.model == "paper_f243"} >= {
        (4, 1), (2, 1)}
    assert quick_plan().mode == "quick" and len(quick_plan().sampling) < len(full.sampling)


def test_bench_command_parses():
    from ddhpose.cli import build_parser

    args = build_parser("bench").parse_args(["bench", "--quick", "--mlflow", "--out", "x"])
    assert args.quick and args.mlflow and args.out == "x"


def test_log_bench_to_mlflow(result, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from ddhpose.commands.bench import log_bench_to_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    js, _ = write_reports(result, tmp_path / "reports")
    run_id = log_bench_to_mlflow(js)
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["peak_gflops.float32"] > 0
    assert run.data.params["mode"] == "custom"


def test_fused_residual_gemms_are_counted():
    """The inference path's in-place addmm_ (fused residual GEMMs, width >= 256) counts like the
    plain Linear path of training."""
    from ddhpose.model import DDHPose

    f = 9
    with torch.device("meta"):
        model = DDHPose(demo_model(width=256, depth=2, frames=f, drop_path=0.5))
        args = (torch.empty(2, f, 17, 2), torch.empty(2, 1, f, 17, 3),
                torch.empty(2, 1, f, 17, 1), torch.zeros(2, dtype=torch.long))
        with torch.no_grad():
            fused = count_flops(lambda: model.eval().dir_bone_estimator(*args))
        plain = count_flops(lambda: model.train().dir_bone_estimator(*args))
    assert fused == plain > 0


def test_chunked_inference_matches_reference(parity_dir):
    """Chunked CPU inference (one clip per chunk here) reproduces the reference sampler."""
    from ddhpose.model import DDHPose

    model = DDHPose(demo_model(width=64, depth=3, frames=27, drop_path=0.0))
    model.load_state_dict(torch.load(parity_dir / "state_dict.pt", weights_only=True))
    model.eval().chunk_elements = 27 * 17 * 64
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    case = torch.load(parity_dir / "sample_H3_K4.pt", weights_only=True)
    pred = model.sample(inputs["inputs_2d"], 3, 4, noise=list(case["noise"]),
                        x2d_flip=inputs["inputs_2d_flip"])
    assert (pred - case["pred"]).abs().max().item() <= 1e-5
    pred16 = model.sample(inputs["inputs_2d"], 3, 4, noise=list(case["noise"]),
                          dtype=torch.bfloat16)
    assert pred16.dtype == torch.float32 and pred16.shape == case["pred"].shape


def test_peak_is_the_best_kernel(result):
    for dt in ("float32", "bfloat16"):
        peak = result["peak"][dt]
        by = peak["by_kernel"]
        assert "torch.matmul" in by
        assert peak["gflops"] == max(b["gflops"] for b in by.values())
        assert by[peak["kernel"]]["gflops"] == peak["gflops"]


def test_demo_test_accuracy_on_a_trained_checkpoint(tmp_path):
    """The bf16 MPJPE check runs the whole protocol twice on a real split and checkpoint."""
    from ddhpose.bench.accuracy import demo_test_accuracy
    from ddhpose.data.processed import save_split
    from ddhpose.model import DDHPose
    from ddhpose.model.checkpoint import save_checkpoint
    from ddhpose.synthetic.smoke import synthetic_split

    assert demo_test_accuracy(tmp_path / "none.pt", tmp_path / "none.npz") == {}
    split_path = tmp_path / "test.npz"
    save_split(split_path, synthetic_split(sequences=2, frames=12))
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=2, frames=9, drop_path=0.0))
    ckpt = save_checkpoint(tmp_path / "best.pt", model)
    out = demo_test_accuracy(ckpt, split_path, hypotheses=2, steps=2, batch_clips=2)
    assert out["frames"] == 24 and out["width"] == 16
    assert set(out["mm"]) == {"float32", "bfloat16"}
    for key, f32 in out["mm"]["float32"].items():
        assert out["change_mm"][key] == pytest.approx(out["mm"]["bfloat16"][key] - f32)
    dev = out["joint_deviation_mm"]
    assert dev["p_agg"]["max"] > 0.0  # bfloat16 does change the poses a little
    for d in dev.values():
        assert 0.0 <= d["mean"] <= d["p99"] <= d["max"]
    assert "On a trained model's test set" in render_markdown(
        {**_minimal_result(), "bf16_accuracy": {"demo_test": out}})


def _minimal_result() -> dict:
    return {"mode": "custom", "created": "now", "machine": {"torch": "x", "cpu_count": 2,
            "threads": 2}, "wall_seconds": 1.0, "peak": {}, "reference": {
            "peak_gflops": {"float32": 130.0, "bfloat16": 364.0}, "gflop_per_clip_pass_f243": 317,
            "sampling": []}, "sampling": [], "denoiser": [], "training": []}


def test_training_only_keeps_the_training_cases_and_drops_sampling():
    from ddhpose.cli import build_parser
    from ddhpose.commands.bench import build_plan

    full = build_plan(build_parser("bench").parse_args(["bench"]))
    only = build_plan(build_parser("bench").parse_args(["bench", "--training-only"]))
    assert full.sampling and full.accuracy
    assert only.sampling == [] and not only.accuracy and only.mode == "training-only"
    assert only.training == full.training and "paper_f243" in only.training


def test_bench_refuses_a_device_it_cannot_measure_in_one_line(tmp_path):
    import subprocess
    import sys

    for device in (["cuda"] if not torch.cuda.is_available() else []) + ["mps", "nonsense"]:
        done = subprocess.run([sys.executable, "-m", "ddhpose.cli", "bench", "--quick",
                               "--device", device, "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ddhpose bench: error: --device"), lines
        assert not list(tmp_path.iterdir())  # refused before measuring anything


def test_every_timed_call_is_enclosed_by_device_syncs():
    from ddhpose.bench.measure import device_sync, time_call

    events: list[str] = []
    times = time_call(lambda: events.append("call"), budget_s=10.0, warmup=1, max_repeats=3,
                      sync=lambda: events.append("sync"))
    assert len(times) == 3
    assert events == ["call"] + ["sync", "call", "sync"] * 3
    assert device_sync("cpu")() is None


def test_result_records_the_device_and_cpu_runs_compare_with_the_authors(result):
    assert result["device"] == "cpu"
    assert "cuda_device" not in result["machine"]


def test_a_gpu_report_shows_device_memory_and_no_cpu_comparison(result):
    import copy

    from ddhpose.bench.report import annotate

    gpu = copy.deepcopy(result)
    gpu["device"] = "cuda"
    gpu["machine"].update(cuda_device="Some GPU", cuda_capability="8.0", cuda_memory_gb=40.0,
                          tf32_matmul=True)
    for group in ("denoiser", "sampling", "training"):
        for rec in gpu[group]:
            rec["cuda_max_allocated_mb"] = 1234.0
            rec.pop("speedup_raw", None)
    annotate(gpu)
    md = render_markdown(gpu)
    assert "device Some GPU (capability 8.0, 40 GB, TF32 matmul on" in md
    assert "peak GPU MB (allocated)" in md and "| 1234 |" in md
    assert not any("speedup_raw" in rec for rec in gpu["sampling"])
def test_training_rows_are_normalised_by_the_peak():
    from ddhpose.bench.report import annotate

    result = {"peak": {"float32": {"gflops": 260.0}, "bfloat16": {"gflops": 520.0}},
              "denoiser": [], "sampling": [],
              "training": [{"dtype": "float32", "gflop": 3000.0, "seconds": 10.0,
                            "reference_seconds": 31.1},
                           {"dtype": "bfloat16", "gflop": 3000.0, "seconds": 5.0,
                            "reference_seconds": 31.1}]}
    annotate(result)
    f32, bf16 = result["training"]
    assert f32["speedup_normalised"] == pytest.approx(31.1 * 130.0 / (10.0 * 260.0))
    assert bf16["speedup_normalised"] == pytest.approx(2 * f32["speedup_normalised"])
    assert f32["peak_fraction"] == pytest.approx(300.0 / 260.0)
    assert bf16["float32_peak_fraction"] == pytest.approx(600.0 / 260.0)
