"""Diffusion of the bone variables (docs/model.md "Bone diffusion"): cosine schedule, training-time
noising, DDIM time pairs, and an injectable source of random draws.

The schedule lives in float64 (12 named buffers, the reference's state_dict entries); every
expression that multiplies a per-sample schedule value with float32 activations is evaluated in
float64 and cast back to float32, as the reference does (docs/model.md
"Quirks: diffusion arithmetic in float64").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from ddhpose.model.transfer import to_device

SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def cosine_betas(timesteps: int = 1000, s: float = 0.008) -> Tensor:
    """β_t = clip(1 − ᾱ(t+1)/ᾱ(t), 0, 0.999), ᾱ(x) = cos(((x/T)+s)/(1+s)·π/2)², float64 (T,)."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    betas = 1 - (abar[1:] / abar[:-1])
    return torch.clip(betas, 0, 0.999)


def cosine_schedule(timesteps: int = 1000, s: float = 0.008) -> dict[str, Tensor]:
    """The 12 float64 schedule buffers (docs/model.md "Noise schedule"), in the reference's
    state_dict order, each (T,)."""
    betas = cosine_betas(timesteps, s)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    abar_prev = torch.cat((abar.new_ones(1), abar[:-1]))
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    out = {
        "betas": betas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": torch.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - abar),
        "log_one_minus_alphas_cumprod": torch.log(1.0 - abar),
        "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / abar - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": torch.log(post_var.clamp(min=1e-20)),
        "posterior_mean_coef1": betas * torch.sqrt(abar_prev) / (1.0 - abar),
        "posterior_mean_coef2": (1.0 - abar_prev) * torch.sqrt(alphas) / (1.0 - abar),
    }
    return {name: out[name] for name in SCHEDULE_BUFFERS}


def ddim_time_pairs(timesteps: int, steps: int) -> list[tuple[int, int]]:
    """DDIM (t, t_next) pairs: reversed int(linspace(−1, T−1, K+1)) (float32, truncated) zipped
    with its shift. K=1: [(999, −1)]; K=4: (999,749),(749,499),(499,249),(249,−1)."""
    if steps < 1:
        raise ValueError(f"the number of DDIM steps must be >= 1, got {steps}")
    times = torch.linspace(-1, timesteps - 1, steps=steps + 1).int().tolist()
    times = list(reversed(times))
    return list(itertools.pairwise(times))


# --- random draws ---------------------------------------------------------------------------------

NoiseSpec = Callable[[tuple[int, ...]], Tensor] | Iterable[Tensor] | None


class RandomDraws:
    """Where the random tensors come from, in the reference's draw order.

    Exactly one of:
      * ``noise`` a sequence/iterator of tensors, replayed in order (timesteps included for the
        training forward: per clip t (1,), direction noise (F,J,3), length noise (F,J,1));
      * ``noise`` a callable ``noise(shape) -> Tensor`` for Gaussian draws (timesteps then come
        from ``generator`` or the global RNG);
      * ``generator`` a ``torch.Generator`` (draws made on its device, then moved; a CPU draw
        goes to CUDA by an asynchronous copy from pinned memory);
      * nothing: the global torch RNG on the target device (the reference's behaviour, so the
        same seed reproduces the reference's draws bitwise).
    """

    def __init__(self, noise: NoiseSpec = None, generator: torch.Generator | None = None):
        self._fn: Callable[[tuple[int, ...]], Tensor] | None = None
        self._it: Iterator[Tensor] | None = None
        if callable(noise):
            self._fn = noise
        elif noise is not None:
            self._it = iter(noise)
        self.generator = generator
        self.count = 0

    def _next_replayed(self, shape: tuple[int, ...], what: str) -> Tensor:
        assert self._it is not None
        try:
            x = next(self._it)
        except StopIteration:
            raise ValueError(
                f"replayed noise ran out at draw {self.count} ({what} {shape})"
            ) from None
        if tuple(x.shape) != tuple(shape):
            raise ValueError(
                f"replayed draw {self.count} ({what}) has shape {tuple(x.shape)}, expected {shape}"
            )
        return x

    def randn(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        """A standard-normal float32 tensor of ``shape`` on ``device``."""
        shape = tuple(int(s) for s in shape)
        if self._it is not None:
            x = self._next_replayed(shape, "randn")
        elif self._fn is not None:
            x = self._fn(shape)
            if tuple(x.shape) != shape:
                raise ValueError(f"noise callable returned {tuple(x.shape)}, expected {shape}")
        elif self.generator is not None:
            x = torch.randn(shape, generator=self.generator, device=self.generator.device)
        else:
            x = torch.randn(shape, device=device)
        self.count += 1
        return to_device(x, device, torch.float32)

    def randint(
        self, high: int, shape: tuple[int, ...], device: torch.device | str | None = None
    ) -> Tensor:
        """Uniform integers in [0, high) (int64) of ``shape`` on ``device``."""
        shape = tuple(int(s) for s in shape)
        if self._it is not None:
            x = self._next_replayed(shape, "randint")
        elif self.generator is not None:
            x = torch.randint(0, high, shape, generator=self.generator,
                              device=self.generator.device)
        else:
            x = torch.randint(0, high, shape, device=device)
        self.count += 1
        return to_device(x, device, torch.long)


# --- training-time noising (docs/model.md "Training forward") --------------------------------


def extract(buf: Tensor, t: Tensor, ndim: int) -> Tensor:
    """buf[t] reshaped to (B, 1, ..., 1) with ``ndim`` dims (stays float64)."""
    return buf.to(t.device).gather(-1, t).reshape(t.shape[0], *((1,) * (ndim - 1)))


def q_sample(
    x0: Tensor, t: Tensor, noise: Tensor, schedule: Mapping[str, Tensor],
    scale: float = 1.0, clamp: float = 1.1,
) -> Tensor:
    """Noisy variable sqrt(ᾱ_t)·x0·scale + sqrt(1−ᾱ_t)·ε, clamped to ±clamp·scale, /scale.

    x0 (B, ...) float32, t (B,) int64, noise like x0 -> float32 (B, ...); maths in float64.
    """
    a = extract(schedule["sqrt_alphas_cumprod"], t, x0.dim())
    s = extract(schedule["sqrt_one_minus_alphas_cumprod"], t, x0.dim())
    x = a * (x0 * scale) + s * noise
    x = torch.clamp(x, min=-clamp * scale, max=clamp * scale) / scale
    return x.float()


def noise_bone_slots(
    slot_dirs: Tensor, slot_lens: Tensor, schedule: Mapping[str, Tensor], draws: RandomDraws,
    timesteps: int, scale: float = 1.0, clamp: float = 1.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Noise clean slot directions (B,F,J,3) and lengths (B,F,J,1) with one t per clip.

    Draw order per clip (reference): randint t (1,), randn directions (F,J,3), randn lengths
    (F,J,1). Returns t (B,), noisy directions (B,F,J,3), noisy lengths (B,F,J,1), float32.
    """
    device = slot_dirs.device
    ts, eds, els = [], [], []
    for _ in range(slot_dirs.shape[0]):
        ts.append(draws.randint(timesteps, (1,), device))
        eds.append(draws.randn(tuple(slot_dirs.shape[1:]), device))
        els.append(draws.randn(tuple(slot_lens.shape[1:]), device))
    t = torch.cat(ts)
    d = q_sample(slot_dirs, t, torch.stack(eds), schedule, scale, clamp)
    ln = q_sample(slot_lens, t, torch.stack(els), schedule, scale, clamp)
    return t, d, ln


__all__ = [
    "SCHEDULE_BUFFERS",
    "NoiseSpec",
    "RandomDraws",
    "cosine_betas",
    "cosine_schedule",
    "ddim_time_pairs",
    "extract",
    "noise_bone_slots",
    "q_sample",
]
