"""Sharded prediction: the sequences' parts assembled from any split of the sequences between
ranks equal one process's predictions bit for bit, because each sequence draws its own noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.evaluation.predict import (
    assemble_split,
    predict_sequences,
    predict_split,
    shard_sequences,
)
from ddhpose.model.ddhpose import DDHPose
from ddhpose.synthetic.smoke import synthetic_split


def test_shares_are_balanced_by_frames_and_cover_every_sequence_once():
    assert shard_sequences([10, 50, 20, 30], 2) == [[0, 1], [2, 3]]  # 60 | 50
    assert shard_sequences([5, 5, 5], 1) == [[0, 1, 2]]
    assert shard_sequences([7, 3], 4) == [[0], [1], [], []]  # more ranks than sequences
    shares = shard_sequences(list(range(1, 12)), 3)
    assert sorted(i for s in shares for i in s) == list(range(11))
    with pytest.raises(ValueError):
        shard_sequences([1], 0)


def _seq_gen(i: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + i)


@pytest.mark.parametrize("ranks", [2, 3, 7])  # uneven shares; 7 ranks > 5 sequences
def test_any_sharding_gives_the_single_process_arrays(ranks):
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()
    split = synthetic_split(sequences=5, frames=23, seed=3)
    kw = dict(hypotheses=2, steps=2, batch_clips=2, sequence_generator=_seq_gen)
    single = predict_split(model, split, **kw)
    parts = []
    for share in shard_sequences([int(n) for n in split.seq_length], ranks):
        parts.extend(predict_sequences(model, split, share, **kw))
    sharded = assemble_split(split, reversed(parts), hypotheses=2, steps=2)
    for name, arr in single.poses.items():
        assert np.array_equal(arr, sharded.poses[name]), name
    assert np.array_equal(single.batch_seq, sharded.batch_seq)
    assert np.array_equal(single.batch_frames, sharded.batch_frames)
    assert single.batch_errors.keys() == sharded.batch_errors.keys()
    for key, arr in single.batch_errors.items():
        assert np.array_equal(arr, sharded.batch_errors[key]), key
    assert single.spread is not None and single.spread.shape == (split.num_frames, 17)
    assert np.array_equal(single.spread, sharded.spread)


def test_a_missing_or_doubled_sequence_is_refused():
    model = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()
    split = synthetic_split(sequences=2, frames=12)
    parts = predict_sequences(model, split, [0, 1], hypotheses=1, steps=1, batch_clips=4,
                              sequence_generator=_seq_gen)
    with pytest.raises(ValueError, match=r"sequences \[1\] not predicted"):
        assemble_split(split, parts[:1], hypotheses=1, steps=1)
    with pytest.raises(ValueError, match="sequence 0 predicted twice"):
        assemble_split(split, [parts[0], *parts], hypotheses=1, steps=1)
