"""Detector output files as the detectors write them, read as :class:`RawTracks`.

Coordinates are pixels (MediaPipe: normalised to the image, scaled by the image size later).
Confidence is each detector's per-keypoint score; a score of 0 or an absent point is missing,
as for our own files. Formats (read from each project's published description):

- **OpenPose** (``--write_json DIR``; doc/02_output.md "JSON Output Format"): a folder of
  per-frame ``<name>_<frame, 12 digits>_keypoints.json`` files, each
  ``{"version": ..., "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c, ...]}]}``;
  a missing point is written as 0, 0, 0. BODY_25 (75 numbers) is read; the frame number is the
  one in the file name (else the sorted order). A single such file is one frame. ``person_id``
  other than -1 is a track id.
- **AlphaPose** (``alphapose-results.json``; AlphaPose's output-format page): a list of
  ``{"image_id": "0.jpg", "category_id": 1, "keypoints": [x, y, c, ...], "score": s,
  "box": [...], "idx": track}``; the frame is the number in ``image_id`` (else the order of
  first appearance), ``idx`` (with ``--pose_track``; an int or a one-element list) the track.
  17 points are COCO (AlphaPose's COCO models), 26 Halpe-26, 133 COCO-WholeBody.
- **MMPose / RTMPose** (``MMPoseInferencer(..., pred_out_dir=DIR)`` or the demos'
  ``--save-predictions``): a list of ``{"frame_id": n, "instances": [...]}`` (a video), a list of
  instances (one image), or ``{"meta_info": {...}, "instance_info": [{"frame_id", "instances"}]}``;
  an instance is ``{"keypoints": [[x, y], ...], "keypoint_scores": [...], "bbox": ...,
  "track_id": id (optional)}``. ``meta_info.dataset_name`` names the layout when present.
- **MediaPipe** landmark dump (MediaPipe writes no file itself; this is its landmark fields
  as ``pose_landmarks`` gives them): JSON ``{"image_size": [w, h], "frames": [{"frame": n,
  "track": id (optional), "landmarks": [{"x": .., "y": .., "z": .., "visibility": ..}, ...33]}]}``
  or CSV with header ``frame,landmark,x,y[,z][,visibility][,presence][,track]``, ``landmark`` a
  0-based index or a name of :data:`~ddhpose.keypoints.layouts.MEDIAPIPE33_NAMES`; x, y are
  normalised to the image (0..1), the confidence is ``visibility``.

Without track ids, a frame with several people keeps the most confident one (mean keypoint
score) with one :class:`SeveralPeopleWarning`.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.keypoints.layouts import LAYOUT_BY_JOINTS, MEDIAPIPE33_NAMES, accepted_layouts
from ddhpose.keypoints.readers import RawTracks, assemble, read_csv_rows, track_id

_FRAME_IN_NAME = re.compile(r"(\d+)_keypoints\.json$")
_DIGITS = re.compile(r"(\d+)")
# MMPose dataset names (meta_info.dataset_name) -> our layouts
_MMPOSE_DATASETS = {"coco": "coco17", "h36m": "h36m17", "halpe26": "halpe26",
                    "coco_wholebody": "coco_wholebody133", "halpe": None}


class SeveralPeopleWarning(UserWarning):
    """A file without track ids had several people in a frame; the most confident was kept."""


def _flat_points(path: Any, flat: Any, what: str) -> np.ndarray:
    """[x, y, c, x, y, c, ...] -> (J, 3) float64; 0, 0, 0 stays (confidence 0 = missing)."""
    try:
        arr = np.asarray(flat, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{what} is not a list of numbers ({exc})") from exc
    if arr.size == 0 or arr.size % 3:
        raise DataError(path, f"{what} must hold x, y, confidence triples, got {arr.size} "
                              "numbers")
    return arr.reshape(-1, 3)


def _count_layout(path: Any, joints: int, kind: str, known: dict[int, str]) -> str | None:
    """The layout a detector's joint count implies (``known`` first), else None (ask)."""
    if joints in known:
        return known[joints]
    if joints in LAYOUT_BY_JOINTS:
        return LAYOUT_BY_JOINTS[joints]
    if joints == 17:
        return None
    raise DataError(path, f"{kind} keypoints with {joints} joints match no accepted layout "
                          f"({accepted_layouts()})")


def _confidence(values: np.ndarray) -> float:
    """Mean score of a detection's (J, 3) points that have one > 0 (-1 when none has)."""
    conf = values[:, 2]
    ok = np.isfinite(conf) & (conf > 0) & np.all(np.isfinite(values[:, :2]), axis=1)
    return float(conf[ok].mean()) if ok.any() else -1.0


def _pick(path: Any, people: list[tuple[int, str | None, np.ndarray]], kind: str,
          what: str = "track") -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], bool]:
    """(frame, track id or None, (J, C)) detections -> per-track sequences. With ids on every
    detection they are the tracks; else one track "0" keeping, per frame, the most confident."""
    if not people:
        raise DataError(path, f"{kind} file holds no person")
    if all(t is not None for _, t, _ in people):
        return assemble(path, [(str(t), f, v) for f, t, v in people], what), True
    best: dict[int, np.ndarray] = {}
    crowded = 0
    for frame, _, values in people:
        if frame in best:
            crowded += 1
            if _confidence(values) > _confidence(best[frame]):
                best[frame] = values
        else:
            best[frame] = values
    if crowded:
        warnings.warn(f"{path}: {crowded} extra person detection(s) without a track id; kept "
                      "the most confident person of each frame (give track ids to lift each "
                      "person)", SeveralPeopleWarning, stacklevel=3)
    return assemble(path, [("0", f, v) for f, v in best.items()], what), False


# --- OpenPose -------------------------------------------------------------------------------------


def _openpose_people(path: Path, doc: Any, frame: int) -> list[tuple[int, str | None, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise DataError(path, "expected an OpenPose frame {\"people\": [...]}")
    out = []
    for n, person in enumerate(doc["people"]):
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise DataError(path, f"people[{n}] has no 'pose_keypoints_2d'")
        pid = person.get("person_id", -1)
        pid = pid[0] if isinstance(pid, list) and len(pid) == 1 else pid
        tid = None if pid in (-1, None) else track_id(path, pid)
        out.append((frame, tid, _flat_points(path, person["pose_keypoints_2d"],
                                             f"people[{n}].pose_keypoints_2d")))
    return out


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable JSON ({exc})") from exc


def _openpose_result(path: Path, people: list, kind: str) -> RawTracks:
    tracks, tracked = _pick(path, people, kind)
    joints = next(iter(tracks.values()))[1].shape[1]
    if joints == 18:
        raise DataError(path, f"OpenPose keypoints with 18 joints (the COCO-18 model) are not "
                              f"read: run OpenPose with BODY_25 (accepted layouts: "
                              f"{accepted_layouts()})")
    layout = _count_layout(path, joints, kind, {25: "openpose25"})
    return RawTracks(tracks, layout, None, tracked, kind)


def read_openpose_dir(path: Path) -> RawTracks:
    """A folder of OpenPose ``*_keypoints.json`` files, one per frame."""
    files = sorted(path.glob("*_keypoints.json"))
    if not files:
        raise DataError(path, "folder holds no OpenPose *_keypoints.json file")
    numbers = [_FRAME_IN_NAME.search(f.name) for f in files]
    frames = [int(m.group(1)) for m in numbers] if all(numbers) else list(range(len(files)))
    if len(set(frames)) != len(frames):
        frames = list(range(len(files)))
    people = []
    for f, frame in zip(files, frames, strict=True):
        people += _openpose_people(f, load_json(f), frame)
    return _openpose_result(path, people, "OpenPose")


# --- AlphaPose ------------------------------------------------------------------------------------


def read_alphapose(path: Path, doc: list) -> RawTracks:
    ids = [str(e.get("image_id", "")) for e in doc]
    stems = [_DIGITS.findall(Path(i).stem) for i in ids]
    if all(stems):
        frame_of = {i: int(s[-1]) for i, s in zip(ids, stems, strict=True)}
    else:
        frame_of = {}
        for i in ids:
            frame_of.setdefault(i, len(frame_of))
    people = []
    for n, entry in enumerate(doc):
        if not isinstance(entry, dict) or "keypoints" not in entry:
            raise DataError(path, f"entry {n} has no 'keypoints'")
        tid = track_id(path, entry["idx"]) if "idx" in entry else None
        people.append((frame_of[str(entry.get("image_id", ""))], tid,
                       _flat_points(path, entry["keypoints"], f"entry {n} keypoints")))
    tracks, tracked = _pick(path, people, "AlphaPose")
    joints = next(iter(tracks.values()))[1].shape[1]
    layout = _count_layout(path, joints, "AlphaPose",
                           {17: "coco17", 26: "halpe26", 133: "coco_wholebody133"})
    return RawTracks(tracks, layout, None, tracked, "AlphaPose")


# --- MMPose ---------------------------------------------------------------------------------------


def _mmpose_instance(path: Path, inst: Any, where: str) -> tuple[str | None, np.ndarray]:
    if not isinstance(inst, dict) or "keypoints" not in inst:
        raise DataError(path, f"{where} has no 'keypoints'")
    try:
        xy = np.asarray(inst["keypoints"], dtype=np.float64)
        scores = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{where}: keypoints are not numbers ({exc})") from exc
    if xy.ndim == 3 and xy.shape[0] == 1:  # some versions keep a leading instance axis
        xy, scores = xy[0], scores.reshape(-1)
    if xy.ndim != 2 or xy.shape[1] != 2 or scores.shape != (len(xy),):
        raise DataError(path, f"{where}: keypoints must be J x [x, y] with J keypoint_scores, "
                              f"got {xy.shape} and {scores.shape}")
    tid = track_id(path, inst["track_id"]) if inst.get("track_id") is not None else None
    return tid, np.concatenate([xy, scores[:, None]], axis=1)


def read_mmpose(path: Path, doc: Any) -> RawTracks:
    layout_hint = None
    if isinstance(doc, dict):
        meta = doc.get("meta_info") or {}
        name = meta.get("dataset_name") if isinstance(meta, dict) else None
        layout_hint = _MMPOSE_DATASETS.get(str(name)) if name is not None else None
        doc = doc["instance_info"]
    if not isinstance(doc, list):
        raise DataError(path, "MMPose 'instance_info' must be a list")
    if doc and all(isinstance(e, dict) and "instances" in e for e in doc):
        frames = [(int(e.get("frame_id", n)), e["instances"]) for n, e in enumerate(doc)]
    else:
        frames = [(0, doc)]  # one image: a list of instances
    people = []
    for frame, instances in frames:
        for k, inst in enumerate(instances or []):
            tid, values = _mmpose_instance(path, inst, f"frame {frame} instance {k}")
            people.append((frame, tid, values))
    tracks, tracked = _pick(path, people, "MMPose")
    joints = next(iter(tracks.values()))[1].shape[1]
    layout = layout_hint or _count_layout(path, joints, "MMPose", {})
    return RawTracks(tracks, layout, None, tracked, "MMPose")


# --- MediaPipe ------------------------------------------------------------------------------------


def _landmarks(path: Path, marks: Any, where: str) -> np.ndarray:
    if not isinstance(marks, list) or len(marks) != 33:
        found = len(marks) if isinstance(marks, list) else type(marks).__name__
        raise DataError(path, f"{where}: MediaPipe pose has 33 landmarks, found {found} "
                              f"(accepted layouts: {accepted_layouts()})")
    out = np.full((33, 3), np.nan)
    for j, m in enumerate(marks):
        if m is None:
            continue
        if not isinstance(m, dict):
            raise DataError(path, f"{where}: landmark {j} must be an object with x, y")
        try:
            out[j] = [float("nan") if m.get(k) is None else float(m[k]) for k in ("x", "y")] + [
                float(m.get("visibility", 1.0) if m.get("visibility") is not None else 1.0)]
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"{where}: landmark {j} is not numbers ({exc})") from exc
    return out


def read_mediapipe_json(path: Path, doc: dict) -> RawTracks:
    entries = doc["frames"]
    if not isinstance(entries, list):
        raise DataError(path, "MediaPipe 'frames' must be a list")
    people = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or "landmarks" not in e:
            raise DataError(path, f"frames[{n}] has no 'landmarks'")
        frame = e.get("frame", n)
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise DataError(path, f"frames[{n}].frame must be an index >= 0, got {frame!r}")
        tid = track_id(path, e["track"]) if e.get("track") is not None else None
        people.append((frame, tid, _landmarks(path, e["landmarks"], f"frames[{n}]")))
    tracks, tracked = _pick(path, people, "MediaPipe")
    return RawTracks(tracks, "mediapipe33", doc.get("image_size"), tracked, "MediaPipe",
                     normalized=True)


def read_mediapipe_csv(path: Path) -> RawTracks:
    header, rows = read_csv_rows(path)
    allowed = {"frame", "landmark", "x", "y", "z", "visibility", "presence", "track"}
    if header[:4] != ["frame", "landmark", "x", "y"] or not set(header) <= allowed:
        raise DataError(path, f"MediaPipe CSV header must be frame,landmark,x,y[,z]"
                              f"[,visibility][,presence][,track], got {','.join(header)}")
    if not rows:
        raise DataError(path, "CSV has no data rows")
    names = {n: i for i, n in enumerate(MEDIAPIPE33_NAMES)}
    cells: dict[tuple[int, str | None], np.ndarray] = {}
    for line, row in enumerate(rows, start=2):
        try:
            frame = int(row["frame"])
            text = row["landmark"].strip()
            j = int(text) if text.isdigit() else names[text]
            x, y = (float("nan") if not row[c].strip() else float(row[c]) for c in ("x", "y"))
            vis = row.get("visibility")
            conf = float(vis) if vis is not None and vis.strip() else 1.0
            tid = track_id(path, row["track"]) if "track" in header else None
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(path, f"line {line}: bad row {dict(row)} ({exc!r})") from exc
        if frame < 0 or not 0 <= j < 33:
            raise DataError(path, f"line {line}: frame must be >= 0 and landmark in 0..32")
        pose = cells.setdefault((frame, tid), np.full((33, 3), np.nan))
        if not np.all(np.isnan(pose[j])):
            raise DataError(path, f"line {line}: duplicate row for frame {frame}, landmark {j}")
        pose[j] = (x, y, conf)
    people = [(f, t, v) for (f, t), v in cells.items()]
    tracks, tracked = _pick(path, people, "MediaPipe")
    return RawTracks(tracks, "mediapipe33", None, tracked, "MediaPipe", normalized=True)


# --- which format is it ---------------------------------------------------------------------------


def detector_json(path: Path, doc: Any) -> RawTracks | None:
    """The detector format of a parsed JSON document, read; None when it is none of them."""
    if isinstance(doc, dict) and "people" in doc:
        return _openpose_result(path, _openpose_people(path, doc, 0), "OpenPose")
    if isinstance(doc, dict) and "instance_info" in doc:
        return read_mmpose(path, doc)
    if isinstance(doc, dict) and "frames" in doc and "keypoints" not in doc:
        return read_mediapipe_json(path, doc)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        if "image_id" in doc[0]:
            return read_alphapose(path, doc)
        if "instances" in doc[0] or "keypoint_scores" in doc[0]:
            return read_mmpose(path, doc)
    return None


def is_mediapipe_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return [c.strip() for c in head.split(",")][:2] == ["frame", "landmark"]


__all__ = [
    "SeveralPeopleWarning",
    "detector_json",
    "is_mediapipe_csv",
    "load_json",
    "read_alphapose",
    "read_mediapipe_csv",
    "read_mediapipe_json",
    "read_mmpose",
    "read_openpose_dir",
]
