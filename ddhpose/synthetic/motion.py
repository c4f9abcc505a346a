"""Procedural motion: smooth signals, locomotion and key-pose schedules that drive :mod:`body`.

Every generator is deterministic given its ``numpy.random.Generator``. Time is in seconds, the
frame rate is :data:`FPS` (50 Hz, as Human3.6M). Per-action recipes live in
:mod:`ddhpose.synthetic.actions`, with :func:`ddhpose.synthetic.actions.generate_motion`, the
entry point that returns raw 32-joint Human3.6M poses, (N, 32, 3) metres, world frame with z up
and the feet on the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ddhpose.synthetic.body import Body, Channels, neutral_channels

FPS = 50


@dataclass(frozen=True)
class Style:
    """A subject's movement habits."""

    gait_hz: float  # stride frequency at full walking speed (one left + one right step)
    arm_swing: float  # arm swing amplitude factor
    hand: str  # dominant hand, "r" or "l"
    lean: float  # habitual forward trunk lean, radians


def sample_style(rng: np.random.Generator) -> Style:
    return Style(
        gait_hz=float(rng.uniform(0.82, 0.95)),
        arm_swing=float(rng.uniform(0.7, 1.2)),
        hand="r" if rng.random() < 0.8 else "l",
        lean=float(rng.uniform(0.0, 0.1)),
    )


@dataclass
class Context:
    """What an action recipe needs: time axis, random stream, subject and placement."""

    rng: np.random.Generator
    t: np.ndarray  # (N,) seconds
    body: Body
    style: Style
    centre: np.ndarray  # (2,) metres, the spot the person moves around
    heading0: float  # radians
    fps: int = FPS
    path_scale: float = 1.0  # scales the radius of walking paths (small capture areas)

    @property
    def n(self) -> int:
        return len(self.t)

    def noise(self, std: float, cutoff_hz: float, dims: int = 0) -> np.ndarray:
        """Smoothed Gaussian noise: (N,) or (N, dims)."""
        if dims:
            return np.stack([self.noise(std, cutoff_hz) for _ in range(dims)], axis=-1)
        return smooth_noise(self.rng, self.n, std, cutoff_hz, self.fps)

    def events(self, gap_s: float, dur_s: tuple[float, float], ramp_s: float = 0.8) -> np.ndarray:
        return events(self.rng, self.t, gap_s, dur_s, ramp_s)


# --- signals --------------------------------------------------------------------------------------


def smooth_noise(
    rng: np.random.Generator, n: int, std: float, cutoff_hz: float, fps: int = FPS
) -> np.ndarray:
    """Gaussian-filtered white noise, (n,), with standard deviation ``std``, ~``cutoff_hz`` wide."""
    sigma = fps / (2 * np.pi * cutoff_hz)
    pad = int(4 * sigma) + 1
    white = rng.standard_normal(n + 2 * pad)
    smooth = gaussian_filter1d(white, sigma, mode="wrap")[pad : pad + n]
    return smooth * std * np.sqrt(2 * sigma * np.sqrt(np.pi))


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 for x <= 0, 1 for x >= 1, C1-smooth in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def events(
    rng: np.random.Generator,
    t: np.ndarray,
    gap_s: float,
    dur_s: tuple[float, float],
    ramp_s: float = 0.5,
) -> np.ndarray:
    """An on/off envelope in [0, 1], (N,): bouts of random length separated by random gaps."""
    env = np.zeros_like(t)
    start = t[0] + rng.exponential(gap_s) - gap_s / 2
    while start < t[-1]:
        dur = rng.uniform(*dur_s)
        bout = smoothstep((t - start) / ramp_s) * smoothstep((start + dur - t) / ramp_s)
        env = np.maximum(env, bout)
        start += dur + ramp_s + rng.exponential(gap_s)
    return env


def schedule(
    rng: np.random.Generator, t: np.ndarray, hold_s: tuple[float, float], trans_s: float,
    order: Sequence[int],
) -> np.ndarray:
    """Weights (N, len(order)) that hold segment i for a random time, then cross-fade to i+1.

    Rows sum to 1; the last segment holds until the end. Segment i is meant to show the pose
    ``order[i]``; use :func:`apply_poses` to blend them.
    """
    boundaries = []
    edge = t[0] + rng.uniform(*hold_s) * rng.uniform(0.3, 1.0)
    for _ in range(len(order) - 1):
        boundaries.append(edge)
        edge += trans_s + rng.uniform(*hold_s)
    level = np.zeros_like(t)
    for b in boundaries:
        level += smoothstep((t - b) / trans_s)
    idx = np.arange(len(order))
    return np.clip(1 - np.abs(level[:, None] - idx[None, :]), 0.0, 1.0)


def blend(
    key: str, values: Sequence[object], weights: Sequence[np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    """Per-frame weighted blend of one channel of ``shape`` (N,) or (N, 3); weights (N,) each.

    Hand targets blend their direction and reach separately, so a hand moving between two
    targets sweeps around the shoulder instead of passing through it.
    """
    n = shape[0]
    vals = [np.broadcast_to(np.asarray(v, dtype=float), shape) for v in values]
    if not key.startswith("hand_"):
        acc = np.zeros(vals[0].shape)
        for v, w in zip(vals, weights, strict=True):
            acc = acc + w.reshape(-1, *([1] * (v.ndim - 1))) * v
        return acc
    reach = np.zeros((n, 1))
    direction = np.zeros((n, 3))
    total = np.zeros((n, 1))
    for v, w in zip(vals, weights, strict=True):
        w = w[:, None]
        r = np.linalg.norm(v, axis=-1, keepdims=True)
        reach += w * r
        frac = np.where(total + w > 0, w / np.maximum(total + w, 1e-12), 0.0)
        direction = np.where(total > 0, _slerp(direction, v / np.maximum(r, 1e-9), frac), v / r)
        total += w
    return reach * direction


def _slerp(a: np.ndarray, b: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Spherical interpolation between unit vectors (N, 3) with fractions (N, 1)."""
    cos = np.clip((a * b).sum(-1, keepdims=True), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    small = sin < 1e-4
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1 - frac, np.sin((1 - frac) * omega) / safe)
    wb = np.where(small, frac, np.sin(frac * omega) / safe)
    out = wa * a + wb * b
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-9)


def apply_poses(
    ch: Channels, weights: np.ndarray, order: Sequence[int], poses: Sequence[dict[str, object]]
) -> Channels:
    """Blend key poses into channels: channel = sum_i w_i * pose[order[i]].get(channel, ch)."""
    out = dict(ch)
    keys = {k for p in poses for k in p}
    for key in keys:
        values = [poses[p_idx].get(key, ch[key]) for p_idx in order]
        out[key] = blend(key, values, [weights[:, i] for i in range(len(order))], ch[key].shape)
    return out


def mix(ch: Channels, key: str, value: object, weight: np.ndarray) -> None:
    """In place: ch[key] = (1 - w) * ch[key] + w * value (value constant or per frame)."""
    ch[key] = blend(key, [ch[key], value], [1 - weight, weight], ch[key].shape)


# --- locomotion -----------------------------------------------------------------------------------


def _bump(x: np.ndarray, width: float = 1.0) -> np.ndarray:
    """A smooth periodic bump: 1 at x = 0 (mod 2 pi), 0 beyond +-pi/2 * width."""
    wrapped = np.angle(np.exp(1j * x)) / width
    return np.where(np.abs(wrapped) < np.pi / 2, np.cos(wrapped) ** 2, 0.0)


def locomotion(
    ctx: Context, speed: np.ndarray, radius: float = 1.3, arm_swing: float = 1.0,
    turn_std: float = 0.6,
) -> Channels:
    """Walk along a circle around ``ctx.centre`` with a gait scaled by ``speed`` (N,) in [0, 1.3].

    Speed 0 is relaxed standing (turning in place now and then); 1 is a normal walk with arm
    swing; travel speed matches the stride so the stance foot barely slides.
    """
    n, fps = ctx.n, ctx.fps
    ch = neutral_channels(n)
    s = np.clip(speed, 0.0, 1.4)
    cadence = ctx.style.gait_hz * (0.7 + 0.3 * np.minimum(s, 1.0))
    cadence = cadence * (1 + 0.15 * np.maximum(s - 1, 0))  # running: faster steps
    phase = ctx.rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(cadence) / fps
    amp, offset = 0.28 * s, 0.08 * s
    for side, ph in (("r", phase), ("l", phase + np.pi)):
        hip = offset + amp * np.sin(ph)
        knee = s * (0.7 * _bump(ph + np.pi / 5, 1.3) + 0.12 * _bump(ph - 2.2, 0.6))
        # keep the foot level with the floor, then add heel strike, push-off and toe clearance
        ankle = knee - hip + s * (
            0.2 * _bump(ph - np.pi / 2, 0.6) - 0.3 * _bump(ph + np.pi / 2 + 0.3, 0.5)
            + 0.08 * _bump(ph + np.pi / 5)
        )
        ch[f"hip_flex_{side}"] += hip
        ch[f"knee_{side}"] += knee
        ch[f"ankle_{side}"] += ankle
        swing = -0.3 * ctx.style.arm_swing * arm_swing * np.minimum(s, 1.2) * np.sin(ph)
        reach = 0.975 - 0.1 * np.maximum(swing, 0)  # the elbow bends more on the forward swing
        hand = np.stack([np.full_like(swing, 0.1), np.sin(swing), -np.cos(swing)], axis=-1)
        mix(ch, f"hand_{side}", reach[:, None] * hand, np.minimum(s, 1.0))
    ch["pelvis_yaw"] += 0.1 * s * np.sin(phase)
    ch["spine_twist"] += -0.16 * s * np.sin(phase)
    ch["pelvis_roll"] += 0.04 * s * np.cos(2 * phase)
    ch["spine_flex"] += 0.05 * s + ctx.style.lean

    leg = ctx.body.lengths["thigh"] + ctx.body.lengths["shin"] + 0.08 * ctx.body.scale
    stride = leg * (np.sin(offset + amp) - np.sin(offset - amp)) * 0.95
    velocity = 2 * cadence * stride  # m/s along the path
    direction = 1.0 if ctx.rng.random() < 0.5 else -1.0
    radius = radius * ctx.path_scale
    theta = ctx.heading0 + direction * np.cumsum(velocity / radius) / fps
    ch["root_x"] = ctx.centre[0] + radius * np.cos(theta)
    ch["root_y"] = ctx.centre[1] + radius * np.sin(theta)
    path_heading = theta + (0.0 if direction > 0 else np.pi)
    idle = 1 - np.clip(s, 0, 1)
    ch["heading"] = path_heading + idle * ctx.noise(turn_std, 0.08)
    return ch


def add_idle_variation(ctx: Context, ch: Channels, amount: float = 1.0) -> Channels:
    """Small smooth fluctuations on every joint angle and hand target, plus weight shifting."""
    out = dict(ch)
    for key in ch:
        if key.startswith(("root_", "heading")):
            continue
        if key.startswith(("hand_", "pole_")):
            out[key] = ch[key] + ctx.noise(0.025 * amount, 0.6, dims=3)
        else:
            out[key] = ch[key] + ctx.noise(0.03 * amount, 0.5)
    shift = ctx.noise(0.5 * amount, 0.15)
    out["pelvis_roll"] = out["pelvis_roll"] + 0.04 * np.tanh(shift)
    for side, sign in (("r", 1.0), ("l", -1.0)):
        out[f"hip_abd_{side}"] = out[f"hip_abd_{side}"] + 0.04 * sign * np.tanh(shift)
        out[f"knee_{side}"] = out[f"knee_{side}"] + 0.08 * np.maximum(-sign * np.tanh(shift), 0)
    out["neck_yaw"] = out["neck_yaw"] + ctx.noise(0.25 * amount, 0.2)
    return out


# --- entry points ---------------------------------------------------------------------------------


def make_context(
    rng: np.random.Generator, body: Body, style: Style, n_frames: int, fps: int = FPS,
    area_radius: float = 0.4, path_scale: float = 1.0,
) -> Context:
    """A context whose centre lies within ``area_radius`` metres of the world origin."""
    r = area_radius * np.sqrt(rng.random())
    a = rng.uniform(0, 2 * np.pi)
    return Context(
        rng=rng, t=np.arange(n_frames) / fps, body=body, style=style,
        centre=np.array([r * np.cos(a), r * np.sin(a)]), heading0=float(rng.uniform(-np.pi, np.pi)),
        fps=fps, path_scale=path_scale,
    )


def blend_channels(parts: Sequence[Channels], weights: np.ndarray) -> Channels:
    """Per-frame weighted sum of channel sets; ``weights`` (N, len(parts)) rows sum to 1."""
    columns = [weights[:, i] for i in range(len(parts))]
    return {
        key: blend(key, [p[key] for p in parts], columns, parts[0][key].shape) for key in parts[0]
    }
