"""Reading any supported keypoint file as one or several Human3.6M-17 tracks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddhpose.errors import DataError
from ddhpose.keypoints.arrays import keypoints_from_array
from ddhpose.keypoints.detectors import (
    detector_json,
    is_mediapipe_csv,
    load_json,
    read_mediapipe_csv,
    read_openpose_dir,
)
from ddhpose.keypoints.readers import (
    Keypoints,
    RawTracks,
    check_layout,
    image_size_of,
    read_csv_file,
    read_json_doc,
    read_npz_file,
    resolve_layout,
)


@dataclass
class Tracks:
    """The people of a keypoint file, each lifted to Human3.6M-17 pixels, gaps filled per track.

    Attributes:
        tracks: track id -> :class:`Keypoints` (``frames`` gives each row's frame index), in
            the order of the file (a file without track ids has the one track ``"0"``).
        tracked: True when the file carries track / person ids.
        kind: the file's format (``ddhpose JSON``, ``OpenPose``, ``AlphaPose``, ...).
    """

    tracks: dict[str, Keypoints]
    tracked: bool
    kind: str


def read_raw(path: Path, layout: str | None) -> RawTracks:
    """Read a file (or an OpenPose folder) in any supported format, unconverted."""
    if path.is_dir():
        return read_openpose_dir(path)
    if not path.is_file():
        raise DataError(path, "no such keypoint file")
    ext = path.suffix.lower()
    if ext == ".npz":
        return read_npz_file(path)
    if ext == ".json":
        doc = load_json(path)
        return detector_json(path, doc) or read_json_doc(path, doc)
    if ext == ".csv":
        return read_mediapipe_csv(path) if is_mediapipe_csv(path) else read_csv_file(path,
                                                                                      layout)
    raise DataError(path, f"unknown keypoint file type '{ext}' (expected .npz, .json, .csv or "
                          "an OpenPose folder)")


def load_tracks(
    path: str | Path,
    layout: str | None = None,
    image_size: tuple[float, float] | None = None,
    *,
    min_confidence: float = 0.0,
    track: str | None = None,
    single: bool = False,
) -> Tracks:
    """Read a keypoint file as Human3.6M-17 pixel tracks, gaps filled per track.

    Args:
        path: our npz/JSON/CSV file, a detector's output file or an OpenPose folder.
        layout: the joint layout; needed when neither the file nor its joint count names it,
            else must agree with the file's.
        image_size: (w, h) pixels; wins over the file's.
        min_confidence: confidences below this count as missing (0 always does).
        track: keep only this track id (an error naming the ids when it is not in the file).
        single: a file of several tracks without ``track`` is an error.
    Returns:
        :class:`Tracks`, each track's ``xy`` (T_i, 17, 2) pixels.
    """
    path = Path(path)
    if layout is not None:
        check_layout(layout)
    raw = read_raw(path, layout)
    ids = list(raw.tracks)
    if track is not None:
        if not raw.tracked:
            raise DataError(path, f"--track {track}: the file has no track ids (one person)")
        if track not in raw.tracks:
            shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
            raise DataError(path, f"no track '{track}' (the file's tracks: {shown})")
        ids = [track]
    elif single and len(ids) > 1:
        shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
        raise DataError(path, f"{len(ids)} tracks ({shown}): choose one with --track ID")
    first = np.asarray(raw.tracks[ids[0]][1])
    joints = first.shape[1] if first.ndim == 3 else None
    if joints is None:
        chosen = layout or raw.layout
        if chosen is None:
            raise DataError(path, "no joint layout: store 'layout' in the file or pass --layout")
        check_layout(chosen)
    else:
        chosen = resolve_layout(path, joints, layout, raw.layout)
    size_src = image_size if image_size is not None else raw.image_size
    if size_src is None:
        raise DataError(path, "no image size: store 'image_size' [w, h] in the file or pass "
                              "--image-size W H")
    size = image_size_of(path, size_src)
    out = {}
    for tid in ids:
        frames, kp = raw.tracks[tid]
        if raw.normalized:
            kp = np.asarray(kp, dtype=np.float64).copy()
            kp[..., 0] *= size[0]
            kp[..., 1] *= size[1]
        out[tid] = keypoints_from_array(kp, chosen, size, min_confidence=min_confidence,
                                        source=path, frames=frames,
                                        track=tid if raw.tracked else None)
    return Tracks(out, raw.tracked, raw.kind)


def load_keypoints(
    path: str | Path,
    layout: str | None = None,
    image_size: tuple[float, float] | None = None,
    *,
    min_confidence: float = 0.0,
    track: str | None = None,
) -> Keypoints:
    """Read a keypoint file as one person's Human3.6M-17 pixels, gaps filled.

    As :func:`load_tracks`; a file of several tracks needs ``track``.
    Returns:
        :class:`Keypoints` with ``xy`` (T, 17, 2) pixels.
    """
    res = load_tracks(path, layout, image_size, min_confidence=min_confidence, track=track,
                      single=True)
    return next(iter(res.tracks.values()))


__all__ = ["Tracks", "load_keypoints", "load_tracks", "read_raw"]
