"""Skeleton layouts and the joints <-> bones transforms (docs/model.md "Skeletons and
bone slots")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ddhpose.errors import UnknownLayoutError
from ddhpose.skeleton import (
    H36M17,
    H36M32_KEPT,
    H36M32_PARENTS,
    MPI3DHP17,
    bone_vectors,
    bones_to_joints,
    bones_to_slots,
    flip_joints,
    get_skeleton,
    joints_to_bones,
    joints_to_slots,
    reduce_h36m32,
    reduce_h36m32_parents,
    slots_to_bones,
    swap_left_right,
)

LAYOUTS = [H36M17, MPI3DHP17]


def _poses(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, 17, 3))


# --- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_tables_are_consistent(skel):
    assert skel.num_joints == 17 and skel.num_bones == 16
    for p, c in skel.bones:  # each bone is a parent link
        assert skel.parents[c] == p
    assert sorted(c for _, c in skel.bones) == [j for j in range(17) if j != skel.root]
    for j, ch in enumerate(skel.children):  # children = inverse of parents
        assert set(ch) == {c for c in range(17) if skel.parents[c] == j}
    assert sorted(j for level in skel.levels for j in level) == list(range(17))
    for chain in skel.chains:
        assert chain[0] == skel.root
        assert all(skel.parents[b] == a for a, b in itertools.pairwise(chain))


def test_bone_order_topological_only_for_h36m():
    def topological(skel):
        seen = {skel.root}
        for p, c in skel.bones:
            if p not in seen:
                return False
            seen.add(c)
        return True

    assert topological(H36M17)
    assert not topological(MPI3DHP17)  # (1, 0) comes before (15, 1): FK must reorder


def test_roots_and_bone_slots():
    assert H36M17.root == 0 and MPI3DHP17.root == 14
    assert H36M17.bone_slots == tuple(range(1, 17))  # bone k <-> slot k + 1
    assert MPI3DHP17.bone_slots == (*range(14), 15, 16)  # slot 14 is empty


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_root_slot_is_zero(skel):
    d, ln = joints_to_slots(_poses((2, 3)), skel)
    assert d.shape == (2, 3, 17, 3) and ln.shape == (2, 3, 17, 1)
    assert (d[..., skel.root, :] == 0).all() and (ln[..., skel.root, :] == 0).all()
    others = [j for j in range(17) if j != skel.root]
    assert (ln[..., others, :] > 0).all()
    np.testing.assert_allclose(np.linalg.norm(d[..., others, :], axis=-1), 1.0, rtol=1e-12)


def test_3dhp_slot_14_empty_and_slots_15_16_hold_bones_14_15():
    x = _poses((4,), seed=3)
    d, ln = joints_to_bones(x, MPI3DHP17)
    sd, sl = bones_to_slots(d, ln, MPI3DHP17)
    assert (sd[:, 14] == 0).all() and (sl[:, 14] == 0).all()
    np.testing.assert_array_equal(sd[:, :14], d[:, :14])
    np.testing.assert_array_equal(sd[:, 15:17], d[:, 14:16])
    np.testing.assert_array_equal(sl[:, 15:17], ln[:, 14:16])


def test_hand_computed_bone():
    x = np.zeros((17, 3))
    x[1] = (3.0, 4.0, 0.0)  # right hip 5 units from the pelvis
    x[2] = x[1] + (0.0, 0.0, -2.0)
    with np.errstate(invalid="ignore"):  # the other, zero-length bones give NaN
        d, ln = joints_to_bones(x, H36M17)
    assert ln[0, 0] == pytest.approx(5.0) and ln[1, 0] == pytest.approx(2.0)
    np.testing.assert_allclose(d[0], [0.6, 0.8, 0.0])
    np.testing.assert_allclose(d[1], [0.0, 0.0, -1.0])
    np.testing.assert_allclose(bone_vectors(x, H36M17)[0], [3.0, 4.0, 0.0])


def test_zero_length_bone_gives_nan_like_the_reference():
    with np.errstate(invalid="ignore"):
        d, ln = joints_to_bones(np.zeros((17, 3)), H36M17)
    assert (ln == 0).all() and np.isnan(d).all()


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_round_trip_numpy_batched(skel):
    x = _poses((2, 5), seed=1)
    d, ln = joints_to_bones(x, skel)
    back = bones_to_joints(d, ln, skel, root=x[..., skel.root, :])
    np.testing.assert_allclose(back, x, atol=1e-12)
    rel = bones_to_joints(d, ln, skel)
    np.testing.assert_allclose(rel, x - x[..., skel.root : skel.root + 1, :], atol=1e-12)
    sd, sl = joints_to_slots(x, skel)
    d2, l2 = slots_to_bones(sd, sl, skel)
    np.testing.assert_array_equal(d2, d)
    np.testing.assert_array_equal(l2, ln)


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_round_trip_torch_batched(skel):
    x = torch.from_numpy(_poses((3, 2), seed=2))
    sd, sl = joints_to_slots(x, skel)
    d, ln = slots_to_bones(sd, sl, skel)
    back = bones_to_joints(d, ln, skel, root=x[..., skel.root, :])
    assert isinstance(back, torch.Tensor) and back.shape == x.shape
    torch.testing.assert_close(back, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_torch_transforms_are_differentiable(skel):
    x = torch.from_numpy(_poses((2,), seed=4)).requires_grad_(True)

    def through_slots(joints):
        sd, sl = joints_to_slots(joints, skel)
        d, ln = slots_to_bones(sd, sl, skel)
        return bones_to_joints(d, ln, skel, root=joints[..., skel.root, :])

    assert torch.autograd.gradcheck(through_slots, (x,), eps=1e-6, atol=1e-5)
    # Identity map: the gradient of the sum is exactly one everywhere.
    through_slots(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x), atol=1e-9, rtol=0)


def test_numpy_and_torch_agree():
    x = _poses((3,), seed=5).astype(np.float32)
    dn, ln = joints_to_bones(x, H36M17)
    dt, lt = joints_to_bones(torch.from_numpy(x), H36M17)
    np.testing.assert_allclose(dt.numpy(), dn, rtol=1e-6)
    np.testing.assert_allclose(lt.numpy(), ln, rtol=1e-6)


# --- flip -------------------------------------------------------------------------------------


@pytest.mark.parametrize("skel", LAYOUTS, ids=lambda s: s.name)
def test_flip_is_an_involution(skel):
    perm = skel.flip_permutation
    assert [perm[p] for p in perm] == list(range(17))
    for left, right in zip(skel.joints_left, skel.joints_right, strict=True):
        assert perm[left] == right and perm[right] == left
    x = _poses((2, 3), seed=6)
    np.testing.assert_array_equal(flip_joints(flip_joints(x, skel), skel), x)
    t = torch.from_numpy(x)
    torch.testing.assert_close(flip_joints(flip_joints(t, skel), skel), t, atol=0, rtol=0)
    np.testing.assert_array_equal(swap_left_right(swap_left_right(x, skel), skel), x)


def test_flip_hand_case_h36m():
    x = np.arange(17 * 2, dtype=np.float64).reshape(17, 2)
    f = flip_joints(x, H36M17)
    np.testing.assert_array_equal(f[4], [-x[1, 0], x[1, 1]])  # left hip <- mirrored right hip
    np.testing.assert_array_equal(f[16], [-x[13, 0], x[13, 1]])  # right wrist <- left wrist
    np.testing.assert_array_equal(f[9], [-x[9, 0], x[9, 1]])  # a centre joint stays in place
    np.testing.assert_array_equal(swap_left_right(x, H36M17)[1], x[4])


# --- 32 -> 17 and lookup ----------------------------------------------------------------------


def test_reduction_parents_equal_17_joint_parents():
    assert reduce_h36m32_parents() == H36M17.parents
    assert len(H36M32_PARENTS) == 32 and len(H36M32_KEPT) == 17


def test_reduce_h36m32_selects_kept_joints():
    x = np.arange(2 * 32 * 3, dtype=np.float32).reshape(2, 32, 3)
    out = reduce_h36m32(x)
    assert out.shape == (2, 17, 3)
    np.testing.assert_array_equal(out[:, 4], x[:, 6])  # 17-joint left hip = mocap joint 6
    np.testing.assert_array_equal(out[:, 16], x[:, 27])
    with pytest.raises(ValueError, match="32 joints"):
        reduce_h36m32(x[:, :17])


def test_get_skeleton():
    assert get_skeleton("h36m17") is H36M17 and get_skeleton("h36m") is H36M17
    assert get_skeleton("3dhp17") is MPI3DHP17 and get_skeleton("3dhp") is MPI3DHP17
    with pytest.raises(UnknownLayoutError, match="coco"):
        get_skeleton("coco42")


def test_device_index_tables_are_cached_and_never_pickled():
    import pickle

    skel = MPI3DHP17
    x = torch.randn(2, 5, 17, 3, dtype=torch.float64)
    # tensor paths (cached index tables) equal the list-indexing definitions
    assert torch.equal(bone_vectors(x, skel), x[..., list(skel.bone_slots), :]
                       - x[..., list(skel.bone_parents), :])
    mirrored = x[..., list(skel.flip_permutation), :] * x.new_tensor([-1.0, 1.0, 1.0])
    assert torch.equal(flip_joints(x, skel), mirrored)
    first = skel.index("bone_slots", torch.device("cpu"))
    assert skel.index("bone_slots", torch.device("cpu")) is first  # made once per device
    assert first.tolist() == list(skel.bone_slots)
    copy = pickle.loads(pickle.dumps(skel))
    assert copy == skel and copy._device_cache == {}
