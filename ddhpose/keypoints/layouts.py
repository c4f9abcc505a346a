"""2D keypoint layouts of common detectors and their conversion to Human3.6M-17.

Every layout is a joint order (the names below, in the detector's output order) and a table that
gives each Human3.6M-17 joint (``ddhpose.skeleton.H36M17``) as a list of alternatives, tried in
order per frame: the first one whose joints are all present wins. An alternative is

- ``("all", a, b, ...)``: the mean of the listed joints, all of which must be present;
- ``("any", a, b, ...)``: the mean of those of the listed joints that are present (at least one).

A name is a joint of the layout; ``h36m:NAME`` is a Human3.6M-17 joint computed earlier in the
table. A Human3.6M-17 joint none of whose alternatives is available in a frame is missing there
(and interpolated in time like any missing keypoint).

Where the detector has a joint of its own for the pelvis, the thorax (the base of the neck, which
OpenPose and Halpe call "neck") or the top of the head, that joint is used, with the mean of the
hips / shoulders / face points as the fallback. Human3.6M's ``neck_nose`` is the nose where the
detector has one. The ankles fall back to the heel where a layout has heels.

Sources of the joint orders (read from each project's published description):

- ``coco17``: COCO keypoints (cocodataset.org, "Keypoint Detection"): nose, eyes, ears,
  shoulders, elbows, wrists, hips, knees, ankles, left before right.
- ``h36m17``: Human3.6M as VideoPose3D orders it (``ddhpose.skeleton.H36M17``).
- ``mpi_inf_3dhp17``: the 17 joints of the MPI-INF-3DHP test set (``ddhpose.skeleton.MPI3DHP17``).
- ``openpose25``: OpenPose BODY_25 (doc/02_output.md, "Pose Output Format (BODY_25)").
- ``halpe26``: AlphaPose Halpe-26 (AlphaPose's output-format page, "Keypoint Ordering"): COCO-17,
  then head (top), neck, hip (mid-hip), big toes, small toes, heels.
- ``coco_wholebody133``: COCO-WholeBody (jin-s13/COCO-WholeBody): 17 body joints (COCO order),
  6 foot joints (left big toe, left small toe, left heel, right big toe, right small toe, right
  heel), 68 face, 21 left-hand and 21 right-hand points; only body and feet are used.
- ``mediapipe33``: MediaPipe Pose / BlazePose landmarks (Pose landmarker model card,
  "Pose landmarker model"): 0 nose, 1-6 eyes (inner, centre, outer; left then right), 7-8 ears,
  9-10 mouth, 11-22 shoulders, elbows, wrists, pinkies, index fingers, thumbs, 23-28 hips,
  knees, ankles, 29-30 heels, 31-32 foot index.

=================  =============  ==================  ===============  ==================
H36M joint         coco17 and     openpose25          halpe26          mediapipe33
                   wholebody133
=================  =============  ==================  ===============  ==================
0 pelvis           mid-hips       MidHip, mid-hips    hip, mid-hips    mid-hips
8 thorax           mid-shoulders  Neck, mid-shoulder  neck, mid-sh.    mid-shoulders
7 spine            (pelvis + thorax) / 2 in every layout
10 head            eyes and ears  eyes and ears       head (top),      eyes (centre) and
                   present                            eyes and ears    ears present
9 neck_nose        nose, else (thorax + head) / 2 in every layout
3, 6 ankles        ankle          ankle, heel         ankle, heel      ankle, heel
                   (wholebody:
                   ankle, heel)
other limbs        the same joint of the detector (hips, knees, shoulders, elbows, wrists)
=================  =============  ==================  ===============  ==================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddhpose.skeleton import H36M17, MPI3DHP17

Alternative = tuple[str, ...]  # ("all" | "any", joint, joint, ...)


@dataclass(frozen=True)
class Layout:
    """A keypoint layout: its joint names in file order and its Human3.6M-17 table.

    Attributes:
        name: the layout's name (``coco17``, ``openpose25``, ...).
        joint_names: one name per joint, in the detector's order (J names).
        table: per Human3.6M-17 joint (index, alternatives), in evaluation order.
        source: where the order comes from.
    """

    name: str
    joint_names: tuple[str, ...]
    table: tuple[tuple[int, tuple[Alternative, ...]], ...]
    source: str

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
OPENPOSE25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel",
)
HALPE26_NAMES = (
    *COCO17_NAMES, "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel",
)
WHOLEBODY133_NAMES = (
    *COCO17_NAMES, "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
    *(f"face_{i}" for i in range(68)),
    *(f"left_hand_{i}" for i in range(21)),
    *(f"right_hand_{i}" for i in range(21)),
)
MEDIAPIPE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)


def _limbs(heels: bool) -> list[tuple[int, tuple[Alternative, ...]]]:
    """The limb joints, named alike in every detector layout (heels: ankle falls back to heel)."""
    def ankle(side: str) -> tuple[Alternative, ...]:
        own: Alternative = ("all", f"{side}_ankle")
        return (own, ("all", f"{side}_heel")) if heels else (own,)

    return [
        (1, (("all", "right_hip"),)), (2, (("all", "right_knee"),)), (3, ankle("right")),
        (4, (("all", "left_hip"),)), (5, (("all", "left_knee"),)), (6, ankle("left")),
        (11, (("all", "left_shoulder"),)), (12, (("all", "left_elbow"),)),
        (13, (("all", "left_wrist"),)), (14, (("all", "right_shoulder"),)),
        (15, (("all", "right_elbow"),)), (16, (("all", "right_wrist"),)),
    ]


def _body_table(pelvis: str | None, thorax: str | None, head_top: str | None,
                face: tuple[str, ...], heels: bool) -> tuple:
    """The table of a detector layout: own pelvis/thorax/head-top joints first where given."""
    mid_hips: Alternative = ("all", "left_hip", "right_hip")
    mid_shoulders: Alternative = ("all", "left_shoulder", "right_shoulder")
    face_alt: Alternative = ("any", *face)
    return tuple([
        (0, ((("all", pelvis),) if pelvis else ()) + (mid_hips,)),
        *_limbs(heels),
        (8, ((("all", thorax),) if thorax else ()) + (mid_shoulders,)),
        (7, (("all", "h36m:pelvis", "h36m:thorax"),)),
        (10, ((("all", head_top),) if head_top else ()) + (face_alt,)),
        (9, (("all", "nose"), ("all", "h36m:thorax", "h36m:head"))),
    ])


# MPI-INF-3DHP joint -> the Human3.6M-17 joint of the same meaning (head_top = head,
# neck = thorax, head = neck_nose); the same correspondence as ddhpose.inference.infer uses.
_3DHP_TO_H36M = (10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9)
_EARS_EYES = ("left_eye", "right_eye", "left_ear", "right_ear")

LAYOUT_TABLES: dict[str, Layout] = {
    layout.name: layout for layout in (
        Layout("h36m17", H36M17.joint_names,
               tuple((j, (("all", n),)) for j, n in enumerate(H36M17.joint_names)),
               "Human3.6M-17 as VideoPose3D orders it"),
        Layout("coco17", COCO17_NAMES, _body_table(None, None, None, _EARS_EYES, heels=False),
               "COCO keypoints"),
        Layout("mpi_inf_3dhp17", MPI3DHP17.joint_names,
               tuple(sorted((h, (("all", MPI3DHP17.joint_names[j]),))
                            for j, h in enumerate(_3DHP_TO_H36M))),
               "MPI-INF-3DHP test-set joints"),
        Layout("openpose25", OPENPOSE25_NAMES,
               _body_table("mid_hip", "neck", None, _EARS_EYES, heels=True),
               "OpenPose BODY_25"),
        Layout("halpe26", HALPE26_NAMES, _body_table("hip", "neck", "head", _EARS_EYES,
                                                     heels=True),
               "AlphaPose Halpe-26"),
        Layout("coco_wholebody133", WHOLEBODY133_NAMES,
               _body_table(None, None, None, _EARS_EYES, heels=True),
               "COCO-WholeBody (body and feet used)"),
        Layout("mediapipe33", MEDIAPIPE33_NAMES,
               _body_table(None, None, None, _EARS_EYES, heels=True),
               "MediaPipe Pose (BlazePose) landmarks"),
    )
}
LAYOUTS = tuple(LAYOUT_TABLES)
# joint count -> layout, where the count is unambiguous (17 is not: give the layout)
LAYOUT_BY_JOINTS = {n: names[0] for n, names in (
    (count, [name for name, lay in LAYOUT_TABLES.items() if lay.num_joints == count])
    for count in {lay.num_joints for lay in LAYOUT_TABLES.values()}) if len(names) == 1}


def accepted_layouts() -> str:
    """``h36m17, coco17, mpi_inf_3dhp17 (17 joints), openpose25 (25), ...``: for messages."""
    counts = sorted({lay.num_joints for lay in LAYOUT_TABLES.values()})
    groups = [", ".join(n for n, lay in LAYOUT_TABLES.items() if lay.num_joints == c)
              + (f" ({c} joints)" if i == 0 else f" ({c})") for i, c in enumerate(counts)]
    return ", ".join(groups)


def _value(points: np.ndarray, out: np.ndarray, layout: Layout, alt: Alternative) -> np.ndarray:
    """One alternative evaluated: (..., 2), NaN where it is not available."""
    idx = {n: i for i, n in enumerate(layout.joint_names)}
    parts = [out[..., H36M17.joint_names.index(n[5:]), :] if n.startswith("h36m:")
             else points[..., idx[n], :] for n in alt[1:]]
    stack = np.stack(parts, axis=-2)  # (..., k, 2)
    present = np.all(np.isfinite(stack), axis=-1, keepdims=True)  # (..., k, 1)
    count = present.sum(axis=-2)  # (..., 1)
    total = np.where(present, stack, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / np.where(count > 0, count, 0)
    ok = count == len(parts) if alt[0] == "all" else count > 0
    return np.where(ok, mean, np.nan)


def to_h36m17(points: np.ndarray, layout: str) -> np.ndarray:
    """(..., J, 2) keypoints in ``layout`` -> (..., 17, 2) Human3.6M-17 by the layout's table.

    Units are kept (pixels in, pixels out). Missing joints are NaN in; a Human3.6M-17 joint none
    of whose alternatives is available is NaN out.
    """
    lay = LAYOUT_TABLES[layout]
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-2] != lay.num_joints:
        raise ValueError(f"expected {lay.num_joints} {layout} joints on axis -2, got shape "
                         f"{points.shape}")
    out = np.full((*points.shape[:-2], 17, points.shape[-1]), np.nan)
    for h, alternatives in lay.table:
        for alt in alternatives:
            value = _value(points, out, lay, alt)
            out[..., h, :] = np.where(np.isfinite(out[..., h, :]), out[..., h, :], value)
    return out


def never_available(points: np.ndarray, layout: str) -> list[str]:
    """The layout's joints, in its order, that some Human3.6M-17 joint needs but that are missing
    in every frame of (T, J, 2) ``points`` while that Human3.6M-17 joint is too."""
    lay = LAYOUT_TABLES[layout]
    converted = to_h36m17(points, layout)
    never_out = ~np.any(np.all(np.isfinite(converted), axis=-1), axis=0)  # (17,)
    never_in = ~np.any(np.all(np.isfinite(points), axis=-1), axis=0)  # (J,)
    names: set[str] = set()
    for h, alternatives in lay.table:
        if never_out[h]:
            names.update(n for alt in alternatives for n in alt[1:] if not n.startswith("h36m:")
                         and never_in[lay.joint_names.index(n)])
    return [n for n in lay.joint_names if n in names]


__all__ = [
    "COCO17_NAMES",
    "HALPE26_NAMES",
    "LAYOUTS",
    "LAYOUT_BY_JOINTS",
    "LAYOUT_TABLES",
    "MEDIAPIPE33_NAMES",
    "OPENPOSE25_NAMES",
    "WHOLEBODY133_NAMES",
    "Layout",
    "accepted_layouts",
    "never_available",
    "to_h36m17",
]
