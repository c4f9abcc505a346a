"""Training chunks, DDP shares and evaluation clips (docs/model.md "Training clips",
"Clip cutting")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddhpose.data.clips import (
    EpochPlan,
    TrainClips,
    chunk_starts,
    eval_clip_index,
    eval_clips,
    rank_share,
    sequence_eval_clips,
)
from ddhpose.data.processed import concat_sequences
from ddhpose.skeleton import H36M17, MPI3DHP17

LEFT, RIGHT = H36M17.joints_left, H36M17.joints_right


def _part(name: str, n: int, base: float, root: int = 0) -> dict:
    """A sequence whose values encode (frame, joint): 2D (t + base, j), 3D (t + base, j, 1)."""
    t = np.arange(n, dtype=np.float32)[:, None] + base
    j = np.arange(17, dtype=np.float32)[None, :]
    pose_2d = np.stack(np.broadcast_arrays(t, j), axis=-1)
    pose_3d = np.stack(np.broadcast_arrays(t, j, np.ones_like(t)), axis=-1).copy()
    pose_3d[:, root] = 0.0
    return {
        "pose_2d": pose_2d, "pose_3d": pose_3d, "traj": np.tile([[0.0, 0.0, 5.0]], (n, 1)) + t,
        "valid": np.arange(n) % 3 != 1, "activity": np.zeros(n, np.int16), "seq_name": name,
        "seq_subject": "S1", "seq_action": name, "seq_camera": 0, "intrinsic": np.zeros(9),
        "intrinsic_px": np.zeros(9), "res": (1000, 1000),
    }


def _split(*lengths: int):
    parts = [_part(f"seq{i}", n, 100.0 * i) for i, n in enumerate(lengths)]
    return concat_sequences(parts, "h36m", "h36m17")


def _flip(x: np.ndarray) -> np.ndarray:
    """Mirror by hand: swap the listed left/right joints, negate x."""
    out = x.copy()
    left, right = list(LEFT), list(RIGHT)
    out[..., left, :], out[..., right, :] = x[..., right, :], x[..., left, :]
    out[..., 0] *= -1
    return out


# --- training chunks --------------------------------------------------------------------------


def test_chunk_bounds_hand_example():
    # N = 10, F = 4: n = 3 chunks, offset (12 - 10) // 2 = 1 -> [-1, 3), [3, 7), [7, 11).
    assert chunk_starts(10, 4).tolist() == [-1, 3, 7]
    assert chunk_starts(8, 4).tolist() == [0, 4]
    assert chunk_starts(3, 4).tolist() == [0]  # (4 - 3) // 2 = 0: pad one frame at the end
    ds = TrainClips(_split(10), frames=4, augment=True, shuffle=False)
    assert ds.pairs.tolist() == [[0, -1, 3, 0], [0, 3, 7, 0], [0, 7, 11, 0],
                                 [0, -1, 3, 1], [0, 3, 7, 1], [0, 7, 11, 1]]
    assert ds.chunk_index.tolist() == [[0, 0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 9]]


def test_gather_edge_padding_and_root():
    split = _split(10)
    ds = TrainClips(split, frames=4, augment=False, shuffle=False)
    assert len(ds) == 3
    x2d, x3d = ds.gather([0, 2])
    assert x2d.shape == (2, 4, 17, 2) and x3d.shape == (2, 4, 17, 3)
    assert x2d.dtype == np.float32 and x3d.dtype == np.float32
    assert x2d[0, :, 5, 0].tolist() == [0, 0, 1, 2]  # first frame repeated
    assert x2d[1, :, 5, 0].tolist() == [7, 8, 9, 9]  # last frame repeated
    assert (x3d[..., 0, :] == 0).all()
    np.testing.assert_array_equal(x3d[1], split.pose_3d[[7, 8, 9, 9]])


def test_flip_augmentation():
    split = _split(10)
    ds = TrainClips(split, frames=4, augment=True, shuffle=False)
    x2d, x3d = ds.gather(np.arange(6))
    np.testing.assert_array_equal(x2d[3:], _flip(x2d[:3]))
    np.testing.assert_array_equal(x3d[3:], _flip(x3d[:3]))
    # By hand: the flipped left hip (4) of frame 4 is the mirrored right hip (1) of frame 4.
    assert x2d[4, 1, 4].tolist() == [-4.0, 1.0]
    assert x3d[4, 1, 14].tolist() == [-4.0, 11.0, 1.0]  # right shoulder <- left shoulder 11
    assert (x3d[..., 0, :] == 0).all()


def test_flip_uses_the_3dhp_tables():
    split = concat_sequences([_part("TS1", 5, 0.0, root=14)], "3dhp", "3dhp17")
    ds = TrainClips(split, frames=5, augment=True, shuffle=False)
    assert ds.skel is MPI3DHP17
    x2d, x3d = ds.gather([1])
    assert x2d[0, 2, 5].tolist() == [-2.0, 2.0]  # left shoulder 5 <- right shoulder 2
    assert (x3d[..., 14, :] == 0).all()


def test_pair_order_per_sequence():
    ds = TrainClips(_split(10, 3), frames=4, augment=True, shuffle=False)
    assert ds.pairs[:, [0, 1, 3]].tolist() == [[0, -1, 0], [0, 3, 0], [0, 7, 0], [0, -1, 1],
                                                [0, 3, 1], [0, 7, 1], [1, 0, 0], [1, 0, 1]]
    x2d, _ = ds.gather([6])
    assert x2d[0, :, 0, 0].tolist() == [100, 101, 102, 102]  # second sequence, padded at the end
    plain = TrainClips(_split(10, 3), frames=4, augment=False)
    assert len(plain) == 4 and not plain.pairs[:, 3].any()


def test_getitem_and_getitems_match_gather():
    ds = TrainClips(_split(10, 3), frames=4)
    x2d, x3d = ds.gather([5, 1, 7])
    b2d, b3d = ds.__getitems__([5, 1, 7])
    assert isinstance(b2d, torch.Tensor) and b2d.dtype == torch.float32
    np.testing.assert_array_equal(b2d.numpy(), x2d)
    np.testing.assert_array_equal(b3d.numpy(), x3d)
    s2d, s3d = ds[1]
    np.testing.assert_array_equal(s2d.numpy(), x2d[1])
    np.testing.assert_array_equal(s3d.numpy(), x3d[1])


# --- shuffling --------------------------------------------------------------------------------


def test_permutation_follows_the_reference_random_state():
    ds = TrainClips(_split(10, 3, 7), frames=4, shuffle_seed=1234)
    rs = np.random.RandomState(1234)  # the reference permutes its pair array each epoch
    for _ in range(3):
        plan = ds.plan(batch_clips=4)
        np.testing.assert_array_equal(ds.pairs[plan.order], rs.permutation(ds.pairs))


def test_state_save_restore_gives_identical_order():
    ds = TrainClips(_split(10, 3, 7), frames=4)
    ds.plan(4)
    state = ds.get_state()
    want = [ds.plan(4).order for _ in range(2)]
    fresh = TrainClips(_split(10, 3, 7), frames=4, shuffle_seed=99)
    fresh.set_state(state)
    got = [fresh.plan(4).order for _ in range(2)]
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
    legacy = TrainClips(_split(10, 3, 7), frames=4, shuffle_seed=5)
    legacy.set_state(np.random.RandomState(1234).get_state())  # the reference's tuple form
    np.testing.assert_array_equal(legacy.epoch_order(), TrainClips(_split(10, 3, 7),
                                                                   frames=4).epoch_order())


def test_batches_are_consecutive_slices():
    ds = TrainClips(_split(10, 3), frames=4)  # 8 pairs
    plan = ds.plan(batch_clips=3)
    batches = plan.global_batches()
    assert [len(b) for b in batches] == [3, 3, 2] and len(plan) == 3
    np.testing.assert_array_equal(np.concatenate(batches), plan.order)
    assert sorted(plan.order.tolist()) == list(range(8))


def test_epoch_batches_draw_now_and_gather_in_order():
    ds = TrainClips(_split(10, 3), frames=4)
    twin = TrainClips(_split(10, 3), frames=4)
    it = ds.epoch_batches(5)
    order = twin.plan(5).order
    assert ds.get_state()["state"]["pos"] == twin.get_state()["state"]["pos"]
    batches = list(it)
    assert [len(b[0]) for b in batches] == [5, 3]
    np.testing.assert_array_equal(batches[1][0], twin.gather(order[5:])[0])


# --- DDP shares -------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 8])
def test_rank_shares_cover_a_batch_exactly_once(n, world):
    covered = []
    for rank in range(world):
        offset, count = rank_share(n, rank, world)
        assert offset == len(covered)  # contiguous, in rank order
        covered.extend(range(offset, offset + count))
    assert covered == list(range(n))


def test_two_ranks_equal_the_single_process_batch():
    ds = TrainClips(_split(10, 3, 9), frames=4)
    plan = ds.plan(batch_clips=4)  # global batch 2b with b = 2 per rank
    r0, r1 = plan.rank_batches(0, 2), plan.rank_batches(1, 2)
    for g, a, b in zip(plan.global_batches(), r0, r1, strict=True):
        np.testing.assert_array_equal(np.concatenate([a, b]), g)
        assert len(a) == -(-len(g) // 2)
    with pytest.raises(ValueError):
        rank_share(4, 2, 2)


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_yields_the_rank_share(workers):
    ds = TrainClips(_split(10, 3), frames=4)
    plan = EpochPlan(np.random.RandomState(0).permutation(len(ds)), 3)
    loader = ds.loader(plan, rank=1, world_size=2, num_workers=workers)
    got = list(loader)
    shares = plan.rank_batches(1, 2)
    assert len(got) == len(shares)
    for (x2d, x3d), idx in zip(got, shares, strict=True):
        w2d, w3d = ds.gather(idx)
        np.testing.assert_array_equal(x2d.numpy(), w2d)
        np.testing.assert_array_equal(x3d.numpy(), w3d)


# --- evaluation clips -------------------------------------------------------------------------


def test_eval_clip_index_hand_examples():
    assert eval_clip_index(10, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert eval_clip_index(8, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert eval_clip_index(3, 4).tolist() == [[0, 1, 2, 2]]  # right-padded with the last frame


def test_sequence_eval_clips_and_write_back():
    part = _part("s", 10, 0.0)
    clips = sequence_eval_clips(part["pose_2d"], part["pose_3d"], 4, H36M17, traj=part["traj"],
                                valid=part["valid"], name="s")
    assert clips.x2d.shape == (3, 4, 17, 2) and clips.x3d.shape == (3, 4, 17, 3)
    assert clips.traj.shape == (3, 4, 3) and clips.valid.shape == (3, 4)
    assert clips.starts.tolist() == [0, 4, 6]
    assert clips.x2d[2, :, 3, 0].tolist() == [6, 7, 8, 9]
    np.testing.assert_array_equal(clips.x2d_flip, _flip(clips.x2d))
    np.testing.assert_array_equal(clips.traj[2, :, 2], [11, 12, 13, 14])
    assert clips.valid[1].tolist() == [False, True, True, False]  # frames 4..7, frame % 3 != 1
    assert (clips.x3d[..., 0, :] == 0).all()
    values = np.arange(3)[:, None] * 100 + np.arange(4)[None, :]  # clip c, position p
    assert clips.write_back(values).tolist() == [0, 1, 2, 3, 100, 101, 200, 201, 202, 203]
    per_frame = clips.write_back(clips.x2d)
    np.testing.assert_array_equal(per_frame, part["pose_2d"])


def test_short_sequence_is_right_padded():
    part = _part("s", 3, 0.0)
    clips = sequence_eval_clips(part["pose_2d"], part["pose_3d"], 4, H36M17)
    assert clips.x2d[0, :, 0, 0].tolist() == [0, 1, 2, 2]
    assert clips.write_back(np.array([[5, 6, 7, 8]])).tolist() == [5, 6, 7]
    assert clips.valid.all() and (clips.traj == 0).all()
    with pytest.raises(ValueError, match="shape"):
        clips.write_back(np.zeros((2, 4)))


def test_eval_clips_over_a_split():
    split = _split(10, 3)
    out = list(eval_clips(split, frames=4))
    assert [c.name for c in out] == ["seq0", "seq1"]
    assert [c.x2d.shape[0] for c in out] == [3, 1]
    assert out[1].x2d[0, :, 0, 0].tolist() == [100, 101, 102, 102]
