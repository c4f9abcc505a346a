"""The training loop: files, logs, loss decrease, exact resume (in process and after SIGKILL),
refusal of corrupt or mismatching checkpoints, validation on valid frames."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from demo_config import demo_train

from ddhpose.errors import CheckpointError
from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.synthetic.smoke import synthetic_split
from ddhpose.training import TrainConfig, train
from ddhpose.training.batches import eval_batches
from ddhpose.training.distributed import DistInfo
from ddhpose.training.progress import LOG_COLUMNS, read_train_log
from ddhpose.training.smoke import tiny_model_config
from ddhpose.training.state import seeded_generator
from ddhpose.training.validate import frame_errors_mm, validation_mpjpe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine two
    spinning OpenMP threads per process slow a step down by ~50x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits():
    return synthetic_split("h36m", 4, 30, seed=0), synthetic_split("h36m", 2, 30, seed=1)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_clips=4, lr=1e-3, checkpoint_every=1, device="cpu")
    base.update(kw)
    return demo_train(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_three_epochs_write_checkpoints_log_and_lower_the_loss(tmp_path, splits):
    calls: list[tuple[int, dict]] = []
    res = train(tiny_model_config(drop_path=0.1), _cfg(epochs=3), *splits, tmp_path,
                log_fn=lambda m, step: calls.append((step, m)))
    for name in ("last.pt", "best.pt", "epoch_1.pt", "epoch_2.pt", "epoch_3.pt",
                 "train_log.csv"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
    rows = read_train_log(tmp_path / "train_log.csv")
    assert list(rows[0].keys()) == list(LOG_COLUMNS)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {r["precision"] for r in rows} == {"float32"}
    assert float(rows[1]["lr"]) == pytest.approx(1e-3 * 0.993)
    assert float(rows[2]["loss_total"]) < float(rows[0]["loss_total"])
    vals = [float(r["val_mpjpe_mm"]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in vals)
    assert [s for s, _ in calls] == [1, 2, 3]
    assert {"lr", "loss_total", "loss_pos", "loss_len", "loss_dir", "val_mpjpe_mm",
            "seconds"} <= calls[0][1].keys()
    assert res.epochs_run == 3 and res.epochs_done == 3 and len(res.history) == 3
    assert res.best_val_mpjpe_mm == min(vals)
    assert res.best_epoch == vals.index(min(vals)) + 1
    best = _weights(tmp_path / "best.pt")
    assert _max_diff(best, _weights(tmp_path / f"epoch_{res.best_epoch}.pt")) == 0.0
    state = load_checkpoint(tmp_path / "last.pt")["train_state"]
    assert state["epoch"] == 3
    assert state["lr"] == pytest.approx(1e-3 * 0.993**3)


def test_resume_in_process_is_bit_identical_and_finished_run_is_left_alone(tmp_path, splits):
    model_cfg = tiny_model_config(drop_path=0.1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(model_cfg, _cfg(epochs=3), *splits, straight)
    train(model_cfg, _cfg(epochs=2), *splits, resumed)
    res = train(model_cfg, _cfg(epochs=3), *splits, resumed)
    assert res.epochs_run == 1 and res.epochs_done == 3
    assert _max_diff(_weights(straight / "last.pt"), _weights(resumed / "last.pt")) == 0.0
    a = read_train_log(straight / "train_log.csv")
    b = read_train_log(resumed / "train_log.csv")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a) == drop(b)
    stamp = (resumed / "last.pt").stat().st_mtime_ns
    (resumed / "train_log.csv").unlink()  # as if killed between last.pt and the log
    again = train(model_cfg, _cfg(epochs=3), *splits, resumed)
    assert again.epochs_run == 0 and again.epochs_done == 3
    assert (resumed / "last.pt").stat().st_mtime_ns == stamp
    assert drop(read_train_log(resumed / "train_log.csv")) == drop(a)


def test_without_validation_best_is_last(tmp_path, splits):
    res = train(tiny_model_config(), _cfg(epochs=1, validate=False), splits[0], None, tmp_path)
    assert res.best_val_mpjpe_mm is None and res.best_epoch == 1
    assert _max_diff(_weights(tmp_path / "best.pt"), _weights(tmp_path / "last.pt")) == 0.0
    assert read_train_log(tmp_path / "train_log.csv")[0]["val_mpjpe_mm"] == ""


def test_corrupt_or_mismatching_last_checkpoint_is_refused(tmp_path, splits):
    model_cfg = tiny_model_config()
    train(model_cfg, _cfg(epochs=1, validate=False), splits[0], None, tmp_path)
    last = tmp_path / "last.pt"
    good = last.read_bytes()

    with pytest.raises(CheckpointError, match="width"):
        wider = tiny_model_config()
        wider.width = 32
        train(wider, _cfg(epochs=2, validate=False), splits[0], None, tmp_path)
    with pytest.raises(CheckpointError, match=r"train\.lr"):
        train(model_cfg, _cfg(epochs=2, lr=5e-4, validate=False), splits[0], None, tmp_path)

    last.write_bytes(good[: len(good) // 2])  # truncated, as by a crash of a non-atomic writer
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        train(model_cfg, _cfg(epochs=2, validate=False), splits[0], None, tmp_path)
    assert str(last) in str(info.value) and "\n" not in str(info.value)
    assert last.read_bytes() == good[: len(good) // 2], "a refused checkpoint must stay untouched"

    last.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        train(model_cfg, _cfg(epochs=2, validate=False), splits[0], None, tmp_path)
    # resume=False starts over instead
    res = train(model_cfg, _cfg(epochs=1, validate=False), splits[0], None, tmp_path,
                resume=False)
    assert res.epochs_run == 1


def test_validation_is_frame_weighted_mpjpe_over_valid_frames():
    split = synthetic_split("3dhp", 2, 30, seed=3, invalid_every=3)
    torch.manual_seed(0)
    model = DDHPose(tiny_model_config("3dhp"))
    skel = model.skeleton
    batches = eval_batches(split, skel, 9, 3)
    # 30 frames / 9 -> 4 clips per sequence (the last overlaps), 2 batches of <= 3 clips each
    assert sum(b.x2d.shape[0] for b in batches) == 8
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    got = validation_mpjpe(model, batches, root=skel.root, seed=5, epoch=2, info=info)
    total, frames = 0.0, 0
    for i, b in enumerate(batches):
        out = model.sample(b.x2d, 1, 1, generator=seeded_generator(5, 2, i, 3), x2d_flip=b.x2d_flip)
        err = frame_errors_mm(out[:, 0, 0] / 1000.0, b.x3d, skel.root)
        total += float(err[b.valid].sum())
        frames += int(b.valid.sum())
    assert frames == 2 * (9 * 4) - 2 * 12  # 36 clip frames per sequence, 12 of them invalid
    assert got == pytest.approx(total / frames, rel=1e-12)
    assert 10.0 < got < 5000.0  # millimetres, not metres


def _smoke(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ddhpose.training.smoke", "--params", str(REPO / "params.yaml"),
     "--out", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_mid_epoch_then_rerun_gives_bit_identical_weights(tmp_path):
    args = ("--epochs", "4", "--sequences", "6", "--drop-path", "0.1")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    done = subprocess.run(_smoke(ref, *args), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(_smoke(killed, *args), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "last.pt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no last.pt appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    at_kill = load_checkpoint(killed / "last.pt")["train_state"]["epoch"]
    assert at_kill < 4, "the run finished before it could be killed"
    print(f"\nkilled after epoch {at_kill} was checkpointed")

    rerun = subprocess.run(_smoke(killed, *args), cwd=REPO, env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["epochs_done"] == 4 and summary["epochs_run"] == 4 - at_kill
    assert _max_diff(_weights(ref / "last.pt"), _weights(killed / "last.pt")) == 0.0
    assert _max_diff(_weights(ref / "best.pt"), _weights(killed / "best.pt")) == 0.0
    assert len(read_train_log(killed / "train_log.csv")) == 4


def test_amp_on_the_cpu_bf16_autocast_or_a_stated_float32_fallback(tmp_path, splits, capsys):
    from ddhpose.model.fused import onednn_bf16_cpu

    train_split, _ = splits
    res = train(tiny_model_config(), _cfg(epochs=1, validate=False, amp=True), train_split, None,
                tmp_path / "auto", resume=False)
    assert res.precision == ("bfloat16-autocast" if onednn_bf16_cpu() else "float32")
    assert read_train_log(tmp_path / "auto" / "train_log.csv")[0]["precision"] == res.precision
    assert math.isfinite(res.history[0]["loss_total"])
    res = train(tiny_model_config(), _cfg(epochs=1, validate=False, amp="fp16"), train_split,
                None, tmp_path / "fp16", resume=False)
    assert res.precision == "float32"
    assert "train.amp: fp16 needs CUDA: training in float32" in capsys.readouterr().err


def test_a_non_finite_loss_stops_training_before_it_overwrites_last(tmp_path, splits):
    """A diverged run (here: an absurd learning rate) stops with one error naming the key and
    leaves last.pt at the last good epoch instead of saving non-finite weights."""
    from ddhpose.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'train\.lr': the training loss became non-finite "
                                          r"in epoch 1 \(float32\); nothing was saved"):
        train(tiny_model_config(), _cfg(epochs=6, lr=1e30, validate=False), splits[0], None,
              tmp_path)
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()
