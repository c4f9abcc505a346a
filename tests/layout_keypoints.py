"""The same people in every keypoint layout, written from COCO-17 keypoints with the documented
joint tables (ddhpose/keypoints/layouts.py): the joints both layouts have are the same points;
a layout's own pelvis / neck (thorax) / head joints are put where the COCO-17 conversion puts
them (mid-hips, mid-shoulders, the mean of the eyes and ears), so the Human3.6M-17 keypoints are
the same; the extra joints (feet, face, hands, ...) are anywhere plausible near their body part.
"""

from __future__ import annotations

import numpy as np

from ddhpose.keypoints.layouts import COCO17_NAMES, LAYOUT_TABLES, to_h36m17
from ddhpose.skeleton import MPI3DHP17


def _near(coco: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """(T, 3): a point a few pixels from COCO joint ``name`` (confidence kept)."""
    out = coco[:, COCO17_NAMES.index(name)].copy()
    out[:, :2] += rng.uniform(-8, 8, size=2)
    return out


def _extra_joint(coco: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """A plausible place for a joint COCO-17 lacks (by its name's body part)."""
    side = "left" if name.startswith("left") else "right"
    if "toe" in name or "heel" in name or "foot" in name:
        return _near(coco, f"{side}_ankle", rng)
    if "pinky" in name or "index" in name or "thumb" in name or "hand" in name:
        return _near(coco, f"{side}_wrist", rng) if "_hand_" not in name else _near(
            coco, f"{name.split('_')[0]}_wrist", rng)
    return _near(coco, "nose", rng)  # face, mouth, inner / outer eyes


def from_coco(coco: np.ndarray, layout: str, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) COCO-17 pixels (x, y, confidence) -> (T, J, 3) the same people in ``layout``."""
    coco = np.asarray(coco, dtype=np.float64)
    conf = coco[..., 2:]
    if layout == "coco17":
        return coco.copy()
    h36m = np.concatenate([to_h36m17(coco[..., :2], "coco17"), conf[:, :1].repeat(17, 1)], -1)
    if layout == "h36m17":
        return h36m
    if layout == "mpi_inf_3dhp17":
        # the layout's table: the Human3.6M-17 joint each MPI-INF-3DHP joint (by name) gives
        h36m_of = {alts[0][1]: h for h, alts in LAYOUT_TABLES[layout].table}
        return h36m[:, [h36m_of[n] for n in MPI3DHP17.joint_names]]
    rng = np.random.default_rng(seed)
    lay = LAYOUT_TABLES[layout]
    pelvis, thorax, head = h36m[:, 0], h36m[:, 8], h36m[:, 10]
    own = {"mid_hip": pelvis, "hip": pelvis, "neck": thorax, "head": head}
    out = np.empty((len(coco), lay.num_joints, 3))
    for j, name in enumerate(lay.joint_names):
        if name in COCO17_NAMES:
            out[:, j] = coco[:, COCO17_NAMES.index(name)]
        elif name in own:
            out[:, j] = own[name]
        else:
            out[:, j] = _extra_joint(coco, name, rng)
    return out


def random_walk(t: int, seed: int = 0, *, centre: tuple[float, float] = (300.0, 300.0),
                spread: float = 100.0, step: float = 2.0,
                confidence: float | None = None) -> np.ndarray:
    """(t, 17, 2) pixels, or (t, 17, 3) with a constant ``confidence``: 17 points drawn within
    ``spread`` pixels of ``centre``, each moving by a Gaussian random walk of ``step`` pixels per
    frame (seeded: the same arguments give the same keypoints)."""
    rng = np.random.default_rng(seed)
    c = np.asarray(centre, dtype=np.float64)
    xy = rng.uniform(c - spread, c + spread, size=(1, 17, 2))
    xy = xy + np.cumsum(rng.normal(0, step, size=(t, 17, 2)), axis=0)
    if confidence is None:
        return xy
    return np.concatenate([xy, np.full((t, 17, 1), confidence)], axis=-1)
