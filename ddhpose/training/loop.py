"""The training loop (docs/model.md "Training"): AdamW, per-epoch lr decay, loss-scaled gradients,
DDP, validation, checkpoints every epoch and exact resume.

Exactness contract. ``last.pt`` is written (atomically) after every epoch with the model, the
optimizer, the epoch shuffler's RandomState, the Python/NumPy/torch RNG states of every rank, the
lr, the best metric, the history and the sha256 of the data (a resume on other data is refused,
:mod:`ddhpose.training.resume`). Every other random draw of an epoch (diffusion t and noise,
drop-path masks, validation sampler noise) comes from generators seeded from ``(seed, epoch)``.
A run killed at any moment and restarted therefore replays the interrupted epoch exactly and ends
with bit-identical weights — on the CPU (deterministic kernels, same thread count and world
size; tested). On CUDA the draws are the same but some backward kernels (attention, indexing) sum
with atomics, so a resumed GPU run matches an uninterrupted one up to float round-off only.

DDP equivalence. ``batch_clips`` is the global batch; each rank takes a contiguous share of it.
The diffusion draws and drop-path masks are made for the whole global batch on every rank and
sliced (:mod:`ddhpose.training.draws`), rank losses are weighted by their share of the batch, and
the loss-scaled gradient uses the all-reduced GLOBAL loss, so the DDP-averaged gradient equals the
single-process gradient up to float round-off — with drop_path > 0 too (tested with 2 CPU
processes; on GPUs the round-off of the per-rank batch sizes and atomics makes the weights drift
apart slowly, as with any DDP run).

Precision (:mod:`ddhpose.model.precision`): ``train.amp`` runs the denoiser under autocast
(bfloat16 or float16; float16 with a GradScaler), validation samples with the same setting, so
``best.pt`` is chosen on validation in the training precision; ``train.tf32`` lets float32
matmuls on CUDA use TF32. The precision is stated in every ``train_log.csv`` row.

File writes (rank 0 only): ``epoch_<N>.pt`` (every ``checkpoint_every`` epochs), ``best.pt``
(validation MPJPE improved; without validation it is the latest epoch), then ``last.pt`` and
``train_log.csv``; the write order keeps them consistent with ``last.pt`` across crashes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.errors import CheckpointError, ConfigError
from ddhpose.model.checkpoint import load_checkpoint, save_checkpoint
from ddhpose.model.config import ModelConfig
from ddhpose.model.ddhpose import DDHPose
from ddhpose.model.layers import set_drop_path_mask_fn
from ddhpose.model.losses import pose_losses
from ddhpose.model.precision import (
    amp_mode,
    autocast_dtype,
    matmul_precision,
    precision_label,
    tf32_enabled,
)
from ddhpose.model.transfer import to_device
from ddhpose.training.batches import TrainBatches, eval_batches
from ddhpose.training.config import TrainConfig, TrainResult
from ddhpose.training.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
    wrap_ddp,
)
from ddhpose.training.draws import GlobalDropPath, diffusion_generator, draw_clip_noise
from ddhpose.training.memory import keep_freed_memory
from ddhpose.training.optimizer import adamw_impl, make_adamw
from ddhpose.training.progress import progress_bar, write_train_log
from ddhpose.training.resume import DATA_KEY, data_fingerprint, resume_blockers
from ddhpose.training.state import capture_rng_states, restore_rng_states, seed_everything
from ddhpose.training.validate import validation_mpjpe

LogFn = Callable[[dict[str, float], int], None]

LAST, BEST = "last.pt", "best.pt"
#: the progress bar shows the step loss every BAR_EVERY steps (reading it waits for the GPU)
BAR_EVERY = 25


def _note(msg: str) -> None:
    print(f"train: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels where torch has them (warn-only where it does not); the previous
    global settings are restored afterwards."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


class _Trainer:
    """Holds the state of one training call; see :func:`train`."""

    def __init__(
        self, model_cfg: ModelConfig, cfg: TrainConfig, train_split: Any, val_split: Any,
        out_dir: Path, info: DistInfo, log_fn: LogFn | None,
        init_state_dict: dict[str, torch.Tensor] | None = None, init_tag: str = "",
    ) -> None:
        self.model_cfg, self.cfg, self.info, self.log_fn = model_cfg, cfg, info, log_fn
        self.out_dir = out_dir
        self.val_split = val_split
        if info.distributed and info.world_size > cfg.batch_clips and info.is_main:
            _note(f"warning: {info.world_size} processes for a global batch of "
                  f"train.batch_clips={cfg.batch_clips} clips: "
                  f"{info.world_size - cfg.batch_clips} rank(s) run a weight-0 dummy clip every "
                  "step; use fewer processes or a larger batch")
        self.autocast = autocast_dtype(cfg.amp, info.device)
        if amp_mode(cfg.amp) == "fp16" and self.autocast is None and info.is_main:
            _note("train.amp: fp16 needs CUDA: training in float32 (bf16 works on the CPU)")
        seed_everything(cfg.seed)
        self.model = DDHPose(model_cfg, autocast=self.autocast)
        if init_state_dict is not None:  # fine-tuning: start from given weights (a resume
            self.model.load_state_dict(init_state_dict, strict=True)  # overrides them)
        self.model = self.model.to(info.device)
        self.init_tag = init_tag
        # what the run trains (and validates) on, for the resume rule; rank 0 checks and saves
        self.data_sha256 = (data_fingerprint(train_split, val_split if cfg.validate else None)
                            if info.is_main else {})
        #: training and validation precision, e.g. "bfloat16-autocast" (train_log, MLflow)
        self.precision = precision_label(self.autocast, info.device, tf32_enabled())
        if info.is_main and self.precision != "float32":
            _note(f"precision {self.precision} (train.amp: {cfg.amp}, train.tf32: {cfg.tf32}); "
                  "validation, which picks best.pt, runs in it too")
        self.skel = self.model.skeleton
        self.drop_path = GlobalDropPath(self.model.dir_bone_estimator.drop_path_plan(),
                                        device=info.device)
        set_drop_path_mask_fn(self.model, self.drop_path)
        self.optimizer = make_adamw(self.model.parameters(), lr=cfg.lr,
                                    weight_decay=cfg.weight_decay, device=info.device)
        # float16 gradients need loss scaling; bfloat16 has float32's range and needs none
        self.scaler = (torch.amp.GradScaler("cuda") if self.autocast == torch.float16
                       else None)
        self.data = TrainBatches(
            train_split, self.skel, frames=model_cfg.frames, batch_clips=cfg.batch_clips,
            flip=cfg.flip_augment, shuffle_seed=cfg.shuffle_seed, num_workers=cfg.num_workers,
        )
        self.epoch = 0  # completed epochs
        self.best: float | None = None
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        self._val_batches: list[Any] | None = None

    # --- resume ---------------------------------------------------------------------------------

    def resume(self) -> None:
        """Load ``last.pt`` (rank 0 reads, every rank receives) if it exists."""
        path = self.out_dir / LAST
        payload: Any = None
        if self.info.is_main and path.exists():
            try:
                ckpt = load_checkpoint(path, map_location="cpu")
                self._check_compatible(path, ckpt)
                payload = ckpt
            except CheckpointError as exc:
                payload = ("error", str(exc))
        payload = broadcast_object(payload, self.info)
        if payload is None:
            return
        if isinstance(payload, tuple):
            raise CheckpointError(path, payload[1].split(": ", 1)[-1])
        self._load_state(payload)
        if self.info.is_main:
            _note(f"resuming from {path} after epoch {self.epoch}")

    def _check_compatible(self, path: Path, ckpt: dict[str, Any]) -> None:
        reasons = resume_blockers(ckpt, self.model_cfg, self.cfg.as_dict(), self.data_sha256)
        if reasons:
            raise CheckpointError(
                path, f"cannot resume this run ({'; '.join(reasons)}); move it away to start "
                "a new run, or restore the old settings")

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["state_dict"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["train_state"]
        self.epoch = int(state["epoch"])
        for group in self.optimizer.param_groups:
            group["lr"] = float(state["lr"])
        self.data.set_shuffler_state(state["shuffler"])
        rng = state["rng"]
        restore_rng_states(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        self.best = state.get("best_mpjpe_mm")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.history = [dict(r) for r in state["history"]]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # --- one epoch ------------------------------------------------------------------------------

    def train_epoch(self, net: torch.nn.Module) -> dict[str, float]:
        """One pass over the shuffled clips; returns frame-weighted mean losses of the epoch."""
        cfg, info = self.cfg, self.info
        net.train()
        gen = diffusion_generator(cfg.seed, self.epoch)
        self.drop_path.start_epoch(cfg.seed, self.epoch)
        # running sums stay on the device: read once per epoch (and every BAR_EVERY steps)
        sums = torch.zeros(4, dtype=torch.float64, device=info.device)
        clips_seen = 0
        batches = self.data.epoch(info.rank, info.world_size)
        bar = progress_bar(batches, total=len(batches), desc=f"epoch {self.epoch + 1}",
                           enabled=info.is_main, leave=False)
        for step, batch in enumerate(bar):
            noise = draw_clip_noise(gen, batch.global_clips, self.model_cfg.frames,
                                    self.skel.num_joints, self.model_cfg.timesteps)
            local = noise.rows(batch.offset, batch.offset + batch.rows)
            # the step's draws go to the device at once (asynchronous copies), then per clip
            t, eps_dir, eps_len = (to_device(x, info.device)
                                   for x in (local.t, local.eps_dir, local.eps_len))
            replay = [x for i in range(batch.rows)
                      for x in (t[i:i + 1], eps_dir[i], eps_len[i])]
            self.drop_path.set_batch(batch.global_clips, batch.offset, batch.rows)
            x2d = to_device(batch.x2d, info.device, torch.float32)
            x3d = to_device(batch.x3d, info.device, torch.float32) * self.model.unit_scale
            pred = net(x2d, x3d, noise=replay)
            losses = pose_losses(pred, x3d, self.skel, cfg.w_len, cfg.w_dir)
            parts = torch.stack([losses[k].detach() for k in ("total", "pos", "length", "dir")])
            if info.distributed:
                share = batch.local_clips / batch.global_clips
                red = all_reduce_sum((parts * share).double(), info)
                global_total = red[0].to(losses["total"].dtype)
                local_total = losses["total"] * (share * info.world_size)
            else:
                red = parts.double()
                global_total = losses["total"].detach()
                local_total = losses["total"]
            self._step(local_total, global_total)
            sums += red * batch.global_clips
            clips_seen += batch.global_clips
            if info.is_main and (step % BAR_EVERY == 0 or step == len(batches) - 1):
                bar.set_postfix(loss=f"{float(red[0]):.4g}", refresh=False)
        bar.close()
        means = (sums / max(clips_seen, 1)).cpu().tolist()
        return dict(zip(("loss_total", "loss_pos", "loss_len", "loss_dir"), means, strict=True))

    def _step(self, local_total: torch.Tensor, global_total: torch.Tensor) -> None:
        """Backward (gradient scaled by the global loss when ``loss_scaled_grad``) and step."""
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        grad = global_total.detach() if cfg.loss_scaled_grad else None
        if self.scaler is not None:
            self.scaler.scale(local_total).backward(grad)
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        local_total.backward(grad)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()

    def validate(self) -> float:
        if self._val_batches is None:
            self._val_batches = eval_batches(self.val_split, self.skel, self.model_cfg.frames,
                                             self.cfg.eval_batch_clips)
        return validation_mpjpe(self.model, self._val_batches, root=self.skel.root,
                                seed=self.cfg.seed, epoch=self.epoch, info=self.info)

    # --- bookkeeping ----------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save(self, improved: bool) -> None:
        """Gather every rank's RNG state; rank 0 writes the checkpoints and the CSV."""
        rng = all_gather_objects(capture_rng_states(), self.info)
        if not self.info.is_main:
            return
        state = {
            "epoch": self.epoch, "lr": self.lr, "shuffler": self.data.shuffler_state(),
            "rng": rng, "best_mpjpe_mm": self.best, "best_epoch": self.best_epoch,
            "history": self.history, "train_config": self.cfg.as_dict(),
            "world_size": self.info.world_size, "optimizer_impl": adamw_impl(self.optimizer),
            "init_sha256": self.init_tag, DATA_KEY: self.data_sha256,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "precision": self.precision,
        }
        meta = {"kind": "ddhpose-train", "epoch": self.epoch}
        n = self.cfg.checkpoint_every
        if n and self.epoch % n == 0:
            save_checkpoint(self.out_dir / f"epoch_{self.epoch}.pt", self.model,
                            train_state=state, metadata=meta)
        if improved:
            save_checkpoint(self.out_dir / BEST, self.model, train_state=state, metadata=meta)
        save_checkpoint(self.out_dir / LAST, self.model, optimizer=self.optimizer,
                        train_state=state, metadata=meta)
        write_train_log(self.out_dir / "train_log.csv", self.history)

    def result(self, epochs_run: int) -> TrainResult:
        return TrainResult(
            best_path=self.out_dir / BEST, last_path=self.out_dir / LAST,
            best_val_mpjpe_mm=self.best, best_epoch=self.best_epoch, epochs_run=epochs_run,
            epochs_done=self.epoch, history=[dict(r) for r in self.history],
            precision=self.precision,
        )

    def run(self, resume: bool) -> TrainResult:
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        barrier(info)
        if resume:
            self.resume()
            if info.is_main and self.history:  # heal a log that missed the last checkpoint
                write_train_log(self.out_dir / "train_log.csv", self.history)
        elif info.is_main and (self.out_dir / LAST).exists():
            _note(f"resume disabled: overwriting {self.out_dir / LAST}")
        if self.epoch >= cfg.epochs:
            return self.result(0)
        net = wrap_ddp(self.model, info)
        start = self.epoch
        bar = progress_bar(total=cfg.epochs, initial=start, desc="training",
                           enabled=info.is_main)
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            lr_used = self.lr
            losses = self.train_epoch(net)
            if not math.isfinite(losses["loss_total"]):
                # stop before this epoch's weights replace anything: last.pt stays the last good one
                key = "train.amp" if self.precision != "float32" else "train.lr"
                kept = (f"{self.out_dir / LAST} still holds epoch {self.epoch}" if self.epoch
                        else "nothing was saved")
                raise ConfigError(key, f"the training loss became non-finite in epoch "
                                       f"{self.epoch + 1} ({self.precision}); {kept}. Train in "
                                       f"float32 (train.amp: off) or with a smaller train.lr")
            val = self.validate() if cfg.validate else float("nan")
            for group in self.optimizer.param_groups:
                group["lr"] *= cfg.lr_decay
            self.epoch += 1
            improved = not cfg.validate or (
                not np.isnan(val) and (self.best is None or val < self.best))
            if improved:
                self.best = val if cfg.validate else None
                self.best_epoch = self.epoch
            row = {"epoch": self.epoch, "lr": lr_used, **losses, "val_mpjpe_mm": val,
                   "seconds": time.perf_counter() - t0, "precision": self.precision}
            self.history.append(row)
            self.save(improved)
            if info.is_main and self.log_fn is not None:
                metrics = {k: float(v) for k, v in row.items()
                           if k not in ("epoch", "precision") and not np.isnan(v)}
                self.log_fn(metrics, self.epoch)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss_total']:.4g}",
                            val=f"{val:.2f}" if cfg.validate else "-", refresh=False)
        bar.close()
        return self.result(self.epoch - start)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_split: Any,
    val_split: Any,
    out_dir: Path,
    *,
    log_fn: LogFn | None = None,
    resume: bool = True,
    init_state_dict: dict[str, torch.Tensor] | None = None,
    init_tag: str = "",
) -> TrainResult:
    """Train DDHPose on ``train_split`` and write checkpoints to ``out_dir``.

    ``train_cfg`` is the ``train`` section of params.yaml (:class:`TrainConfig`).
    ``train_split`` / ``val_split`` are ``ProcessedSplit``s (``val_split`` may be None when
    ``validate`` is False). Run under torchrun for DDP (see
    :mod:`ddhpose.training.distributed`). ``log_fn(metrics, epoch)`` is called on rank 0 after
    every epoch. With ``resume`` and an existing ``out_dir/last.pt`` training continues from it
    (refused with CheckpointError when it is corrupt or its settings differ); a finished run
    returns its result without training. ``init_state_dict``: weights to fine-tune from
    (ignored when resuming); ``init_tag`` (e.g. their sha256) is stored in the training state so
    a resume can tell which initialisation a run started from. The fingerprint of the data
    (:func:`ddhpose.training.resume.data_fingerprint`) is stored too: ``last.pt`` of a run on
    other data (or of a run from before the fingerprint) is refused like other settings.
    """
    cfg = train_cfg.check()
    if cfg.validate and val_split is None:
        cfg = dataclasses.replace(cfg, validate=False)
        _note("no validation split given: validation disabled (best.pt = last epoch)")
    info = init_distributed(cfg.device)
    # large activations reuse freed heap memory (no mmap churn) when asked
    reused = keep_freed_memory(True) if cfg.reuse_host_memory else False
    try:
        with _deterministic(info.device), matmul_precision(cfg.tf32):
            trainer = _Trainer(model_cfg, cfg, train_split, val_split, Path(out_dir), info,
                               log_fn, init_state_dict=init_state_dict, init_tag=init_tag)
            result = trainer.run(resume)
    finally:
        if reused:
            keep_freed_memory(False)
    shutdown_distributed(info)
    return result
