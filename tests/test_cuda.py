"""The CUDA paths, run where a GPU exists (skipped with a reason elsewhere).

On one GPU the whole file takes a few minutes (well under 15). What it checks:

1. parity CPU vs CUDA in float32 with TF32 off: the denoiser (the CUDA inference fallback of
   the fused path and the autograd path), one DDIM step with replayed noise;
2. checkpoints made on the GPU are device-free (a plain ``torch.load`` gives CPU tensors); one
   AMP training step (float16 with its GradScaler, bfloat16 without) gives finite gradients on
   every parameter but the unused ``qkv_xc`` set, and the scaler state survives a resume;
3. a synchronisation budget: host-device syncs of a training step and of a DDIM step, counted
   with ``torch.cuda.set_sync_debug_mode("warn")``;
4. the peak memory of one paper-size sampling call (B=4, H=20, K=1, flip pass), printed;
5. two GPUs, when present: a torchrun NCCL smoke run equals one process within a tolerance
   (atomics in the CUDA backward make bitwise equality a CPU-only property).

The CPU-checkable parts (device refusals, bench refusal and synchronisation, precision options)
are tested with the modules they belong to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ddhpose.bench.plan import bench_model
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.synthetic.smoke import synthetic_split
from ddhpose.training.smoke import tiny_model_config

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (this machine has none); on a GPU host: "
           "python -m pytest -q tests/test_cuda.py",
)

#: most host-device synchronisations allowed per training step / per DDIM step
STEP_SYNC_BUDGET = 6
DDIM_SYNC_BUDGET = 4


@pytest.fixture
def fp32_exact():
    """IEEE float32 matmuls (TF32 off) for the duration of a test."""
    from ddhpose.model.precision import matmul_precision

    with matmul_precision(False):
        yield


def _model(width: int = 64, depth: int = 3, frames: int = 27) -> DDHPose:
    torch.manual_seed(0)
    model = DDHPose(bench_model(width, depth, frames))
    with torch.no_grad():  # non-zero embeddings, like a trained model
        for name, p in model.named_parameters():
            if "pos_embed" in name or name.endswith("group"):
                p.normal_(0, 0.02)
    return model.eval()


def _inputs(b: int, h: int, f: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, 17, 2, generator=g), torch.randn(b, h, f, 17, 3, generator=g),
            torch.randn(b, h, f, 17, 1, generator=g).abs(),
            torch.randint(0, 1000, (b,), generator=g))


def test_denoiser_cpu_and_cuda_agree_in_float32(fp32_exact):
    cpu = _model()
    gpu = _model().cuda()
    args = _inputs(3, 2, 27)
    with torch.no_grad():
        ref = cpu.denoise(*args)
        fused = gpu.denoise(*(a.cuda() for a in args)).cpu()  # inference: CUDA fused fallback
    with torch.enable_grad():
        plain = gpu.denoise(*(a.cuda() for a in args)).detach().cpu()  # autograd path
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain, ref, atol=1e-5, rtol=1e-4)


def test_one_ddim_step_with_replayed_noise_agrees(fp32_exact):
    cpu, gpu = _model(), _model().cuda()
    x2d = _inputs(2, 1, 27)[0]
    g = torch.Generator().manual_seed(1)
    noise = [torch.randn(2, 3, 27, 17, 3, generator=g), torch.randn(2, 3, 27, 17, 1, generator=g),
             torch.randn(2, 3, 27, 16, 3, generator=g), torch.randn(2, 3, 27, 16, 1, generator=g)]
    ref = cpu.sample(x2d, hypotheses=3, steps=2, noise=noise)
    out = gpu.sample(x2d.cuda(), hypotheses=3, steps=2, noise=[n.cuda() for n in noise]).cpu()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def _smoke(out: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", str(nproc)] if nproc > 1 else [sys.executable])
    cmd = [*launcher, "-m", "ddhpose.training.smoke", "--out", str(out), "--device", "cuda",
           *(extra if "--epochs" in extra else ("--epochs", "2", *extra))]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_checkpoints_made_on_the_gpu_are_device_free(tmp_path):
    _smoke(tmp_path)
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # no map_location
    tensors = []

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            tensors.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(raw)
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert raw["optimizer"]["state"], "the optimizer state was saved"


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_an_amp_training_step_and_its_scaler_survive_a_resume(tmp_path, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bfloat16 tensor cores")
    trainer = _trainer(tmp_path, amp=amp)
    assert trainer.autocast == (torch.float16 if amp == "fp16" else torch.bfloat16)
    assert (trainer.scaler is not None) == (amp == "fp16")
    losses = trainer.train_epoch(trainer.model)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    from ddhpose.training.distributed import static_unused_parameters

    unused = {id(p) for p in static_unused_parameters(trainer.model)}
    for name, p in trainer.model.named_parameters():
        if id(p) in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # through the real files: 1 epoch, then a resumed second one keeps the scaler state
    _smoke(tmp_path / "run", "--amp", amp, "--epochs", "1")
    first = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    _smoke(tmp_path / "run", "--amp", amp, "--epochs", "2")
    second = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert second["epoch"] == 2 and second["precision"] == f"{trainer.autocast}-autocast".replace(
        "torch.", "")
    if amp == "fp16":
        assert first["scaler"] and second["scaler"]
        assert second["scaler"]["_growth_tracker"] >= 0 and second["scaler"]["scale"] > 0
    else:
        assert first["scaler"] is None and second["scaler"] is None


def _count_syncs(fn) -> int:
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _trainer(tmp_path: Path, **train_kw):
    from demo_config import demo_train

    from ddhpose.training.distributed import init_distributed
    from ddhpose.training.loop import _Trainer

    cfg = demo_train(epochs=2, batch_clips=4, lr=1e-3, validate=False, device="cuda", **train_kw)
    split = synthetic_split("h36m", 4, 30, seed=0)
    return _Trainer(tiny_model_config(), cfg, split, None, tmp_path, init_distributed("cuda"),
                    None)


def test_a_training_step_stays_within_the_sync_budget(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train_epoch(trainer.model)  # warm-up: per-device index caches, cuBLAS handles
    steps = len(trainer.data.epoch(0, 1))  # (advances the shuffler; epochs have equal length)
    trainer.epoch += 1
    syncs = _count_syncs(lambda: trainer.train_epoch(trainer.model))
    print(f"\nsyncs per training step: {syncs / steps:.1f} ({syncs} in {steps} steps)")
    assert syncs <= STEP_SYNC_BUDGET * steps


def test_a_ddim_step_stays_within_the_sync_budget():
    model = _model().cuda()
    x2d = _inputs(2, 1, 27)[0].cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    model.sample(x2d, hypotheses=2, steps=2, generator=gen)  # warm-up
    one = _count_syncs(lambda: model.sample(x2d, hypotheses=2, steps=1, generator=gen))
    five = _count_syncs(lambda: model.sample(x2d, hypotheses=2, steps=5, generator=gen))
    print(f"\nsyncs per DDIM step: {(five - one) / 4:.1f} (a K=1 call: {one})")
    assert five - one <= DDIM_SYNC_BUDGET * 4


def test_peak_memory_of_a_paper_size_sampling_call():
    model = DDHPose(bench_model(512, 8, 243)).cuda().eval()  # 38.5 M parameters, F=243
    x2d = torch.randn(4, 243, 17, 2, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    out = model.sample(x2d, hypotheses=20, steps=1,
                       generator=torch.Generator(device="cuda").manual_seed(0))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    print(f"\npaper-size sampling call (B=4, H=20, K=1, flip): peak {peak:.2f} GB of {total:.0f}")
    assert out.shape == (4, 1, 20, 243, 17, 3) and torch.isfinite(out).all()
    assert peak < total


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_under_torchrun_match_one_gpu(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _smoke(single, "--batch-clips", "4", "--lr", "1e-4")
    _smoke(ddp, "--batch-clips", "4", "--lr", "1e-4", nproc=2)
    a, b = load_checkpoint(single / "last.pt"), load_checkpoint(ddp / "last.pt")
    assert b["train_state"]["world_size"] == 2
    steps = 2 * 8  # 2 epochs of 8 batches (32 clips of the smoke split)
    diff = torch.cat([(v.double() - b["state_dict"][k].double()).abs().flatten()
                      for k, v in a["state_dict"].items()])
    q99 = float(torch.quantile(diff[torch.randperm(diff.numel())[:100_000]], 0.99))
    print(f"\n2 GPUs vs 1: max |diff| {float(diff.max()):.3g}, 99% quantile {q99:.3g}")
    # not bitwise (atomics, TF32 and per-rank GEMM shapes round differently): within a fraction
    # of AdamW's lr-sized step per update
    assert q99 < 1e-4 * steps
    for ra, rb in zip(a["train_state"]["history"], b["train_state"]["history"], strict=True):
        assert rb["loss_total"] == pytest.approx(ra["loss_total"], rel=1e-2)
