"""Random draws of one training step made for the GLOBAL batch, so DDP equals one process.

Every rank draws the diffusion variables (t, direction noise, length noise) and the drop-path
masks for the whole global batch from dedicated CPU generators seeded from ``(seed, epoch)``,
and keeps only the rows of its own clips. The draws therefore do not depend on how a batch is
split between ranks, on the device, or on the global torch RNG, and need no checkpointing
(a resumed epoch re-seeds them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ddhpose.training.state import seeded_generator

_DIFFUSION_STREAM = 1
_DROP_PATH_STREAM = 2


@dataclass(frozen=True)
class ClipNoise:
    """Diffusion draws of a batch of clips, in clip order.

    Attributes:
        t: (N,) int64 timesteps in [0, T).
        eps_dir: (N, F, J, 3) float32 direction noise.
        eps_len: (N, F, J, 1) float32 length noise.
    """

    t: Tensor
    eps_dir: Tensor
    eps_len: Tensor

    def rows(self, start: int, stop: int) -> ClipNoise:
        return ClipNoise(self.t[start:stop], self.eps_dir[start:stop], self.eps_len[start:stop])

    def to(self, device: torch.device) -> ClipNoise:
        return ClipNoise(self.t.to(device), self.eps_dir.to(device), self.eps_len.to(device))


def draw_clip_noise(
    gen: torch.Generator, clips: int, frames: int, joints: int, timesteps: int
) -> ClipNoise:
    """Per clip, in order: ``t = randint(0, T, (1,))``, ``randn(F,J,3)``, ``randn(F,J,1)``.

    The per-clip draw order is the reference's (docs/model.md "Training forward"), made from ``gen``
    (CPU).
    """
    ts, dirs, lens = [], [], []
    for _ in range(clips):
        ts.append(torch.randint(0, timesteps, (1,), generator=gen))
        dirs.append(torch.randn(frames, joints, 3, generator=gen))
        lens.append(torch.randn(frames, joints, 1, generator=gen))
    if clips == 0:
        return ClipNoise(torch.zeros(0, dtype=torch.long), torch.zeros(0, frames, joints, 3),
                         torch.zeros(0, frames, joints, 1))
    return ClipNoise(torch.cat(ts), torch.stack(dirs), torch.stack(lens))


class GlobalDropPath:
    """A drop-path mask provider (``ddhpose.model.layers.MaskFn``) that draws masks for the whole
    global batch and returns this rank's rows.

    Drop-path inputs are clip-major: (B'·F, J, C) in spatial blocks and (B'·J, F, C) in temporal
    blocks, B' = local clips. For a mask of N rows this draws ``global_clips · N / local_clips``
    Bernoulli(keep) values and keeps rows ``[offset · N/local, (offset + local) · N/local)``, so the
    masks a clip receives do not depend on the rank split. Call :meth:`set_batch` before each
    forward pass.

    With a ``plan`` (:meth:`ddhpose.model.denoiser.HSTDenoiser.drop_path_plan`: rows per clip and
    keep probability of every mask of one forward, in call order), :meth:`set_batch` draws all
    masks of the step at once into one buffer (pinned when ``device`` is CUDA), copies it to
    ``device`` once (non-blocking) and the forward gets slices of it: no draw and no host-device
    copy inside the forward. The values and their order are the same as without a plan (each
    mask is still its own ``bernoulli_`` call on the generator, in call order).
    """

    def __init__(self, plan: list[tuple[int, float]] | None = None,
                 device: torch.device | str | None = None) -> None:
        self.gen: torch.Generator | None = None
        self.global_clips = 0
        self.offset = 0
        self.local_clips = 0
        self.plan = list(plan) if plan is not None else None
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._masks: Tensor | None = None  # this step's masks, flat, on ``device``
        self._starts: list[int] = []  # where each plan entry's global rows begin in _masks
        self._next = 0  # index of the next plan entry the forward asks for

    def start_epoch(self, seed: int, epoch: int) -> None:
        self.gen = seeded_generator(seed, epoch, _DROP_PATH_STREAM)

    def set_batch(self, global_clips: int, offset: int, local_clips: int) -> None:
        self.global_clips, self.offset, self.local_clips = global_clips, offset, local_clips
        if self.plan is not None and self.gen is not None and local_clips > 0:
            self._draw_step()

    def _draw_step(self) -> None:
        """All masks of one forward: one buffer, one ``bernoulli_`` per mask, one copy."""
        assert self.plan is not None and self.gen is not None
        sizes = [self.global_clips * rows for rows, _ in self.plan]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        cuda = self.device.type == "cuda"
        buf = torch.empty(sum(sizes), pin_memory=cuda)
        for (_, keep), start, size in zip(self.plan, self._starts, sizes, strict=True):
            part = buf[start:start + size]
            part.bernoulli_(keep, generator=self.gen)
            if keep > 0.0:
                part.div_(keep)
        self._masks = buf.to(self.device, non_blocking=cuda)
        self._next = 0

    def __call__(self, shape: tuple[int, ...], keep: float, x: Tensor) -> Tensor:
        if self.gen is None or self.local_clips <= 0:
            raise RuntimeError("GlobalDropPath used before start_epoch()/set_batch()")
        rows = shape[0]
        if rows % self.local_clips:
            raise RuntimeError(f"drop-path rows {rows} not a multiple of {self.local_clips} clips")
        per_clip = rows // self.local_clips
        if self.plan is None:
            full = torch.empty(self.global_clips * per_clip).bernoulli_(keep, generator=self.gen)
            if keep > 0.0:
                full.div_(keep)
            start = self.offset * per_clip
            mask = full[start:start + rows]
            return mask.view(shape).to(device=x.device, dtype=x.dtype)
        if self._masks is None or self._next >= len(self.plan):
            raise RuntimeError("drop-path masks of this step are used up: call set_batch() "
                               "before each forward pass")
        want_rows, want_keep = self.plan[self._next]
        if (want_rows, want_keep) != (per_clip, keep):
            raise RuntimeError(
                f"drop-path call {self._next} wants {per_clip} rows per clip at keep {keep}, the "
                f"plan has {want_rows} at keep {want_keep}: the plan does not fit the model")
        start = self._starts[self._next] + self.offset * per_clip
        self._next += 1
        return self._masks[start:start + rows].view(shape)


def diffusion_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of the diffusion draws of ``epoch`` (0-based)."""
    return seeded_generator(seed, epoch, _DIFFUSION_STREAM)
