"""Read 2D keypoints of your own videos (npz, JSON, CSV) as Human3.6M-17 pixel coordinates.

File formats (coordinates in **pixels**, origin top-left, u to the right, v down):

- **npz**: key ``keypoints`` (T, J, 2) or (T, J, 3) with a confidence channel; optional
  ``image_size`` = [w, h] and ``layout`` (a string, ``"h36m17"`` or ``"coco17"``).
- **JSON**: ``{"layout": "coco17" | "h36m17", "image_size": [w, h],
  "keypoints": [[[u, v(, conf)], ... J], ... T]}``; ``null`` stands for a missing value.
- **CSV**: long format, one row per (frame, joint), header ``frame,joint,u,v[,confidence]``;
  ``frame`` is a 0-based integer (T = largest frame + 1, below :data:`MAX_CSV_FRAMES`; at least
  a quarter of the T frames must have rows), ``joint`` a 0-based index or a joint
  name of the layout (see :data:`COCO17_NAMES`, ``ddhpose.skeleton.H36M17.joint_names``); rows
  may come in any order; absent rows and empty cells are missing. CSV holds neither layout nor
  image size: give them as arguments (``--layout``, ``--image-size`` on the command line).

An explicit ``layout``/``image_size`` argument wins over the file's; a layout given in both places
must agree. Layouts: ``h36m17`` (Human3.6M / VideoPose3D order, see ``ddhpose.skeleton.H36M17``)
and ``coco17`` (COCO order: nose, left/right eye, left/right ear, shoulders, elbows, wrists, hips,
knees, ankles, each left before right).

COCO-17 -> Human3.6M-17 (``L``/``R`` = COCO left/right, a missing source makes the result missing
unless a fallback is listed):

====================  ==========================================================================
H36M joint            formula
====================  ==========================================================================
0 pelvis              (L_hip + R_hip) / 2
1-3 right leg         R_hip, R_knee, R_ankle
4-6 left leg          L_hip, L_knee, L_ankle
8 thorax              (L_shoulder + R_shoulder) / 2
7 spine               (pelvis + thorax) / 2
10 head               mean of the eyes and ears that are present (1 to 4 points)
9 neck/nose           nose; if the nose is missing, (thorax + head) / 2
11-13 left arm        L_shoulder, L_elbow, L_wrist
14-16 right arm       R_shoulder, R_elbow, R_wrist
====================  ==========================================================================

Missing values: a keypoint is missing when u or v is NaN/null/absent, or its confidence is not
finite, is <= 0, or is below ``min_confidence``. After the conversion to Human3.6M-17, missing
joints are filled by linear interpolation in time, per joint (the first/last valid value is held
at the ends), with one :class:`MissingKeypointsWarning` giving the count. A joint missing in every
frame is an error.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.camera import normalize_screen_coordinates
from ddhpose.errors import DataError, UnknownLayoutError
from ddhpose.skeleton import H36M17

LAYOUTS = ("h36m17", "coco17")
MAX_CSV_FRAMES = 1_000_000  # frame indices of a CSV file stay below this (5.5 h at 50 fps)
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# H36M joint -> COCO joint, for the joints mapped directly.
_COCO_DIRECT = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8,
                16: 10}


class MissingKeypointsWarning(UserWarning):
    """Some keypoints were missing and have been interpolated in time."""


@dataclass
class Keypoints:
    """2D keypoints in the Human3.6M-17 layout, pixels, gaps filled.

    Attributes:
        xy: (T, 17, 2) float64 pixel coordinates, all finite.
        image_size: (w, h) pixels.
        source_layout: the layout of the file (``h36m17`` or ``coco17``).
        missing: (T, 17) bool, True where the value was interpolated.
        path: the file read.
    """

    xy: np.ndarray
    image_size: tuple[float, float]
    source_layout: str
    missing: np.ndarray
    path: str

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


# --- reading the three formats --------------------------------------------------------------------


def _read_npz(path: Path) -> tuple[np.ndarray, str | None, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "keypoints" not in z.files:
                raise DataError(path, f"no 'keypoints' array (keys: {', '.join(z.files)})")
            kp = np.asarray(z["keypoints"], dtype=np.float64)
            layout = str(z["layout"]) if "layout" in z.files else None
            size = z["image_size"] if "image_size" in z.files else None
    except DataError:
        raise
    except Exception as exc:  # bad zip, pickled objects, ...
        raise DataError(path, f"unreadable npz ({type(exc).__name__}: {exc})") from exc
    return kp, layout, size


def _read_json(path: Path) -> tuple[np.ndarray, str | None, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable JSON ({exc})") from exc
    if not isinstance(doc, dict) or "keypoints" not in doc:
        raise DataError(path, "expected a JSON object with a 'keypoints' array")
    try:
        kp = np.array(doc["keypoints"], dtype=np.float64)  # null -> nan
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"'keypoints' is not a regular T x J x 2|3 number array ({exc})"
                        ) from exc
    layout = doc.get("layout")
    if layout is not None and not isinstance(layout, str):
        raise DataError(path, f"'layout' must be a string, got {layout!r}")
    return kp, layout, doc.get("image_size")


def _csv_float(text: str | None) -> float:
    return float("nan") if text is None or text.strip() == "" else float(text)


def _read_csv(path: Path, layout: str | None) -> tuple[np.ndarray, str | None, Any]:
    names = {n: i for i, n in enumerate(_joint_names(layout))} if layout else {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in (reader.fieldnames or [])]
            need = ["frame", "joint", "u", "v"]
            if header[:4] != need or len(header) > 5 or (len(header) == 5
                                                          and header[4] != "confidence"):
                raise DataError(path, f"CSV header must be frame,joint,u,v[,confidence], got "
                                      f"{','.join(header) or '(empty)'}")
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"unreadable CSV ({exc})") from exc
    if not rows:
        raise DataError(path, "CSV has no data rows")
    channels = 3 if len(header) == 5 else 2
    parsed = []
    for line, row in enumerate(rows, start=2):
        try:
            frame = int(row["frame"])
            jtext = row["joint"].strip()
            joint = int(jtext) if jtext.lstrip("-").isdigit() else names[jtext]
            values = [_csv_float(row[c]) for c in header[2:]]
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(path, f"line {line}: bad row {dict(row)} ({exc!r})") from exc
        if frame < 0 or not 0 <= joint < 17:
            raise DataError(path, f"line {line}: frame must be >= 0 and joint in 0..16")
        parsed.append((frame, joint, values, line))
    _check_frame_range(path, parsed)
    kp = np.full((max(p[0] for p in parsed) + 1, 17, channels), np.nan)
    seen = np.zeros(kp.shape[:2], dtype=bool)
    for frame, joint, values, line in parsed:
        if seen[frame, joint]:
            raise DataError(path, f"line {line}: duplicate row for frame {frame}, joint {joint}")
        seen[frame, joint] = True
        kp[frame, joint] = values
    return kp, None, None


def _check_frame_range(path: Path, parsed: list[tuple[int, int, Any, int]]) -> None:
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


def _joint_names(layout: str) -> tuple[str, ...]:
    check_layout(layout)
    return COCO17_NAMES if layout == "coco17" else H36M17.joint_names


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is a keypoint layout this module reads, else raise."""
    if layout not in LAYOUTS:
        raise UnknownLayoutError(
            f"unknown keypoint layout '{layout}' (known: {', '.join(LAYOUTS)})"
        )
    return layout


def _image_size(path: Path, size: Any) -> tuple[float, float]:
    try:
        arr = np.asarray(size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"image size must be two numbers [w, h], got {size!r}") from exc
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise DataError(path, f"image size must be two finite positive numbers [w, h] in "
                              f"pixels, got {np.asarray(size).tolist()!r}")
    return float(arr[0]), float(arr[1])


# --- conversion and gap filling -------------------------------------------------------------------


def missing_mask(kp: np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """(T, J, 2|3) keypoints -> (T, J) bool: missing coordinates or low/zero confidence."""
    missing = ~np.all(np.isfinite(kp[..., :2]), axis=-1)
    if kp.shape[-1] == 3:
        conf = kp[..., 2]
        with np.errstate(invalid="ignore"):
            missing |= ~np.isfinite(conf) | (conf <= 0) | (conf < min_confidence)
    return missing


def coco17_to_h36m17(coco: np.ndarray) -> np.ndarray:
    """COCO-17 -> Human3.6M-17 with the module's formulas: (..., 17, 2) -> (..., 17, 2).

    Missing joints are NaN in and NaN out (except where a fallback formula applies).
    """
    if coco.shape[-2] != 17:
        raise ValueError(f"expected 17 COCO joints on axis -2, got shape {coco.shape}")
    out = np.full(coco.shape, np.nan, dtype=np.float64)
    for h, c in _COCO_DIRECT.items():
        out[..., h, :] = coco[..., c, :]
    out[..., 0, :] = (coco[..., 11, :] + coco[..., 12, :]) / 2
    out[..., 8, :] = (coco[..., 5, :] + coco[..., 6, :]) / 2
    out[..., 7, :] = (out[..., 0, :] + out[..., 8, :]) / 2
    face = coco[..., 1:5, :]  # eyes and ears
    present = np.all(np.isfinite(face), axis=-1, keepdims=True)
    count = present.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., 10, :] = np.where(present, face, 0.0).sum(axis=-2) / np.where(count, count, 0)
    nose = coco[..., 0, :]
    fallback = (out[..., 8, :] + out[..., 10, :]) / 2
    nose_ok = np.all(np.isfinite(nose), axis=-1, keepdims=True)
    out[..., 9, :] = np.where(nose_ok, nose, fallback)
    return out


def interpolate_missing(
    xy: np.ndarray, missing: np.ndarray, path: str | Path | None = None,
    names: tuple[str, ...] = H36M17.joint_names,
) -> np.ndarray:
    """Fill missing entries by linear interpolation in time, per joint: (T, J, 2) -> (T, J, 2).

    Ends hold the nearest valid value. Raises :class:`DataError` when a joint has no valid frame.
    """
    out = xy.astype(np.float64, copy=True)
    frames = np.arange(xy.shape[0])
    for j in range(xy.shape[1]):
        bad = missing[:, j]
        if not bad.any():
            continue
        if bad.all():
            raise DataError(path, f"joint {j} ({names[j]}) is missing in every frame")
        for c in range(xy.shape[2]):
            out[bad, j, c] = np.interp(frames[bad], frames[~bad], xy[~bad, j, c])
    return out


# --- entry point ----------------------------------------------------------------------------------


def load_keypoints(
    path: str | Path,
    layout: str | None = None,
    image_size: tuple[float, float] | None = None,
    *,
    min_confidence: float = 0.0,
) -> Keypoints:
    """Read a keypoint file (npz, json or csv by extension) as Human3.6M-17 pixels, gaps filled.

    Args:
        path: the file.
        layout: ``h36m17`` or ``coco17``; needed when the file stores none, else must agree.
        image_size: (w, h) pixels; wins over the file's.
        min_confidence: confidences below this count as missing (0 always does).
    Returns:
        :class:`Keypoints` with ``xy`` (T, 17, 2) pixels.
    """
    path = Path(path)
    if layout is not None:
        check_layout(layout)
    if not path.is_file():
        raise DataError(path, "no such keypoint file")
    ext = path.suffix.lower()
    if ext == ".npz":
        kp, file_layout, file_size = _read_npz(path)
    elif ext == ".json":
        kp, file_layout, file_size = _read_json(path)
    elif ext == ".csv":
        kp, file_layout, file_size = _read_csv(path, layout)
    else:
        raise DataError(path, f"unknown keypoint file type '{ext}' (expected .npz, .json, .csv)")
    if file_layout is not None:
        try:
            check_layout(file_layout)
        except UnknownLayoutError as exc:
            raise UnknownLayoutError(f"{path}: {exc}") from None
        if layout is not None and layout != file_layout:
            raise DataError(path, f"file says layout '{file_layout}' but '{layout}' was given")
    layout = layout or file_layout
    if layout is None:
        raise DataError(path, "no joint layout: store 'layout' in the file or pass --layout "
                              "(h36m17 or coco17)")
    if kp.ndim != 3 or kp.shape[1] != 17 or kp.shape[2] not in (2, 3) or kp.shape[0] < 1:
        raise DataError(path, f"keypoints must have shape (T, 17, 2) or (T, 17, 3) with T >= 1, "
                              f"got {kp.shape}")
    size_src = image_size if image_size is not None else file_size
    if size_src is None:
        raise DataError(path, "no image size: store 'image_size' [w, h] in the file or pass "
                              "--image-size W H")
    size = _image_size(path, size_src)
    coords = np.where(missing_mask(kp, min_confidence)[..., None], np.nan, kp[..., :2])
    if layout == "coco17":
        coords = coco17_to_h36m17(coords)
    missing = ~np.all(np.isfinite(coords), axis=-1)
    xy = interpolate_missing(coords, missing, path)
    if missing.any():
        warnings.warn(
            f"{path}: filled {int(missing.sum())} missing keypoint(s) of {missing.size} "
            f"({int(missing.any(axis=0).sum())} joint(s)) by linear interpolation in time",
            MissingKeypointsWarning, stacklevel=2,
        )
    return Keypoints(xy=xy, image_size=size, source_layout=layout, missing=missing, path=str(path))


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
    "LAYOUTS",
    "Keypoints",
    "MissingKeypointsWarning",
    "check_layout",
    "coco17_to_h36m17",
    "interpolate_missing",
    "load_keypoints",
    "missing_mask",
    "save_keypoints_json",
]
