"""Per-action motion recipes: the 15 Human3.6M actions plus four extra MPI-INF-3DHP activities.

Each recipe maps a :class:`~ddhpose.synthetic.motion.Context` to body channels (see
:mod:`ddhpose.synthetic.body` for the conventions). Hand targets are relative to the
shoulder, in the chest frame, in units of the subject's arm length, with x > 0 pointing away
from the midline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ddhpose.synthetic.body import Body, Channels, pose32
from ddhpose.synthetic.motion import (
    FPS,
    Context,
    Style,
    add_idle_variation,
    apply_poses,
    locomotion,
    make_context,
    mix,
    schedule,
)

# Hand targets (arm lengths, shoulder-relative, chest frame, x outwards).
MOUTH = (-0.30, 0.30, 0.14)
EAR = (-0.12, 0.22, 0.32)
CAMERA = (-0.30, 0.52, 0.17)
POCKET = (0.14, 0.0, -0.74)
ON_HIP = (0.22, -0.05, -0.50)
CROSSED = (-0.55, 0.40, -0.35)
BEHIND_BACK = (-0.22, -0.38, -0.72)
HANDSHAKE = (-0.05, 0.82, -0.32)
POINT = (0.35, 0.85, 0.25)
TABLE = (-0.05, 0.62, -0.42)
ON_THIGH = (0.0, 0.55, -0.70)
GESTURE = (0.0, 0.55, -0.45)
REACH_DOWN = (0.05, 0.62, -0.75)
OVERHEAD = (0.25, 0.10, 0.95)
SIDE_RAISE = (0.96, 0.05, 0.05)
BEHIND_HEAD = (-0.22, -0.05, 0.38)
FORWARD = (-0.05, 0.95, 0.0)

SIT = {
    "hip_flex_l": 1.45, "hip_flex_r": 1.45, "knee_l": 1.45, "knee_r": 1.45, "ankle_l": 0.05,
    "ankle_r": 0.05, "hip_abd_l": 0.12, "hip_abd_r": 0.12, "pelvis_tilt": -0.15,
    "spine_flex": 0.25,
}
SQUAT = {
    "hip_flex_l": 1.9, "hip_flex_r": 1.9, "knee_l": 2.2, "knee_r": 2.2, "ankle_l": 0.4,
    "ankle_r": 0.4, "hip_abd_l": 0.3, "hip_abd_r": 0.3, "spine_flex": 0.6,
    "hand_l": (0.0, 0.75, -0.35), "hand_r": (0.0, 0.75, -0.35),
}
FLOOR_SIT = {
    "hip_flex_l": 1.45, "hip_flex_r": 1.45, "knee_l": 0.35, "knee_r": 0.2, "ankle_l": -0.3,
    "ankle_r": -0.3, "hip_abd_l": 0.2, "hip_abd_r": 0.15, "hip_rot_l": 0.3, "hip_rot_r": 0.3,
    "pelvis_tilt": -0.25, "spine_flex": 0.45, "neck_flex": 0.2,
    "hand_l": (0.25, -0.15, -0.95), "hand_r": (0.25, -0.15, -0.95),
}
STAND: dict[str, object] = {}


def _other(hand: str) -> str:
    return "l" if hand == "r" else "r"


def _hand(ctx: Context, ch: Channels, side: str, target: tuple[float, ...], env: np.ndarray,
          jitter: float = 0.03, pole: tuple[float, ...] | None = None) -> None:
    value = np.asarray(target) + ctx.noise(jitter, 0.7, dims=3)
    mix(ch, f"hand_{side}", value, env)
    if pole is not None:
        mix(ch, f"pole_{side}", pole, env)


def _sit(ch: Channels, env: np.ndarray, pose: dict[str, object] = SIT) -> None:
    for key, value in pose.items():
        mix(ch, key, value, env)


def _speed(ctx: Context, level: float, gap_s: float, dur_s: tuple[float, float]) -> np.ndarray:
    return level * ctx.events(gap_s, dur_s, ramp_s=0.8)


def walking(ctx: Context) -> Channels:
    speed = 1.0 + ctx.noise(0.06, 0.2)
    return add_idle_variation(ctx, locomotion(ctx, speed, radius=1.2), 0.5)


def walk_dog(ctx: Context) -> Channels:
    stops = ctx.events(5.0, (0.8, 2.0), ramp_s=0.8)
    speed = np.clip(0.9 + ctx.noise(0.12, 0.3), 0.5, 1.1) * (1 - stops)
    ch = locomotion(ctx, speed, radius=1.2)
    leash = ctx.style.hand
    _hand(ctx, ch, leash, (0.12, 0.55, -0.62), np.ones(ctx.n), jitter=0.08)
    ch["spine_flex"] += 0.12
    ch["neck_flex"] += 0.25 * ctx.events(3.0, (1.0, 2.5))
    ch["neck_yaw"] += 0.4 * stops * np.sign(ctx.rng.normal())
    return add_idle_variation(ctx, ch, 0.8)


def walk_together(ctx: Context) -> Channels:
    speed = 0.8 + ctx.noise(0.08, 0.2)
    ch = locomotion(ctx, speed, radius=1.2, arm_swing=0.5)
    partner = 1.0 if ctx.rng.random() < 0.5 else -1.0
    look = ctx.events(2.0, (1.0, 3.0))
    ch["neck_yaw"] += partner * (0.15 + 0.45 * look)
    ch["spine_twist"] += partner * 0.12 * look
    return add_idle_variation(ctx, ch, 0.6)


def directions(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.7, 3.0, (1.5, 3.5)), radius=0.9)
    for side, rate in ((ctx.style.hand, 2.0), (_other(ctx.style.hand), 5.0)):
        env = ctx.events(rate, (1.2, 2.8))
        _hand(ctx, ch, side, POINT, env, jitter=0.08)
        ch["neck_yaw"] += (0.35 if side == "l" else -0.35) * env
    return add_idle_variation(ctx, ch)


def discussion(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.4, 8.0, (1.0, 2.5)), radius=0.8, turn_std=0.8)
    talk = np.clip(0.3 + ctx.events(1.5, (2.0, 5.0)), 0, 1)
    for side in "lr":
        target = np.asarray(GESTURE) + ctx.noise(0.14, 1.0, dims=3)
        mix(ch, f"hand_{side}", target, talk * (1.0 if side == ctx.style.hand else 0.7))
    ch["spine_twist"] += ctx.noise(0.15, 0.3)
    ch["neck_yaw"] += ctx.noise(0.3, 0.3)
    return add_idle_variation(ctx, ch)


def greeting(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.8, 4.0, (1.5, 3.0)), radius=1.0)
    wave = ctx.events(3.0, (1.5, 3.0))
    shake = ctx.events(4.0, (1.5, 2.5)) * (1 - wave)
    h = ctx.style.hand
    wave_target = np.asarray((0.30, 0.12, 0.62)) + np.outer(
        np.sin(2 * np.pi * 2.0 * ctx.t), (0.18, 0.0, 0.03)
    )
    mix(ch, f"hand_{h}", wave_target, wave)
    shake_target = np.asarray(HANDSHAKE) + np.outer(np.sin(2 * np.pi * 2.5 * ctx.t), (0, 0, 0.06))
    mix(ch, f"hand_{h}", shake_target, shake)
    ch["spine_flex"] += 0.25 * shake
    ch["neck_flex"] += 0.15 * shake
    return add_idle_variation(ctx, ch)


def phoning(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.5, 4.0, (2.0, 4.0)), radius=1.0)
    on = np.clip(1.2 - ctx.events(8.0, (1.5, 3.0)), 0, 1)
    _hand(ctx, ch, ctx.style.hand, EAR, on, jitter=0.02)
    free = _other(ctx.style.hand)
    _hand(ctx, ch, free, POCKET, ctx.events(4.0, (3.0, 6.0)))
    _hand(ctx, ch, free, GESTURE, ctx.events(4.0, (1.0, 2.0)), jitter=0.1)
    ch["neck_roll"] += 0.12 * on * (1 if ctx.style.hand == "r" else -1)
    return add_idle_variation(ctx, ch)


def smoking(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.4, 6.0, (1.5, 3.0)), radius=0.9)
    puff = ctx.events(4.0, (1.2, 2.2), ramp_s=0.8)
    _hand(ctx, ch, ctx.style.hand, MOUTH, puff, jitter=0.02)
    _hand(ctx, ch, _other(ctx.style.hand), CROSSED, ctx.events(3.0, (3.0, 8.0)))
    ch["neck_flex"] -= 0.1 * puff
    return add_idle_variation(ctx, ch)


def photo(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.6, 3.5, (1.5, 3.0)), radius=1.0)
    shoot = ctx.events(2.5, (1.5, 3.5))
    for side in "lr":
        _hand(ctx, ch, side, CAMERA, shoot, jitter=0.015)
    crouch = ctx.events(6.0, (2.0, 3.5), ramp_s=0.8) * shoot
    _sit(ch, crouch, {"hip_flex_l": 1.0, "hip_flex_r": 0.9, "knee_l": 1.3, "knee_r": 1.2,
                      "ankle_l": 0.3, "ankle_r": 0.3, "spine_flex": 0.3})
    ch["neck_flex"] -= 0.1 * shoot
    return add_idle_variation(ctx, ch)


POSES: list[dict[str, object]] = [
    STAND,
    {"hand_l": ON_HIP, "hand_r": ON_HIP},
    {"hand_l": OVERHEAD, "hand_r": OVERHEAD, "spine_flex": -0.15, "neck_flex": -0.2},
    {"hand_l": SIDE_RAISE, "hand_r": SIDE_RAISE},
    {"hip_flex_r": 0.9, "knee_r": 1.0, "hip_flex_l": -0.25, "knee_l": 0.15, "spine_flex": 0.1,
     "hand_r": ON_HIP, "hand_l": ON_HIP},
    {"hand_l": CROSSED, "hand_r": CROSSED, "hip_abd_l": 0.2, "hip_abd_r": 0.2},
    {"hand_r": OVERHEAD, "hand_l": ON_HIP, "spine_bend": -0.3},
    {"hand_l": BEHIND_HEAD, "hand_r": BEHIND_HEAD},
    {"hip_abd_l": 0.35, "hip_abd_r": 0.35, "hand_r": POINT, "hand_l": POINT, "neck_yaw": 0.3},
]


def posing(ctx: Context) -> Channels:
    ch = locomotion(ctx, np.zeros(ctx.n), radius=0.7, turn_std=0.9)
    order = [0, *ctx.rng.integers(1, len(POSES), size=int(ctx.t[-1] / 2) + 2)]
    w = schedule(ctx.rng, ctx.t, (1.5, 3.5), 1.0, order)
    return add_idle_variation(ctx, apply_poses(ch, w, order, POSES), 0.6)


def purchases(ctx: Context) -> Channels:
    speed = _speed(ctx, 0.8, 2.5, (1.5, 4.0))
    ch = locomotion(ctx, speed, radius=1.0)
    bend = ctx.events(4.0, (1.5, 2.5), ramp_s=0.8) * (1 - speed)
    _sit(ch, bend, {"hip_flex_l": 0.7, "hip_flex_r": 0.8, "knee_l": 0.7, "knee_r": 0.8,
                    "ankle_l": 0.2, "ankle_r": 0.2, "spine_flex": 1.0})
    _hand(ctx, ch, ctx.style.hand, REACH_DOWN, bend, jitter=0.06)
    carry = ctx.events(3.0, (3.0, 6.0)) * (1 - bend)
    for side in "lr":
        _hand(ctx, ch, side, (-0.12, 0.55, -0.5), carry, jitter=0.02)
    return add_idle_variation(ctx, ch)


def sitting(ctx: Context) -> Channels:
    ch = locomotion(ctx, np.zeros(ctx.n), radius=0.6, turn_std=0.2)
    _sit(ch, np.ones(ctx.n))
    lean = ctx.noise(0.25, 0.1)
    ch["spine_flex"] += lean
    cross = ctx.events(6.0, (3.0, 6.0), ramp_s=1.0)
    leg = ctx.style.hand
    _sit(ch, cross, {f"hip_flex_{leg}": 1.75, f"hip_abd_{leg}": -0.25, f"knee_{leg}": 1.3,
                     f"hip_rot_{leg}": 0.5})
    for side in "lr":
        _hand(ctx, ch, side, ON_THIGH, np.ones(ctx.n), jitter=0.04)
    _hand(ctx, ch, ctx.style.hand, GESTURE, ctx.events(3.0, (1.5, 3.0)), jitter=0.12)
    _hand(ctx, ch, ctx.style.hand, EAR, ctx.events(12.0, (2.0, 4.0)))
    return add_idle_variation(ctx, ch, 0.8)


def eating(ctx: Context) -> Channels:
    ch = locomotion(ctx, np.zeros(ctx.n), radius=0.6, turn_std=0.2)
    _sit(ch, np.ones(ctx.n))
    ch["spine_flex"] += 0.15 + ctx.noise(0.1, 0.2)
    for side in "lr":
        _hand(ctx, ch, side, TABLE, np.ones(ctx.n), jitter=0.05)
    bite = ctx.events(2.0, (0.8, 1.6), ramp_s=0.7)
    _hand(ctx, ch, ctx.style.hand, MOUTH, bite, jitter=0.02)
    ch["neck_flex"] += 0.2 - 0.2 * bite
    return add_idle_variation(ctx, ch, 0.7)


def sitting_down(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.5, 6.0, (1.5, 2.5)), radius=0.8)
    cycle = [0, 1, 2, 2, 1] * (int(ctx.t[-1] / 10) + 2)
    cycle = cycle[ctx.rng.integers(0, 3):]
    w = schedule(ctx.rng, ctx.t, (1.0, 3.0), 1.3, cycle)
    out = apply_poses(ch, w, cycle, [STAND, SQUAT, FLOOR_SIT])
    return add_idle_variation(ctx, out, 0.6)


def waiting(ctx: Context) -> Channels:
    ch = locomotion(ctx, _speed(ctx, 0.4, 8.0, (1.5, 3.0)), radius=0.8, turn_std=0.9)
    arm_poses: list[dict[str, object]] = [
        STAND,
        {"hand_l": CROSSED, "hand_r": CROSSED},
        {"hand_l": BEHIND_BACK, "hand_r": BEHIND_BACK},
        {"hand_l": POCKET, "hand_r": POCKET},
        {"hand_l": ON_HIP, "hand_r": ON_HIP},
    ]
    order = list(ctx.rng.integers(0, len(arm_poses), size=int(ctx.t[-1] / 3) + 2))
    w = schedule(ctx.rng, ctx.t, (2.0, 5.0), 1.0, order)
    ch = apply_poses(ch, w, order, arm_poses)
    ch["neck_yaw"] += ctx.noise(0.4, 0.15)
    return add_idle_variation(ctx, ch, 1.2)


# --- extra MPI-INF-3DHP activities ----------------------------------------------------------------


def exercise(ctx: Context) -> Channels:
    ch = locomotion(ctx, np.zeros(ctx.n), radius=0.4, turn_std=0.2)
    squat = 0.5 - 0.5 * np.cos(2 * np.pi * 0.4 * ctx.t + ctx.rng.uniform(0, 6))
    _sit(ch, 0.7 * squat, SQUAT)
    jacks = 0.5 - 0.5 * np.cos(2 * np.pi * 0.7 * ctx.t)
    jack_on = ctx.events(5.0, (3.0, 6.0), ramp_s=1.0)
    for side in "lr":
        mix(ch, f"hand_{side}", OVERHEAD, jacks * jack_on)
        mix(ch, f"hip_abd_{side}", 0.35, jacks * jack_on)
    return add_idle_variation(ctx, ch, 0.6)


def floor_sit(ctx: Context) -> Channels:
    ch = locomotion(ctx, np.zeros(ctx.n), radius=0.4, turn_std=0.4)
    _sit(ch, np.ones(ctx.n), FLOOR_SIT)
    _hand(ctx, ch, ctx.style.hand, FORWARD, ctx.events(3.0, (1.5, 3.0)), jitter=0.1)
    ch["spine_flex"] += ctx.noise(0.2, 0.15)
    return add_idle_variation(ctx, ch, 0.8)


def sports(ctx: Context) -> Channels:
    ch = locomotion(ctx, 1.25 + ctx.noise(0.05, 0.3), radius=0.8, arm_swing=0.6)
    for side in "lr":
        mix(ch, f"hand_{side}", (0.05, 0.45, -0.45), np.full(ctx.n, 0.6))
    ch["spine_flex"] += 0.15
    return add_idle_variation(ctx, ch, 0.6)


def reaching(ctx: Context) -> Channels:
    ch = purchases(ctx)
    up = ctx.events(4.0, (1.0, 2.0))
    _hand(ctx, ch, _other(ctx.style.hand), OVERHEAD, up)
    return ch


RECIPES: dict[str, Callable[[Context], Channels]] = {
    "Directions": directions, "Discussion": discussion, "Eating": eating, "Greeting": greeting,
    "Phoning": phoning, "Photo": photo, "Posing": posing, "Purchases": purchases,
    "Sitting": sitting, "SittingDown": sitting_down, "Smoking": smoking, "Waiting": waiting,
    "WalkDog": walk_dog, "Walking": walking, "WalkTogether": walk_together,
    "Exercise": exercise, "FloorSit": floor_sit, "Sports": sports, "Reaching": reaching,
}


def generate_channels(action: str, ctx: Context) -> Channels:
    """Channels of one action (a Human3.6M action name or a 3DHP activity recipe)."""
    if action not in RECIPES:
        raise KeyError(f"unknown synthetic action '{action}' (known: {', '.join(RECIPES)})")
    return RECIPES[action](ctx)


def generate_motion(
    action: str, body: Body, style: Style, rng: np.random.Generator, n_frames: int,
    fps: int = FPS,
) -> np.ndarray:
    """One synthetic sequence of ``action``: raw 32-joint poses (N, 32, 3) float64 metres."""
    ctx = make_context(rng, body, style, n_frames, fps)
    return pose32(generate_channels(action, ctx), body)
