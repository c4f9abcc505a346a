"""Read 2D keypoints of your own videos, or a 2D detector's output, as Human3.6M-17 pixels.

Modules: :mod:`~ddhpose.keypoints.layouts` (every joint layout, its source and its Human3.6M-17
table), :mod:`~ddhpose.keypoints.readers` (our npz/JSON/CSV files, conversion, gap filling),
:mod:`~ddhpose.keypoints.detectors` (OpenPose, AlphaPose, MMPose/RTMPose and MediaPipe output
files), :mod:`~ddhpose.keypoints.tracks` (any file -> one or several people).

Our file formats (coordinates in **pixels**, origin top-left, u to the right, v down):

- **npz**: key ``keypoints`` (T, J, 2) or (T, J, 3) with a confidence channel; optional
  ``image_size`` = [w, h] and ``layout`` (a string, one of :data:`LAYOUTS`).
- **JSON**: ``{"layout": ..., "image_size": [w, h], "keypoints": [[[u, v(, conf)], ... J],
  ... T]}``; ``null`` stands for a missing value. Several people: ``"tracks": [{"id": ID,
  "start": first frame (default 0), "keypoints": [... T_i frames]}, ...]`` instead of
  ``keypoints``.
- **CSV**: long format, one row per (frame, joint), header ``frame,joint,u,v[,confidence]``
  (plus an optional ``track`` column for several people); ``frame`` is a 0-based integer
  (T = largest frame + 1, below :data:`MAX_CSV_FRAMES`; at least a quarter of the T frames must
  have rows), ``joint`` a 0-based index or a joint name of the layout (see
  :mod:`~ddhpose.keypoints.layouts`); rows may come in any order; absent rows and empty cells are
  missing. CSV holds neither layout nor image size: give them as arguments (``--layout``,
  ``--image-size`` on the command line).

Detector files (read as written, see :mod:`~ddhpose.keypoints.detectors`): an OpenPose
``--write_json`` folder (or one of its ``*_keypoints.json``), AlphaPose's
``alphapose-results.json``, MMPose / RTMPose prediction JSON, and a MediaPipe landmark dump
(JSON or CSV, x and y normalised to the image).

Layouts: :data:`LAYOUTS` = ``h36m17``, ``coco17``, ``mpi_inf_3dhp17``, ``openpose25``,
``halpe26``, ``coco_wholebody133``, ``mediapipe33``. The number of joints picks the layout where
it is unambiguous (25, 26, 33, 133); 17 joints need the layout from the file or the argument
(AlphaPose's 17 are COCO). An explicit ``layout``/``image_size`` argument wins over the file's; a
layout given in both places must agree. A file whose joint count fits no layout, or not the
given one, is refused in one line naming the file, what was found and the accepted layouts.

Track ids (a ``track`` column, a ``tracks`` list, AlphaPose ``idx``, OpenPose ``person_id``,
MMPose ``track_id``, a MediaPipe ``track``) make one sequence per track, from its first to its
last frame, gaps filled per track; ids are 1-64 letters, digits, ``_`` or ``-``. Without ids a
frame with several people keeps the most confident one, with one warning.

Missing values: a keypoint is missing when u or v is NaN/null/absent, or its confidence is not
finite, is <= 0, or is below ``min_confidence``. After the conversion to Human3.6M-17 (the tables
in :mod:`~ddhpose.keypoints.layouts`; for COCO-17: pelvis = mid-hips, thorax = mid-shoulders,
spine between them, head = mean of the eyes and ears present, neck/nose = nose, else between
thorax and head), missing joints are filled by linear interpolation in time, per joint and per
track (the first/last valid value is held at the ends), with one
:class:`MissingKeypointsWarning` giving the count. A joint missing in every frame is an error
naming the source joints.
"""

from ddhpose.keypoints.arrays import (
    coco17_to_h36m17,
    interpolate_missing,
    keypoints_from_array,
    missing_mask,
)
from ddhpose.keypoints.detectors import SeveralPeopleWarning
from ddhpose.keypoints.layouts import (
    COCO17_NAMES,
    HALPE26_NAMES,
    LAYOUT_BY_JOINTS,
    LAYOUT_TABLES,
    LAYOUTS,
    MEDIAPIPE33_NAMES,
    OPENPOSE25_NAMES,
    WHOLEBODY133_NAMES,
    to_h36m17,
)
from ddhpose.keypoints.readers import (
    MAX_CSV_FRAMES,
    Keypoints,
    MissingKeypointsWarning,
    check_layout,
    save_keypoints_json,
)
from ddhpose.keypoints.tracks import Tracks, load_keypoints, load_tracks

__all__ = [
    "COCO17_NAMES",
    "HALPE26_NAMES",
    "LAYOUTS",
    "LAYOUT_BY_JOINTS",
    "LAYOUT_TABLES",
    "MAX_CSV_FRAMES",
    "MEDIAPIPE33_NAMES",
    "OPENPOSE25_NAMES",
    "WHOLEBODY133_NAMES",
    "Keypoints",
    "MissingKeypointsWarning",
    "SeveralPeopleWarning",
    "Tracks",
    "check_layout",
    "coco17_to_h36m17",
    "interpolate_missing",
    "keypoints_from_array",
    "load_keypoints",
    "load_tracks",
    "missing_mask",
    "save_keypoints_json",
    "to_h36m17",
]
