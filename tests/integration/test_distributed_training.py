"""DDP on CPU (gloo, 2 processes via torchrun) ends with the same weights as one process training
on the same global batches — with uneven rank shares, an empty share and drop-path on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.training.progress import read_train_log

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"


def _split_key_bias(name: str, diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(entries with a real gradient, entries whose gradient is zero in exact arithmetic).

    Attention key biases (the middle third of ``attn.qkv.bias``, all of ``attn.qkv_xc.bias``)
    shift every score of a softmax row by the same amount, so their true gradient is 0; AdamW turns
    the float round-off there (which differs between batch splits) into steps of size ~lr.
    """
    diff = diff.flatten()
    if name.endswith("attn.qkv_xc.bias"):
        return diff[:0], diff
    if name.endswith("attn.qkv.bias"):
        c = diff.numel() // 3
        return torch.cat([diff[:c], diff[2 * c:]]), diff[c:2 * c]
    return diff, diff[:0]


@pytest.mark.parametrize(
    "batch_clips, drop_path",
    [(5, 0.1),    # 32 clips/epoch -> batches of 5 split 3+2, last batch 2 split 1+1
     (31, 0.0)],  # last batch of 1 clip: rank 1 has an empty share (dummy clip, weight 0)
)
def test_two_ranks_match_one_process(tmp_path, batch_clips, drop_path):
    args = ["--epochs", "2", "--batch-clips", str(batch_clips), "--drop-path", str(drop_path),
            "--lr", "1e-4"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "ddhpose.training.smoke", "--params", str(REPO / "params.yaml"),
     "--out", str(single), *args])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "ddhpose.training.smoke", "--params", str(REPO / "params.yaml"),
     "--out", str(ddp), *args])

    a = load_checkpoint(single / "last.pt")
    b = load_checkpoint(ddp / "last.pt")
    assert b["train_state"]["world_size"] == 2 and len(b["train_state"]["rng"]) == 2
    real, keybias = [], []
    for name, wa in a["state_dict"].items():
        diff = (wa.double() - b["state_dict"][name].double()).abs()
        r, k = _split_key_bias(name, diff)
        real.append(r)
        keybias.append(k)
    real_all = torch.cat(real)
    real_max = float(real_all.max())
    real_q = float(torch.quantile(real_all, 0.999))
    key_max = float(torch.cat(keybias).max())
    print(f"\nbatch_clips={batch_clips} drop_path={drop_path}: max |single - ddp| = "
          f"{real_max:.3g}, 99.9% quantile {real_q:.3g} (key biases: {key_max:.3g})")
    # Round-off level almost everywhere; AdamW's m/sqrt(v) can magnify the round-off of a
    # gradient that nearly cancels into a visible fraction of one lr (1e-4) step, hence max < 2e-5.
    assert real_q < 1e-7
    assert real_max < 2e-5
    steps = 2 * -(-32 // batch_clips)
    assert key_max <= 2e-4 * steps  # bounded by AdamW's ~lr step per update

    la, lb = read_train_log(single / "train_log.csv"), read_train_log(ddp / "train_log.csv")
    assert len(la) == len(lb) == 2
    for ra, rb in zip(la, lb, strict=True):
        for col in ("loss_total", "loss_pos", "loss_len", "loss_dir", "val_mpjpe_mm"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), rel=1e-5), col
    # only rank 0 writes: no stray temporary files, one set of checkpoints
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())


def test_cuda_choices_that_put_two_ranks_on_one_gpu_are_refused():
    from ddhpose.errors import ConfigError
    from ddhpose.training.distributed import cuda_index

    assert cuda_index("cuda", 1, 2, device_count=2) == 1
    assert cuda_index("cuda", 0, 1, device_count=2) is None
    assert cuda_index("cuda:1", 0, 1, device_count=2) == 1
    with pytest.raises(ConfigError, match=r"train\.device.*LOCAL_RANK 1 but only 1 CUDA"):
        cuda_index("cuda", 1, 2, device_count=1)
    with pytest.raises(ConfigError, match=r"train\.device.*'cuda:0' under torchrun"):
        cuda_index("cuda:0", 0, 2, device_count=4)
    with pytest.raises(ConfigError, match="only 1 CUDA device"):
        cuda_index("cuda:3", 0, 1, device_count=1)


def test_cuda_n_under_torchrun_is_refused_before_any_process_group(monkeypatch):
    """The refusal comes from the real environment torchrun sets, on any machine."""
    import torch.distributed as dist

    from ddhpose.errors import ConfigError
    from ddhpose.training.distributed import init_distributed

    for key, val in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(key, val)
    with pytest.raises(ConfigError, match="'cuda:0' under torchrun"):
        init_distributed("cuda:0")
    assert not dist.is_initialized()


def test_more_ranks_than_clips_warns(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ddhpose.training.smoke", "--out", str(out), "--epochs", "1", "--batch-clips",
           "1", "--sequences", "1", "--frames", "12", "--no-validate"]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    warn = [ln for ln in done.stderr.splitlines() if "weight-0 dummy clip" in ln]
    assert len(warn) == 1, done.stderr[-3000:]
    assert "2 processes for a global batch of train.batch_clips=1" in warn[0]
