"""A frame index typo in a CSV keypoint file is refused with its line, not allocated."""

from __future__ import annotations

import pytest

from ddhpose.errors import DataError
from ddhpose.keypoints import MissingKeypointsWarning, load_keypoints


def _csv(path, frames):
    rows = ["frame,joint,u,v"] + [f"{f},{j},{100 + j},{200 + f}" for f in frames
                                  for j in range(17)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_frame_index_beyond_the_bound(tmp_path):
    path = _csv(tmp_path / "kp.csv", [0, 1, 2, 1000000000])
    with pytest.raises(DataError, match=r"line 53: frame 1000000000 is beyond"):
        load_keypoints(path, "h36m17", (640, 480))


def test_frame_index_leaving_most_frames_empty(tmp_path):
    path = _csv(tmp_path / "kp.csv", [*range(10), 5000])
    with pytest.raises(DataError, match=r"frame 5000 makes a sequence of 5001 frames of which "
                                        r"only 11 have rows"):
        load_keypoints(path, "h36m17", (640, 480))


def test_gaps_within_bounds_are_filled(tmp_path):
    path = _csv(tmp_path / "kp.csv", [*range(0, 120, 2)])  # every other frame: half present
    with pytest.warns(MissingKeypointsWarning, match="filled 1003 missing"):
        assert load_keypoints(path, "h36m17", (640, 480)).xy.shape == (119, 17, 2)
