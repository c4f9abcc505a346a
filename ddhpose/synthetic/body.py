"""A procedural human body: per-subject bone lengths and 32-joint Human3.6M forward kinematics.

World frame: metres, x/y on the floor, z up. A person with heading 0 faces +y (their right is +x).
A pose is described by *channels*: a dict of per-frame joint angles (radians, shape (N,)), hand
targets and elbow hints ((N, 3)), and the root's floor position and heading. :func:`pose32` turns
channels into the 32 raw Human3.6M mocap joints, (N, 32, 3) metres, with the feet on the floor.

Side conventions (both sides use the same signs, mirrored inside :func:`pose32`):
hip/shoulder abduction > 0 moves the limb outwards; hip rotation > 0 turns the toes outwards;
flexion > 0 moves a limb forwards; knee > 0 bends; ankle > 0 lifts the toes; ``hand_*`` and
``pole_*`` have x > 0 pointing away from the body midline. Trunk: ``spine_flex`` > 0 bends forwards,
``spine_bend`` > 0 leans to the right, ``*_twist``/``neck_yaw``/``heading`` > 0 turn to the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- raw H36M joint indices (see ddhpose.skeleton.H36M32_PARENTS) ---------------------------------
PELVIS, SPINE0, SPINE, THORAX, NOSE, HEAD = 0, 11, 12, 13, 14, 15
#        hip knee ankle toe toe_end
LEG = {"r": (1, 2, 3, 4, 5), "l": (6, 7, 8, 9, 10)}
#        collar shoulder elbow wrist thumb thumb_end hand hand_end
ARM = {"l": (16, 17, 18, 19, 20, 21, 22, 23), "r": (24, 25, 26, 27, 28, 29, 30, 31)}
SIDE_SIGN = {"r": 1.0, "l": -1.0}  # x direction of each side

# Target bone lengths (metres) near the Human3.6M average.
BONE_TARGETS_M: dict[str, float] = {
    "pelvis_hip": 0.13, "thigh": 0.45, "shin": 0.45, "pelvis_spine": 0.23, "spine_thorax": 0.25,
    "thorax_neck": 0.11, "neck_head": 0.11, "thorax_shoulder": 0.15, "upper_arm": 0.28,
    "forearm": 0.25, "foot": 0.14, "toe": 0.05, "hand": 0.08, "thumb": 0.04, "finger_tip": 0.02,
}
ANKLE_HEIGHT_M = 0.08  # ankle above the floor for a flat foot (scaled per subject)
TOE_HEIGHT_M = 0.02
SEAT_HEIGHT_M = 0.11  # pelvis (hip centre) above the floor when sitting on it

ANGLE_LIMITS: dict[str, tuple[float, float]] = {
    "hip_flex": (-0.5, 2.3), "hip_abd": (-0.4, 0.9), "hip_rot": (-0.6, 0.8), "knee": (0.0, 2.5),
    "ankle": (-0.7, 0.45), "pelvis_tilt": (-0.4, 0.5), "pelvis_roll": (-0.3, 0.3),
    "pelvis_yaw": (-0.6, 0.6), "spine_flex": (-0.5, 1.5), "spine_bend": (-0.6, 0.6),
    "spine_twist": (-0.9, 0.9), "neck_flex": (-0.7, 0.9), "neck_yaw": (-1.3, 1.3),
    "neck_roll": (-0.5, 0.5),
}
SCALAR_CHANNELS: tuple[str, ...] = (
    "root_x", "root_y", "heading", "pelvis_tilt", "pelvis_roll", "pelvis_yaw", "spine_flex",
    "spine_bend", "spine_twist", "neck_flex", "neck_yaw", "neck_roll",
    *(f"{n}_{s}" for s in "lr" for n in ("hip_flex", "hip_abd", "hip_rot", "knee", "ankle")),
)
VECTOR_CHANNELS: tuple[str, ...] = ("hand_l", "hand_r", "pole_l", "pole_r")

Channels = dict[str, np.ndarray]


@dataclass(frozen=True)
class Body:
    """One subject's bone lengths (metres, keys of :data:`BONE_TARGETS_M`) and overall scale."""

    lengths: dict[str, float]
    scale: float

    @property
    def arm_length(self) -> float:
        return self.lengths["upper_arm"] + self.lengths["forearm"]


def sample_body(rng: np.random.Generator) -> Body:
    """A subject: overall scale in [0.94, 1.06] times a per-bone factor within ±3 %."""
    scale = float(rng.uniform(0.94, 1.06))
    lengths = {}
    for name, target in BONE_TARGETS_M.items():
        factor = float(np.clip(rng.normal(1.0, 0.015), 0.97, 1.03))
        lengths[name] = target * scale * factor
    return Body(lengths=lengths, scale=scale)


def neutral_channels(n: int) -> Channels:
    """Relaxed standing at the origin facing +y: every channel for ``n`` frames."""
    ch: Channels = {name: np.zeros(n) for name in SCALAR_CHANNELS}
    for s in "lr":
        ch[f"hip_flex_{s}"] += 0.03
        ch[f"hip_abd_{s}"] += 0.04
        ch[f"hip_rot_{s}"] += 0.12
        ch[f"knee_{s}"] += 0.06
        ch[f"hand_{s}"] = np.tile([0.10, 0.04, -0.97], (n, 1))
        ch[f"pole_{s}"] = np.zeros((n, 3))  # added to body.elbow_hint
    ch["neck_flex"] += 0.1
    ch["spine_flex"] += 0.04
    return ch


def clip_to_limits(ch: Channels) -> Channels:
    """Clamp every angle channel to :data:`ANGLE_LIMITS` (anatomical ranges, radians)."""
    out = dict(ch)
    for name, value in ch.items():
        base = name[:-2] if name[-2:] in ("_l", "_r") else name
        if base in ANGLE_LIMITS:
            lo, hi = ANGLE_LIMITS[base]
            out[name] = np.clip(value, lo, hi)
    return out


# --- rotations ------------------------------------------------------------------------------------


def rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about a coordinate axis (0=x, 1=y, 2=z): (N,) radians -> (N, 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    m = np.zeros((*angle.shape, 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[..., axis, axis] = 1.0
    m[..., i, i] = c
    m[..., j, j] = c
    m[..., i, j] = -s
    m[..., j, i] = s
    return m


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _apply(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (3,) or (N, 3) vectors by (N, 3, 3) matrices -> (N, 3)."""
    return np.einsum("nij,...j->n...i", r, v) if v.ndim == 1 else np.einsum("nij,nj->ni", r, v)


def two_bone_ik(
    start: np.ndarray, target: np.ndarray, pole: np.ndarray, a: float, b: float
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic two-bone IK: joint positions (N, 3) of the middle and end joint.

    The end joint reaches ``target`` when possible (else the closest point on the reachable
    shell); the middle joint bends towards ``pole`` (direction, (N, 3)). Bone lengths ``a`` and
    ``b`` are exact for every frame.
    """
    d = target - start
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    u = d / np.maximum(dist, 1e-9)
    dist = np.clip(dist, abs(a - b) + 0.02, (a + b) * 0.995)
    cos_a = (a * a + dist * dist - b * b) / (2 * a * dist)
    sin_a = np.sqrt(np.clip(1 - cos_a**2, 0.0, 1.0))
    w = pole - (pole * u).sum(-1, keepdims=True) * u
    w = w / np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-9)
    mid = start + a * (cos_a * u + sin_a * w)
    end = start + dist * u
    return mid, end


def keep_clear_of_shoulder(hand: np.ndarray, r_min: float = 0.45) -> np.ndarray:
    """Push hand targets (N, 3) (arm lengths) closer than ``r_min`` to the shoulder forwards.

    Blended targets can pass right through the shoulder, where the arm direction (and so the
    elbow) would swing around within a frame; real hands go around, in front of the body.
    """
    r = np.linalg.norm(hand, axis=-1, keepdims=True)
    push = r_min * np.clip(1 - r / r_min, 0.0, 1.0) ** 2
    return hand + push * np.array([0.0, 1.0, 0.0])


def elbow_hint(hand: np.ndarray) -> np.ndarray:
    """Default elbow direction (N, 3) for hand targets (N, 3) (chest frame, x outwards).

    Down and out for forward hands, out for raised hands, back for hanging arms; it varies
    smoothly with the hand direction and is parallel to it only for hands reaching out-back-down
    or far across above the shoulder, so the elbow does not flip between frames in ordinary
    poses.
    """
    u = _unit(hand + np.array([0.0, 0.0, -1e-6]))
    m = np.clip((-u[:, 2] - 0.3) / 0.7, 0.0, 1.0)
    m = m * m * (3 - 2 * m)
    up = np.maximum(u[:, 2], 0.0)
    return np.stack([0.4 + 0.8 * up, -m - 0.3 * up, -(1 - m) * (1 - 0.5 * up)], axis=-1)


# --- forward kinematics ---------------------------------------------------------------------------


def pose32(ch: Channels, body: Body) -> np.ndarray:
    """Channels -> raw 32-joint Human3.6M mocap poses, (N, 32, 3) float64 world metres.

    The lowest foot point rests on the floor (z = 0) in every frame; removed mocap joints sit
    where real mocap puts them (spine base on the pelvis, collars on the thorax, toes, hand tips).
    """
    ch = clip_to_limits(ch)
    n = len(ch["heading"])
    L = body.lengths
    pos = np.zeros((n, 32, 3))
    r_pelvis = (
        rot(2, ch["heading"] + ch["pelvis_yaw"]) @ rot(0, -ch["pelvis_tilt"])
        @ rot(1, ch["pelvis_roll"])
    )
    for s, (hip, knee, ankle, toe, toe_end) in LEG.items():
        sign = SIDE_SIGN[s]
        pos[:, hip] = _apply(r_pelvis, L["pelvis_hip"] * _unit(np.array([sign, 0.0, -0.25])))
        r_thigh = (
            r_pelvis @ rot(2, -sign * ch[f"hip_rot_{s}"]) @ rot(0, ch[f"hip_flex_{s}"])
            @ rot(1, -sign * ch[f"hip_abd_{s}"])
        )
        r_shin = r_thigh @ rot(0, -ch[f"knee_{s}"])
        r_foot = r_shin @ rot(0, ch[f"ankle_{s}"])
        pos[:, knee] = pos[:, hip] + _apply(r_thigh, np.array([0.0, 0.0, -L["thigh"]]))
        pos[:, ankle] = pos[:, knee] + _apply(r_shin, np.array([0.0, 0.0, -L["shin"]]))
        foot_dir = _unit(np.array([0.0, 1.0, -0.45]))
        pos[:, toe] = pos[:, ankle] + _apply(r_foot, L["foot"] * foot_dir)
        pos[:, toe_end] = pos[:, toe] + _apply(r_foot, np.array([0.0, L["toe"], -0.01]))

    half = 0.5
    r_low = (
        r_pelvis @ rot(2, half * ch["spine_twist"]) @ rot(0, -half * ch["spine_flex"])
        @ rot(1, half * ch["spine_bend"])
    )
    r_chest = (
        r_low @ rot(2, half * ch["spine_twist"]) @ rot(0, -half * ch["spine_flex"])
        @ rot(1, half * ch["spine_bend"])
    )
    r_head = r_chest @ rot(2, ch["neck_yaw"]) @ rot(0, -ch["neck_flex"]) @ rot(1, ch["neck_roll"])
    pos[:, SPINE0] = pos[:, PELVIS]
    for joint, parent, frame, bone, direction in (
        (SPINE, SPINE0, r_low, "pelvis_spine", (0.0, 0.05, 1.0)),
        (THORAX, SPINE, r_chest, "spine_thorax", (0.0, -0.08, 1.0)),
        (NOSE, THORAX, r_head, "thorax_neck", (0.0, 0.55, 1.0)),
        (HEAD, NOSE, r_head, "neck_head", (0.0, -0.3, 1.0)),
    ):
        pos[:, joint] = pos[:, parent] + _apply(frame, L[bone] * _unit(np.array(direction)))

    forward = _apply(r_chest, np.array([0.0, 1.0, 0.0]))
    for s, (collar, shoulder, elbow, wrist, thumb, thumb_end, hand, hand_end) in ARM.items():
        mirror = np.array([SIDE_SIGN[s], 1.0, 1.0])
        pos[:, collar] = pos[:, THORAX]
        offset = L["thorax_shoulder"] * _unit(np.array([SIDE_SIGN[s], -0.1, -0.12]))
        pos[:, shoulder] = pos[:, THORAX] + _apply(r_chest, offset)
        hand_local = keep_clear_of_shoulder(ch[f"hand_{s}"])
        target = pos[:, shoulder] + _apply(r_chest, hand_local * mirror) * body.arm_length
        pole_local = elbow_hint(hand_local) + ch[f"pole_{s}"]
        pole = _apply(r_chest, pole_local * mirror)
        pos[:, elbow], pos[:, wrist] = two_bone_ik(
            pos[:, shoulder], target, pole, L["upper_arm"], L["forearm"]
        )
        u = _unit(pos[:, wrist] - pos[:, elbow])
        side_dir = forward - (forward * u).sum(-1, keepdims=True) * u
        side_dir = side_dir / np.maximum(np.linalg.norm(side_dir, axis=-1, keepdims=True), 1e-6)
        thumb_dir = _unit(u + 0.8 * side_dir)
        pos[:, thumb] = pos[:, wrist] + L["thumb"] * thumb_dir
        pos[:, thumb_end] = pos[:, thumb] + L["finger_tip"] * thumb_dir
        pos[:, hand] = pos[:, wrist] + L["hand"] * u
        pos[:, hand_end] = pos[:, hand] + L["finger_tip"] * u

    # floor contact: feet, or the pelvis when sitting on the floor
    contacts = [*(LEG[s][k] for s in "lr" for k in (2, 3, 4)), PELVIS]
    clearance = np.array(
        [ANKLE_HEIGHT_M * body.scale, TOE_HEIGHT_M, TOE_HEIGHT_M] * 2 + [SEAT_HEIGHT_M * body.scale]
    )
    lift = -(pos[:, contacts, 2] - clearance).min(axis=1)
    pos[..., 2] += lift[:, None]
    pos[..., 0] += ch["root_x"][:, None]
    pos[..., 1] += ch["root_y"][:, None]
    return pos
