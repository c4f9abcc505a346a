"""An array of 2D keypoints as :class:`~ddhpose.keypoints.readers.Keypoints`: which joints are
missing (NaN, or a confidence at or below the threshold), the conversion of the layout to
Human3.6M-17 (:mod:`ddhpose.keypoints.layouts`) and the linear interpolation of missing joints in
time.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.keypoints.layouts import (
    LAYOUT_TABLES,
    accepted_layouts,
    never_available,
    to_h36m17,
)
from ddhpose.keypoints.readers import (
    Keypoints,
    MissingKeypointsWarning,
    check_layout,
    image_size_of,
)
from ddhpose.skeleton import H36M17


def missing_mask(kp: np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """(T, J, 2|3) keypoints -> (T, J) bool: missing coordinates or low/zero confidence."""
    missing = ~np.all(np.isfinite(kp[..., :2]), axis=-1)
    if kp.shape[-1] == 3:
        conf = kp[..., 2]
        with np.errstate(invalid="ignore"):
            missing |= ~np.isfinite(conf) | (conf <= 0) | (conf < min_confidence)
    return missing


def coco17_to_h36m17(coco: np.ndarray) -> np.ndarray:
    """COCO-17 -> Human3.6M-17 with the coco17 table: (..., 17, 2) -> (..., 17, 2) pixels.

    Missing joints are NaN in and NaN out (except where a fallback formula applies).
    """
    if coco.shape[-2] != 17:
        raise ValueError(f"expected 17 COCO joints on axis -2, got shape {coco.shape}")
    return to_h36m17(coco, "coco17")


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


def keypoints_from_array(
    kp: Any,
    layout: str,
    image_size: Any,
    *,
    min_confidence: float = 0.0,
    source: str | Path = "<array>",
    frames: np.ndarray | None = None,
    track: str | None = None,
) -> Keypoints:
    """(T, J, 2|3) pixel keypoints (NaN or confidence 0 = missing) in ``layout`` (J joints) ->
    :class:`Keypoints` in Human3.6M-17 pixels, gaps filled. Errors name ``source``."""
    path = source
    check_layout(layout)
    want = LAYOUT_TABLES[layout].num_joints
    try:
        kp = np.asarray(kp, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"keypoints must be a T x {want} x 2|3 number array ({exc})"
                        ) from exc
    if kp.ndim != 3 or kp.shape[1] != want or kp.shape[2] not in (2, 3) or kp.shape[0] < 1:
        raise DataError(path, f"keypoints must have shape (T, {want}, 2) or (T, {want}, 3) with "
                              f"T >= 1 for layout {layout}, got {kp.shape} (accepted layouts: "
                              f"{accepted_layouts()})")
    size = image_size_of(path, image_size)
    coords = np.where(missing_mask(kp, min_confidence)[..., None], np.nan, kp[..., :2])
    if layout != "h36m17":
        absent = never_available(coords, layout)
        if absent:
            who = f"track {track}: " if track is not None else ""
            raise DataError(path, f"{who}{LAYOUT_TABLES[layout].source} keypoints: "
                                  f"{', '.join(absent)} missing in every frame (needed for the "
                                  "Human3.6M-17 conversion)")
        coords = to_h36m17(coords, layout)
    missing = ~np.all(np.isfinite(coords), axis=-1)
    xy = interpolate_missing(coords, missing, path)
    if missing.any():
        who = f" track {track}:" if track is not None else ""
        warnings.warn(
            f"{path}:{who} filled {int(missing.sum())} missing keypoint(s) of {missing.size} "
            f"({int(missing.any(axis=0).sum())} joint(s)) by linear interpolation in time",
            MissingKeypointsWarning, stacklevel=2,
        )
    return Keypoints(xy=xy, image_size=size, source_layout=layout, missing=missing,
                     path=str(path), frames=np.asarray(
                         np.arange(len(xy)) if frames is None else frames, dtype=np.int64),
                     track=track)


__all__ = ["coco17_to_h36m17", "interpolate_missing", "keypoints_from_array", "missing_mask"]
