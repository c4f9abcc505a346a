"""DDIM sampling of bone slots with flip test-time augmentation inside every step
(docs/model.md "The sampler").

H hypotheses are H independent noise draws batched along the H axis; the flipped pass is
concatenated along the batch axis, so each DDIM step is ONE denoiser call on 2·B clips.

3DHP slot bug (docs/model.md "Quirks: 3DHP slot mismatch"), reproduced on purpose: the reference
computes the noise implied by the prediction from slots ``1:17`` of the noisy state for *every*
dataset, while 3DHP stores its bones in slots 0..13, 15, 16 (root 14). The update writes the new
state into the skeleton's bone slots. For Human3.6M both coincide (bones in slots 1..16); for 3DHP
the implied noise mixes in the pure-noise root slot and misaligns bones 0..13 by one slot. Pass
``implied_noise_slots=None`` to use the skeleton's bone slots (the corrected behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ddhpose.model.diffusion import RandomDraws, ddim_time_pairs
from ddhpose.skeleton import Skeleton, flip_joints, joints_to_bones, swap_left_right

# (x2d (B,F,J,2), directions (B,H,F,J,3), lengths (B,H,F,J,1), t (B,)) -> x̂0 (B,H,F,J,3) metres
DenoiseFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

REFERENCE_NOISE_SLOTS = tuple(range(1, 17))


def _index(slots: Sequence[int], device: torch.device, skel: Skeleton) -> Tensor | slice:
    """A slice when ``slots`` is contiguous (a cheap view), else an index tensor on ``device``
    (the skeleton's cached one for its own bone slots)."""
    s = list(slots)
    if s == list(range(s[0], s[0] + len(s))):
        return slice(s[0], s[0] + len(s))
    if tuple(s) == skel.bone_slots:
        return skel.index("bone_slots", device)
    return torch.as_tensor(s, device=device)


def predict_with_flip(
    denoise: DenoiseFn, x2d: Tensor, x2d_flip: Tensor, dirs: Tensor, lens: Tensor, t: Tensor,
    skel: Skeleton, scale: float = 1.0, clamp: float = 1.1,
) -> Tensor:
    """Flip-averaged prediction ŷ (B,H,F,J,3) from the current noisy state, one denoiser call.

    Inputs are clamped to ±clamp·scale and divided by scale; the flipped copy negates x of the
    directions and swaps left/right slots; its output is un-flipped before averaging.
    """
    d_in = torch.clamp(dirs, min=-clamp * scale, max=clamp * scale) / scale
    l_in = torch.clamp(lens, min=-clamp * scale, max=clamp * scale) / scale
    d_f = flip_joints(d_in, skel)
    l_f = swap_left_right(l_in, skel)
    b = x2d.shape[0]
    y = denoise(
        torch.cat((x2d, x2d_flip)), torch.cat((d_in, d_f)), torch.cat((l_in, l_f)),
        torch.cat((t, t)),
    )
    y, yf = y[:b], y[b:]
    return (y + flip_joints(yf, skel)) / 2


def ddim_sample(
    denoise: DenoiseFn,
    x2d: Tensor,
    x2d_flip: Tensor,
    schedule: Mapping[str, Tensor],
    skel: Skeleton,
    *,
    hypotheses: int = 1,
    steps: int = 1,
    draws: RandomDraws | None = None,
    eta: float = 1.0,
    scale: float = 1.0,
    clamp: float = 1.1,
    implied_noise_slots: Sequence[int] | None = REFERENCE_NOISE_SLOTS,
) -> Tensor:
    """Run K DDIM steps for H hypotheses and return every step's clamped x̂0.

    Args:
        denoise: the denoiser in its evaluation layout (:data:`DenoiseFn`).
        x2d, x2d_flip: (B, F, J, 2) normalised 2D input and its mirrored copy.
        schedule: float64 buffers ``alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
            ``sqrt_recipm1_alphas_cumprod`` (T,).
        draws: random source. Draw order: initial directions (B,H,F,J,3), initial lengths
            (B,H,F,J,1), then per non-final step direction noise (B,H,F,16,3) and length noise
            (B,H,F,16,1).
        implied_noise_slots: slots read for the implied noise; the reference's ``1..16`` by default
            (module docstring), ``None`` = the skeleton's bone slots.
    Returns:
        (B, K, H, F, J, 3) metres·scale, each clamped to ±clamp·scale, root NOT zeroed.
    """
    draws = draws or RandomDraws()
    abar = schedule["alphas_cumprod"]
    recip = schedule["sqrt_recip_alphas_cumprod"]
    recipm1 = schedule["sqrt_recipm1_alphas_cumprod"]
    b, f, j, _ = x2d.shape
    device = x2d.device
    bone_idx = _index(skel.bone_slots, device, skel)
    noise_idx = _index(implied_noise_slots or skel.bone_slots, device, skel)
    nb = skel.num_bones

    # clone: the state is updated in place and a replayed draw must stay untouched
    dirs = draws.randn((b, hypotheses, f, j, 3), device).clone()
    lens = draws.randn((b, hypotheses, f, j, 1), device).clone()
    preds = []
    for t_now, t_next in ddim_time_pairs(abar.shape[0], steps):
        tc = torch.full((b,), t_now, dtype=torch.long, device=device)
        y = predict_with_flip(denoise, x2d, x2d_flip, dirs, lens, tc, skel, scale, clamp)
        d_hat, l_hat = joints_to_bones(y, skel)
        d0 = torch.clamp(d_hat * scale, min=-clamp * scale, max=clamp * scale)
        l0 = torch.clamp(l_hat * scale, min=-clamp * scale, max=clamp * scale)
        # implied noise, float64 (schedule values are float64): (B,H,F,16,·)
        r, rm1 = recip[t_now].to(device), recipm1[t_now].to(device)
        eps_d = (r * dirs[..., noise_idx, :].double() - d0) / rm1
        eps_l = (r * lens[..., noise_idx, :].double() - l0) / rm1
        x0 = torch.clamp(y * scale, min=-clamp * scale, max=clamp * scale)
        preds.append(x0)
        if t_next < 0:
            continue
        d0n, l0n = joints_to_bones(x0, skel)
        alpha, alpha_next = abar[t_now].to(device), abar[t_next].to(device)
        sigma = eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        c = (1 - alpha_next - sigma**2).sqrt()
        nd = draws.randn((b, hypotheses, f, nb, 3), device)
        nl = draws.randn((b, hypotheses, f, nb, 1), device)
        # float32·scalar, float64·c, float32·scalar -> float64 sum, stored as float32 (as reference)
        dirs[..., bone_idx, :] = (d0n * alpha_next.sqrt() + c * eps_d + sigma * nd).float()
        lens[..., bone_idx, :] = (l0n * alpha_next.sqrt() + c * eps_l + sigma * nl).float()
    return torch.stack(preds, dim=1)


__all__ = ["REFERENCE_NOISE_SLOTS", "DenoiseFn", "ddim_sample", "predict_with_flip"]
