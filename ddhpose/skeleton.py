"""17-joint skeleton layouts and the joints <-> (bone lengths, bone directions) transforms.

Two layouts (docs/model.md "Skeletons and bone slots"): ``h36m17`` (Human3.6M, VideoPose3D order,
root 0) and ``3dhp17`` (MPI-INF-3DHP "relevant" order, root 14). Dataset differences are *data* in a
:class:`Skeleton`; every function here takes the skeleton as an argument.

Bones live in *joint slots*: the bone whose child is joint c sits in slot c; the root
slot holds zero. All transforms work on NumPy arrays and torch tensors alike, batched over any
leading dimensions, and are differentiable in torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ddhpose.errors import UnknownLayoutError

Array = TypeVar("Array", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Skeleton:
    """A 17-joint layout with the hierarchy tables DDHPose uses.

    Attributes:
        name: layout name (``h36m17`` or ``3dhp17``).
        joint_names: one name per joint.
        parents: parent joint of each joint (-1 for the root).
        bones: the 16 (parent, child) pairs in the reference's bone order (topologically sorted
            for ``h36m17`` only: ``3dhp17`` lists bone (1, 0) before (15, 1) and (14, 15)).
        joints_left / joints_right: mirrored joint pairs (same positions pair up).
        levels: the 6 hierarchy-level groups used by the level embedding.
        chains: kinematic chains for the HRST score edit (order matters).
        children: per joint, its children in the child-mean (``bonedic``) table.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    bones: tuple[tuple[int, int], ...]
    joints_left: tuple[int, ...]
    joints_right: tuple[int, ...]
    levels: tuple[tuple[int, ...], ...]
    chains: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]
    _flip: tuple[int, ...] = field(init=False, repr=False)
    _device_cache: dict[tuple[Any, ...], torch.Tensor] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        perm = list(range(len(self.parents)))
        for left, right in zip(self.joints_left, self.joints_right, strict=True):
            perm[left], perm[right] = right, left
        object.__setattr__(self, "_flip", tuple(perm))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (data-loader workers, deep copies) without the device cache: no CUDA tensor
        travels to another process."""
        return {**self.__dict__, "_device_cache": {}}

    def index(self, table: str, device: torch.device) -> torch.Tensor:
        """A table (``bone_slots``, ``bone_parents`` or ``flip_permutation``) as an int64 tensor
        on ``device``, made once per device and cached: indexing a CUDA tensor with a Python list
        copies the list to the GPU and waits for it every time."""
        key = (table, torch.device(device))
        cached = self._device_cache.get(key)
        if cached is None:
            cached = torch.tensor(getattr(self, table), dtype=torch.long, device=device)
            self._device_cache[key] = cached
        return cached

    def flip_sign(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        """(channels,) ``[-1, 1, 1, ...]`` in ``like``'s dtype and device (cached)."""
        key = ("flip_sign", channels, like.dtype, like.device)
        cached = self._device_cache.get(key)
        if cached is None:
            sign = [-1.0] + [1.0] * (channels - 1)
            cached = torch.tensor(sign, dtype=like.dtype, device=like.device)
            self._device_cache[key] = cached
        return cached

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_bones(self) -> int:
        return len(self.bones)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @property
    def bone_slots(self) -> tuple[int, ...]:
        """Slot (= child joint) of each bone, in bone order."""
        return tuple(c for _, c in self.bones)

    @property
    def bone_parents(self) -> tuple[int, ...]:
        return tuple(p for p, _ in self.bones)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Index map that swaps every left joint with its right partner (an involution)."""
        return self._flip

    @property
    def child_mean_groups(self) -> tuple[tuple[int, ...], ...]:
        """Per joint, the joints averaged into its child-mean feature: children first, then self."""
        return tuple((*tuple(ch), j) for j, ch in enumerate(self.children))


H36M17 = Skeleton(
    name="h36m17",
    joint_names=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow",
        "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    bones=(
        (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
        (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    ),
    joints_left=(4, 5, 6, 11, 12, 13),
    joints_right=(1, 2, 3, 14, 15, 16),
    levels=((0,), (1, 4, 7), (2, 5, 8), (3, 6, 9, 11, 14), (10, 12, 15), (13, 16)),
    chains=(
        (0, 1, 2, 3), (0, 4, 5, 6), (0, 7, 8, 9, 10), (0, 7, 8, 11, 12, 13), (0, 7, 8, 14, 15, 16),
    ),
    children=(
        (1, 4, 7), (2,), (3,), (), (5,), (6,), (), (8,), (9, 11, 14), (10,), (), (12,), (13,),
        (), (15,), (16,), (),
    ),
)

MPI3DHP17 = Skeleton(
    name="3dhp17",
    joint_names=(
        "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
        "left_knee", "left_ankle", "pelvis", "spine", "head",
    ),
    parents=(1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    bones=(
        (1, 0), (15, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (14, 8), (8, 9),
        (9, 10), (14, 11), (11, 12), (12, 13), (14, 15), (1, 16),
    ),
    joints_left=(5, 6, 7, 11, 12, 13),
    joints_right=(2, 3, 4, 8, 9, 10),
    levels=((14,), (8, 11, 15), (1, 9, 12), (0, 2, 5, 10, 13, 16), (3, 6), (4, 7)),
    chains=(
        (14, 8, 9, 10), (14, 11, 12, 13), (14, 15, 1, 0), (14, 15, 1, 2, 3, 4),
        (14, 15, 1, 5, 6, 7), (14, 15, 1, 16),
    ),
    children=(
        (), (0, 2, 5, 16), (3,), (4,), (), (6,), (7,), (), (9,), (10,), (), (12,), (13,), (),
        (8, 11, 15), (1,), (),
    ),
)

_LAYOUTS = {s.name: s for s in (H36M17, MPI3DHP17)}
# Dataset name -> its skeleton.
DATASET_SKELETONS = {"h36m": H36M17, "3dhp": MPI3DHP17}


def get_skeleton(name: str) -> Skeleton:
    """The skeleton of a layout (``h36m17``, ``3dhp17``) or dataset name (``h36m``, ``3dhp``)."""
    if name in _LAYOUTS:
        return _LAYOUTS[name]
    if name in DATASET_SKELETONS:
        return DATASET_SKELETONS[name]
    known = ", ".join(sorted([*_LAYOUTS, *DATASET_SKELETONS]))
    raise UnknownLayoutError(f"unknown joint layout '{name}' (known: {known})")


# --- Raw Human3.6M mocap (32 joints) -> 17 joints (docs/model.md "Human3.6M files") ----------

H36M32_PARENTS = (
    -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19, 22, 12, 24,
    25, 26, 27, 28, 27, 30,
)
H36M32_LEFT = (6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23)
H36M32_RIGHT = (1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31)
H36M32_REMOVED = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
H36M32_KEPT = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


def reduce_h36m32_parents() -> tuple[int, ...]:
    """The 17-joint parents obtained by removing joints from the 32-joint mocap skeleton.

    Removed joints' children are re-parented to the nearest kept ancestor, then the shoulders
    (new 11 and 14) are attached to the thorax (8), as the reference does.
    """
    kept = H36M32_KEPT
    new_index = {old: new for new, old in enumerate(kept)}
    parents = []
    for old in kept:
        p = H36M32_PARENTS[old]
        while p != -1 and p not in new_index:
            p = H36M32_PARENTS[p]
        parents.append(-1 if p == -1 else new_index[p])
    parents[11] = 8
    parents[14] = 8
    return tuple(parents)


def reduce_h36m32(positions: Array) -> Array:
    """Select the 17 kept joints from raw mocap positions (..., 32, C) -> (..., 17, C)."""
    if positions.shape[-2] != 32:
        raise ValueError(f"expected 32 joints on axis -2, got shape {tuple(positions.shape)}")
    return positions[..., list(H36M32_KEPT), :]


# --- joints <-> bones (docs/model.md "Skeletons and bone slots") -----------------------------


def _zeros_like_shape(x: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(x, torch.Tensor):
        return x.new_zeros(shape)
    return np.zeros(shape, dtype=x.dtype)


def _cat(xs: list[Any], axis: int) -> Any:
    if isinstance(xs[0], torch.Tensor):
        return torch.cat(xs, dim=axis)
    return np.concatenate(xs, axis=axis)


def _take(x: Array, skel: Skeleton, table: str) -> Array:
    """``x[..., skel.<table>, :]`` (a cached device index for tensors, a list for arrays)."""
    if isinstance(x, torch.Tensor):
        return x[..., skel.index(table, x.device), :]
    return x[..., list(getattr(skel, table)), :]


def bone_vectors(joints: Array, skel: Skeleton) -> Array:
    """Bone vectors child - parent: (..., J, 3) -> (..., 16, 3), in bone order."""
    return _take(joints, skel, "bone_slots") - _take(joints, skel, "bone_parents")


def joints_to_bones(joints: Array, skel: Skeleton) -> tuple[Array, Array]:
    """Decompose poses into unit bone directions and bone lengths, in bone order.

    Args:
        joints: (..., J, 3) positions (any unit; lengths come out in the same unit).
    Returns:
        directions (..., 16, 3) and lengths (..., 16, 1). A zero-length bone gives NaN
        directions, exactly like the reference (no epsilon).
    """
    v = bone_vectors(joints, skel)
    lengths = (v**2).sum(-1, keepdims=True) ** 0.5 if isinstance(v, np.ndarray) else (
        (v**2).sum(-1, keepdim=True) ** 0.5
    )
    return v / lengths, lengths


def bones_to_slots(directions: Array, lengths: Array, skel: Skeleton) -> tuple[Array, Array]:
    """Per-bone values into joint slots: (..., 16, 3), (..., 16, 1) -> (..., J, 3), (..., J, 1).

    The root slot is zero.
    """
    slots = list(skel.bone_slots)
    lead = tuple(directions.shape[:-2])
    d = _zeros_like_shape(directions, (*lead, skel.num_joints, directions.shape[-1]))
    ln = _zeros_like_shape(lengths, (*lead, skel.num_joints, lengths.shape[-1]))
    if isinstance(d, torch.Tensor):
        # index_copy keeps autograd through the bone values.
        idx = skel.index("bone_slots", d.device)
        d = d.index_copy(d.dim() - 2, idx, directions)
        ln = ln.index_copy(ln.dim() - 2, idx, lengths)
    else:
        d[..., slots, :] = directions
        ln[..., slots, :] = lengths
    return d, ln


def slots_to_bones(slot_dirs: Array, slot_lens: Array, skel: Skeleton) -> tuple[Array, Array]:
    """Inverse of :func:`bones_to_slots`: read the 16 bone slots back in bone order."""
    return _take(slot_dirs, skel, "bone_slots"), _take(slot_lens, skel, "bone_slots")


def joints_to_slots(joints: Array, skel: Skeleton) -> tuple[Array, Array]:
    """Poses (..., J, 3) -> slot directions (..., J, 3) and slot lengths (..., J, 1)."""
    d, ln = joints_to_bones(joints, skel)
    return bones_to_slots(d, ln, skel)


def bones_to_joints(
    directions: Array, lengths: Array, skel: Skeleton, root: Array | None = None
) -> Array:
    """Forward kinematics: (..., 16, 3) unit directions, (..., 16, 1) lengths -> (..., J, 3) joints.

    The root sits at ``root`` (..., 3) or at the origin. Differentiable in torch.
    """
    lead = tuple(directions.shape[:-2])
    pos: list[Any] = [None] * skel.num_joints
    pos[skel.root] = (
        _zeros_like_shape(directions, (*lead, 3)) if root is None else root
    )
    for k in _fk_order(skel):
        p, c = skel.bones[k]
        pos[c] = pos[p] + lengths[..., k, :] * directions[..., k, :]
    return _stack(pos, axis=-2)


def _fk_order(skel: Skeleton) -> list[int]:
    """Bone indices ordered so that every bone's parent joint is placed before its child."""
    def depth(j: int) -> int:
        return 0 if skel.parents[j] == -1 else 1 + depth(skel.parents[j])

    return sorted(range(skel.num_bones), key=lambda k: depth(skel.bones[k][1]))


def _stack(xs: list[Any], axis: int) -> Any:
    if isinstance(xs[0], torch.Tensor):
        return torch.stack(xs, dim=axis)
    return np.stack(xs, axis=axis)


def flip_joints(x: Array, skel: Skeleton, *, negate_x: bool = True) -> Array:
    """Mirror poses: negate the first coordinate and swap left/right joints. (..., J, C) -> same."""
    out = _take(x, skel, "flip_permutation")
    if negate_x:
        if isinstance(out, torch.Tensor):
            out = out * skel.flip_sign(x.shape[-1], out)
        else:
            sign = [-1.0] + [1.0] * (x.shape[-1] - 1)
            out = out * np.asarray(sign, dtype=out.dtype)
    return out


def swap_left_right(x: Array, skel: Skeleton) -> Array:
    """Swap left/right joint slots without negating anything. (..., J, C) -> same."""
    return _take(x, skel, "flip_permutation")


__all__ = [
    "DATASET_SKELETONS",
    "H36M17",
    "H36M32_KEPT",
    "H36M32_PARENTS",
    "MPI3DHP17",
    "Skeleton",
    "bone_vectors",
    "bones_to_joints",
    "bones_to_slots",
    "flip_joints",
    "get_skeleton",
    "joints_to_bones",
    "joints_to_slots",
    "reduce_h36m32",
    "reduce_h36m32_parents",
    "slots_to_bones",
    "swap_left_right",
]
