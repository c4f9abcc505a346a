"""Our own keypoint files (npz, JSON, CSV); an array's conversion to Human3.6M-17 and its gap
filling are in :mod:`ddhpose.keypoints.arrays`.

The file formats (pixels, origin top-left) are described in :mod:`ddhpose.keypoints`; the
layouts and their Human3.6M-17 tables in :mod:`ddhpose.keypoints.layouts`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.camera import normalize_screen_coordinates
from ddhpose.errors import DataError, UnknownLayoutError
from ddhpose.io import read_npz
from ddhpose.keypoints.layouts import (
    COCO17_NAMES,
    LAYOUT_BY_JOINTS,
    LAYOUT_TABLES,
    LAYOUTS,
    accepted_layouts,
)
from ddhpose.skeleton import H36M17

MAX_CSV_FRAMES = 1_000_000  # frame indices of a CSV file stay below this (5.5 h at 50 fps)
TRACK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class MissingKeypointsWarning(UserWarning):
    """Some keypoints were missing and have been interpolated in time."""


@dataclass
class Keypoints:
    """2D keypoints in the Human3.6M-17 layout, pixels, gaps filled.

    Attributes:
        xy: (T, 17, 2) float64 pixel coordinates, all finite.
        image_size: (w, h) pixels.
        source_layout: the layout of the file (one of :data:`LAYOUTS`).
        missing: (T, 17) bool, True where the value was interpolated.
        path: the file read.
        frames: (T,) int64 frame index of each row in the file's numbering (0..T-1 for a
            single-person file; a track's first to last frame for a tracked one).
        track: the track id (None for a single-person file).
    """

    xy: np.ndarray
    image_size: tuple[float, float]
    source_layout: str
    missing: np.ndarray
    path: str
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    track: str | None = None

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.xy):
            self.frames = np.arange(len(self.xy), dtype=np.int64)

    @property
    def layout(self) -> str:
        return H36M17.name

    @property
    def filled(self) -> int:
        """How many joint positions were interpolated."""
        return int(self.missing.sum())

    def normalized(self) -> np.ndarray:
        """(T, 17, 2) float32 normalised screen coordinates (docs/model.md
        "Cameras and projection")."""
        w, h = self.image_size
        return normalize_screen_coordinates(self.xy.astype(np.float32), w, h)


@dataclass
class RawTracks:
    """Keypoints as a file holds them, before conversion.

    Attributes:
        tracks: track id -> ((N,) int64 frame indices, increasing, no gaps; (N, J, C) float64
            pixels, C = 2 or 3 with confidence; NaN where the file has no value).
        layout: the layout the file names or its detector implies (None: unknown).
        image_size: the file's [w, h] in pixels, or None.
        tracked: True when the file carries track / person ids.
        kind: the format's name, for messages.
        normalized: x, y are fractions of the image (MediaPipe), to be scaled by its size.
    """

    tracks: dict[str, tuple[np.ndarray, np.ndarray]]
    layout: str | None
    image_size: Any
    tracked: bool
    kind: str
    normalized: bool = False


def single(kp: np.ndarray, layout: str | None, image_size: Any, kind: str) -> RawTracks:
    """One untracked (T, J, C) sequence as :class:`RawTracks` (track id ``"0"``)."""
    frames = np.arange(len(kp), dtype=np.int64) if np.ndim(kp) >= 1 else np.zeros(0, np.int64)
    return RawTracks({"0": (frames, kp)}, layout, image_size, False, kind)


def track_id(path: Any, value: Any) -> str:
    """A track id from a file as a string usable in output keys, else a :class:`DataError`."""
    if isinstance(value, list) and len(value) == 1:  # AlphaPose writes [id] in some versions
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if isinstance(value, bool) or not TRACK_ID.match(text):
        raise DataError(path, f"track id {value!r} must be 1-64 letters, digits, '_' or '-'")
    return text


def assemble(path: Any, rows: list[tuple[str, int, np.ndarray]], what: str
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(track, frame, (J, C) values) rows -> per track (frames first..last, (N, J, C) values),
    frames without a row NaN. Two rows for one track and frame are an error."""
    by_track: dict[str, dict[int, np.ndarray]] = {}
    for track, frame, values in rows:
        seen = by_track.setdefault(track, {})
        if frame in seen:
            raise DataError(path, f"{what} {track} appears twice in frame {frame}")
        seen[frame] = values
    out = {}
    for track, seen in by_track.items():
        first, last = min(seen), max(seen)
        shape = next(iter(seen.values())).shape
        kp = np.full((last - first + 1, *shape), np.nan)
        for frame, values in seen.items():
            if values.shape != shape:
                raise DataError(path, f"{what} {track}: frame {frame} has {values.shape[0]} "
                                      f"joints, others {shape[0]}")
            kp[frame - first] = values
        out[track] = (np.arange(first, last + 1, dtype=np.int64), kp)
    return out


# --- reading our three formats --------------------------------------------------------------------


def read_npz_file(path: Path) -> RawTracks:
    z = read_npz(path, what="keypoints npz file")
    if "keypoints" not in z:
        raise DataError(path, f"no 'keypoints' array (keys: {', '.join(z)})")
    try:
        kp = np.asarray(z["keypoints"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"'keypoints' is not a number array ({exc})") from exc
    layout = str(z["layout"]) if "layout" in z else None
    return single(kp, layout, z.get("image_size"), "ddhpose npz")


def _number_array(path: Path, value: Any, what: str) -> np.ndarray:
    try:
        return np.array(value, dtype=np.float64)  # null -> nan
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{what} is not a regular T x J x 2|3 number array ({exc})"
                        ) from exc


def read_json_doc(path: Path, doc: Any) -> RawTracks:
    """Our JSON: ``keypoints`` (one person) or ``tracks`` (several, each with an ``id``,
    ``keypoints`` and an optional first frame ``start``, default 0)."""
    if not isinstance(doc, dict) or ("keypoints" not in doc and "tracks" not in doc):
        raise DataError(path, "expected a JSON object with a 'keypoints' array or a 'tracks' "
                              "list (or a detector's output: OpenPose, AlphaPose, MMPose, "
                              "MediaPipe)")
    layout = doc.get("layout")
    if layout is not None and not isinstance(layout, str):
        raise DataError(path, f"'layout' must be a string, got {layout!r}")
    if "tracks" not in doc:
        kp = _number_array(path, doc["keypoints"], "'keypoints'")
        return single(kp, layout, doc.get("image_size"), "ddhpose JSON")
    tracks = doc["tracks"]
    if not isinstance(tracks, list) or not tracks:
        raise DataError(path, "'tracks' must be a non-empty list of {\"id\", \"keypoints\"}")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n, entry in enumerate(tracks):
        if not isinstance(entry, dict) or "id" not in entry or "keypoints" not in entry:
            raise DataError(path, f"tracks[{n}] must be an object with 'id' and 'keypoints'")
        tid = track_id(path, entry["id"])
        if tid in out:
            raise DataError(path, f"track id {tid} appears twice in 'tracks'")
        kp = _number_array(path, entry["keypoints"], f"tracks[{n}].keypoints")
        start = entry.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DataError(path, f"tracks[{n}].start must be a frame index >= 0, got {start!r}")
        out[tid] = (np.arange(start, start + len(kp), dtype=np.int64), kp)
    return RawTracks(out, layout, doc.get("image_size"), True, "ddhpose JSON")


def _csv_float(text: str | None) -> float:
    return float("nan") if text is None or text.strip() == "" else float(text)


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's stripped header and rows; unreadable or empty files are one-line errors."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"unreadable CSV ({exc})") from exc
    return header, rows


def read_csv_file(path: Path, layout: str | None) -> RawTracks:
    """Our CSV: ``frame,joint,u,v[,confidence]`` plus an optional ``track`` column."""
    header, rows = read_csv_rows(path)
    tracked = "track" in header
    cols = [c for c in header if c != "track"]
    if cols[:4] != ["frame", "joint", "u", "v"] or len(cols) > 5 or (
            len(cols) == 5 and cols[4] != "confidence"):
        raise DataError(path, f"CSV header must be frame,joint,u,v[,confidence] (and an "
                              f"optional track column), got {','.join(header) or '(empty)'}")
    if not rows:
        raise DataError(path, "CSV has no data rows")
    joints = LAYOUT_TABLES[layout].num_joints if layout in LAYOUT_TABLES else None
    names = ({n: i for i, n in enumerate(LAYOUT_TABLES[layout].joint_names)}
             if layout in LAYOUT_TABLES else {})
    channels = 3 if len(cols) == 5 else 2
    parsed = []
    for line, row in enumerate(rows, start=2):
        try:
            frame = int(row["frame"])
            jtext = row["joint"].strip()
            joint = int(jtext) if jtext.lstrip("-").isdigit() else names[jtext]
            values = [_csv_float(row[c]) for c in cols[2:]]
            track = track_id(path, row["track"]) if tracked else "0"
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, DataError):
                raise DataError(path, f"line {line}: {exc.problem}") from None
            if layout is None and isinstance(exc, KeyError) and str(row.get("joint")) in str(exc):
                raise DataError(path, f"line {line}: joint name {row['joint']!r} needs --layout "
                                      f"(accepted layouts: {accepted_layouts()})") from None
            raise DataError(path, f"line {line}: bad row {dict(row)} ({exc!r})") from exc
        top = joints if joints is not None else 17
        if joints is None and joint >= top:
            raise DataError(path, f"line {line}: joint {joint} needs --layout for more than 17 "
                                  f"joints (accepted layouts: {accepted_layouts()})")
        if frame < 0 or not 0 <= joint < top:
            raise DataError(path, f"line {line}: frame must be >= 0 and joint in 0..{top - 1}")
        parsed.append((frame, joint, values, line, track))
    _check_frame_range(path, parsed)
    n_joints = joints if joints is not None else 17
    cells: dict[str, dict[int, np.ndarray]] = {}
    seen_keys: set[tuple[str, int, int]] = set()
    for frame, joint, values, line, track in parsed:
        kp = cells.setdefault(track, {}).setdefault(frame, np.full((n_joints, channels), np.nan))
        if (track, frame, joint) in seen_keys:
            raise DataError(path, f"line {line}: duplicate row for frame {frame}, joint {joint}"
                                  + (f", track {track}" if tracked else ""))
        seen_keys.add((track, frame, joint))
        kp[joint] = values
    if not tracked:  # today's rule: T = largest frame + 1, from frame 0
        seen = cells["0"]
        kp = np.full((max(seen) + 1, n_joints, channels), np.nan)
        for frame, values in seen.items():
            kp[frame] = values
        return single(kp, None, None, "ddhpose CSV")
    rows_t = [(t, f, v) for t, per in cells.items() for f, v in per.items()]
    return RawTracks(assemble(path, rows_t, "track"), None, None, True, "ddhpose CSV")


def _check_frame_range(path: Path, parsed: list[tuple]) -> None:
    """Refuse a frame index that would make an absurd sequence (T = largest frame + 1): beyond
    :data:`MAX_CSV_FRAMES`, or leaving more than three quarters of the frames without any row
    (a typo in the frame column, e.g. 1000000 for 100; the gaps would be interpolated)."""
    top = max(p[0] for p in parsed)
    line = min(p[3] for p in parsed if p[0] == top)
    if top >= MAX_CSV_FRAMES:
        raise DataError(path, f"line {line}: frame {top} is beyond the largest frame index "
                              f"{MAX_CSV_FRAMES - 1} (a typo in the frame column?)")
    present = len({p[0] for p in parsed})
    if top + 1 >= 100 and top + 1 > 4 * present:
        raise DataError(path, f"line {line}: frame {top} makes a sequence of {top + 1} frames of "
                              f"which only {present} have rows (a typo in the frame column?)")


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is a keypoint layout this module reads, else raise."""
    if layout not in LAYOUTS:
        raise UnknownLayoutError(
            f"unknown keypoint layout '{layout}' (known: {', '.join(LAYOUTS)})"
        )
    return layout


def image_size_of(path: Any, size: Any) -> tuple[float, float]:
    try:
        arr = np.asarray(size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"image size must be two numbers [w, h], got {size!r}") from exc
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise DataError(path, f"image size must be two finite positive numbers [w, h] in "
                              f"pixels, got {np.asarray(size).tolist()!r}")
    return float(arr[0]), float(arr[1])


def resolve_layout(path: Any, joints: int, given: str | None, file_layout: str | None) -> str:
    """The layout of keypoints with ``joints`` joints: the given one, else the file's, else the
    one the joint count names (:data:`LAYOUT_BY_JOINTS`); it must have that many joints.
    Errors name the file, what was found and the accepted layouts, in one line."""
    if file_layout is not None:
        try:
            check_layout(file_layout)
        except UnknownLayoutError as exc:
            raise UnknownLayoutError(f"{path}: {exc}") from None
        if given is not None and given != file_layout:
            raise DataError(path, f"file says layout '{file_layout}' but '{given}' was given")
    layout = given or file_layout or LAYOUT_BY_JOINTS.get(joints)
    if layout is None:
        same = [n for n, lay in LAYOUT_TABLES.items() if lay.num_joints == joints]
        if same:
            raise DataError(path, f"no joint layout: {joints} joints can be "
                                  f"{' or '.join(same)}; store 'layout' in the file or pass "
                                  f"--layout")
        raise DataError(path, f"no joint layout: {joints} joints match no accepted layout "
                              f"({accepted_layouts()})")
    want = LAYOUT_TABLES[layout].num_joints
    if joints != want:
        raise DataError(path, f"keypoints must have shape (T, {want}, 2) or (T, {want}, 3) for "
                              f"layout {layout}, found {joints} joints (accepted layouts: "
                              f"{accepted_layouts()})")
    return layout


# --- conversion and gap filling -------------------------------------------------------------------


def save_keypoints_json(
    path: str | Path, keypoints: np.ndarray, layout: str, image_size: tuple[float, float],
    decimals: int = 2,
) -> None:
    """Write (T, J, 2|3) pixel keypoints in this module's JSON format (NaN -> null), atomically.

    Compact: one frame per line.
    """
    from ddhpose.io import atomic_open

    check_layout(layout)
    arr = np.round(np.asarray(keypoints, dtype=np.float64), decimals)
    frames = [json.dumps([[None if not np.isfinite(v) else float(v) for v in joint]
                          for joint in frame], separators=(",", ":")) for frame in arr]
    head = json.dumps({"layout": layout, "image_size": [float(s) for s in image_size]})
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(head[:-1] + ',\n "keypoints": [\n  ' + ",\n  ".join(frames) + "\n]}\n")


__all__ = [
    "COCO17_NAMES",
    "MAX_CSV_FRAMES",
    "Keypoints",
    "MissingKeypointsWarning",
    "RawTracks",
    "check_layout",
    "resolve_layout",
    "save_keypoints_json",
]
