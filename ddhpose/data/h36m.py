"""Human3.6M files in the VideoPose3D layout (docs/model.md "Human3.6M files"): readers, writers and
cross-file checks.

- ``data_3d_h36m.npz``: key ``positions_3d`` -> pickled
  ``{subject: {action: (N, 32, 3) float32}}``, world coordinates in **metres** (an already reduced
  (N, 17, 3) file is accepted too).
- ``data_2d_h36m_<keypoints>.npz``: key ``positions_2d`` ->
  ``{subject: {action: [4 x (N, 17, 2)]}}`` in **pixels**, one array per camera in the order of
  :data:`ddhpose.camera.H36M_CAMERA_IDS`; key ``metadata`` ->
  ``{'layout_name': 'h36m', 'num_joints': 17, 'keypoints_symmetry': [left, right]}``.

The files hold pickled dicts (``np.savez_compressed`` of a dict object, as VideoPose3D writes them),
so loading needs ``allow_pickle=True``: only read files you trust. Every problem raises
:class:`ddhpose.errors.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.io import atomic_open
from ddhpose.skeleton import H36M17

Positions3D = dict[str, dict[str, np.ndarray]]
Positions2D = dict[str, dict[str, list[np.ndarray]]]

NUM_CAMERAS = 4
JOINTS_3D = (32, 17)
KEYPOINTS_SYMMETRY = (list(H36M17.joints_left), list(H36M17.joints_right))
DEFAULT_METADATA: dict[str, Any] = {
    "layout_name": "h36m",
    "num_joints": 17,
    "keypoints_symmetry": [list(KEYPOINTS_SYMMETRY[0]), list(KEYPOINTS_SYMMETRY[1])],
}


def positions_2d_path(directory: str | Path, keypoints: str) -> Path:
    """``directory / data_2d_h36m_<keypoints>.npz`` (e.g. keypoints ``cpn_ft_h36m_dbb``, ``gt``)."""
    if not keypoints or "/" in keypoints:
        raise ValueError(f"bad keypoint set name {keypoints!r}")
    return Path(directory) / f"data_2d_h36m_{keypoints}.npz"


# --- reading --------------------------------------------------------------------------------------


def _read_npz_objects(path: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Read pickled objects stored under ``keys`` of an npz archive."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    out: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=True) as npz:
            for key in keys:
                if key not in npz.files:
                    raise DataError(path, f"missing key '{key}' (keys: {sorted(npz.files)})")
                raw = npz[key]
                out[key] = raw.item() if raw.dtype == object and raw.shape == () else raw
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, zlib.error, UnpicklingError, ...
        kind = type(exc).__name__
        raise DataError(
            path, f"not a readable npz archive (truncated or corrupt?): {kind}: {exc}"
        ) from exc
    return out


def _check_array(
    path: Any, where: str, value: Any, joints: tuple[int, ...], dims: int
) -> np.ndarray:
    """A finite (N, J, dims) float array with N >= 1 and J in ``joints`` -> float32."""
    if not isinstance(value, np.ndarray) or not (
        np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    ):
        raise DataError(path, f"{where}: expected a numeric array, got {type(value).__name__}")
    if value.ndim != 3 or value.shape[1] not in joints or value.shape[2] != dims:
        want = " or ".join(f"(N, {j}, {dims})" for j in joints)
        raise DataError(path, f"{where}: expected shape {want}, got {value.shape}")
    if value.shape[0] == 0:
        raise DataError(path, f"{where}: empty sequence (0 frames)")
    if not np.isfinite(value).all():
        raise DataError(path, f"{where}: contains NaN or infinite values")
    return value.astype(np.float32, copy=False)


def _check_nested(path: Any, obj: Any, what: str) -> dict[str, dict[str, Any]]:
    if not isinstance(obj, dict) or not obj:
        raise DataError(path, f"'{what}' must be a non-empty dict subject -> action -> data")
    for subject, actions in obj.items():
        if not isinstance(subject, str):
            raise DataError(path, f"'{what}': subject key {subject!r} is not a string")
        if not isinstance(actions, dict) or not actions:
            raise DataError(path, f"'{what}' {subject}: expected a non-empty dict action -> data")
        for action in actions:
            if not isinstance(action, str):
                raise DataError(path, f"'{what}' {subject}: action key {action!r} is not a string")
    return obj


def validate_positions_3d(positions: Any, path: Any = None) -> Positions3D:
    """Check a ``positions_3d`` dict; returns a copy with float32 (N, 32|17, 3) arrays."""
    positions = _check_nested(path, positions, "positions_3d")
    out: Positions3D = {}
    joints: set[int] = set()
    for subject, actions in positions.items():
        out[subject] = {}
        for action, arr in actions.items():
            checked = _check_array(path, f"{subject} '{action}'", arr, JOINTS_3D, 3)
            joints.add(checked.shape[1])
            out[subject][action] = checked
    if len(joints) > 1:
        raise DataError(path, f"mixed joint counts {sorted(joints)} across sequences")
    return out


def validate_metadata(metadata: Any, path: Any = None) -> dict[str, Any]:
    """Check the 2D ``metadata`` names the Human3.6M 17-keypoint set (docs/model.md
    "Human3.6M files")."""
    if not isinstance(metadata, dict):
        raise DataError(path, f"'metadata' must be a dict, got {type(metadata).__name__}")
    for key in ("layout_name", "num_joints", "keypoints_symmetry"):
        if key not in metadata:
            raise DataError(path, f"'metadata' has no '{key}'")
    if metadata["layout_name"] != "h36m":
        raise DataError(path, f"unknown keypoint set: layout_name {metadata['layout_name']!r}, "
                              "expected 'h36m'")
    if metadata["num_joints"] != 17:
        raise DataError(path, f"unknown keypoint set: num_joints {metadata['num_joints']!r}, "
                              "expected 17")
    try:
        sym = [[int(j) for j in side] for side in metadata["keypoints_symmetry"]]
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"bad keypoints_symmetry: {exc}") from exc
    if sym != [list(KEYPOINTS_SYMMETRY[0]), list(KEYPOINTS_SYMMETRY[1])]:
        raise DataError(path, f"unknown keypoint set: keypoints_symmetry {sym}, expected "
                              f"{[list(s) for s in KEYPOINTS_SYMMETRY]}")
    return dict(metadata)


def validate_positions_2d(positions: Any, path: Any = None) -> Positions2D:
    """Check a ``positions_2d`` dict; returns a copy with 4 float32 (N, 17, 2) arrays per action."""
    positions = _check_nested(path, positions, "positions_2d")
    out: Positions2D = {}
    for subject, actions in positions.items():
        out[subject] = {}
        for action, cams in actions.items():
            where = f"{subject} '{action}'"
            if not isinstance(cams, (list, tuple)) or len(cams) != NUM_CAMERAS:
                got = len(cams) if isinstance(cams, (list, tuple)) else type(cams).__name__
                raise DataError(
                    path, f"{where}: expected a list of {NUM_CAMERAS} cameras, got {got}"
                )
            out[subject][action] = [
                _check_array(path, f"{where} camera {c}", arr, (17,), 2)
                for c, arr in enumerate(cams)
            ]
    return out


def load_positions_3d(path: str | Path) -> Positions3D:
    """Read ``data_3d_h36m.npz``: ``{subject: {action: (N, 32, 3) float32}}`` world metres."""
    return validate_positions_3d(_read_npz_objects(path, ("positions_3d",))["positions_3d"], path)


def load_positions_2d(path: str | Path) -> tuple[Positions2D, dict[str, Any]]:
    """Read ``data_2d_h36m_<kp>.npz``: (``{subject: {action: [4 x (N, 17, 2)]}}`` px, metadata)."""
    raw = _read_npz_objects(path, ("positions_2d", "metadata"))
    metadata = validate_metadata(raw["metadata"], path)
    return validate_positions_2d(raw["positions_2d"], path), metadata


# --- writing --------------------------------------------------------------------------------------


def _object(value: Any) -> np.ndarray:
    obj = np.empty((), dtype=object)
    obj[()] = value
    return obj


def save_positions_3d(path: str | Path, positions: Positions3D) -> None:
    """Validate and write ``positions`` as VideoPose3D does (``positions_3d`` = pickled dict)."""
    clean = validate_positions_3d(positions, path)
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, positions_3d=_object(clean))


def save_positions_2d(
    path: str | Path, positions: Positions2D, metadata: dict[str, Any] | None = None
) -> None:
    """Validate and write a 2D file (``positions_2d`` and ``metadata`` pickled dicts)."""
    meta = validate_metadata(DEFAULT_METADATA if metadata is None else metadata, path)
    clean = validate_positions_2d(positions, path)
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, positions_2d=_object(clean), metadata=_object(meta))


# --- the two files together -----------------------------------------------------------------------


def match_positions(
    positions_3d: Positions3D,
    positions_2d: Positions2D,
    path_2d: Any = None,
    path_3d: Any = None,
) -> Positions2D:
    """Check the 2D file covers the mocap exactly and truncate longer 2D sequences (docs/model.md
    "Human3.6M files").

    Every (subject, action) must be in both files (errors name the 2D file and mention the 3D
    file); a 2D camera sequence shorter than its mocap is an error, a longer one is cut to the
    mocap length (some videos have extra frames). Returns a new dict; arrays are views.
    """
    other = f" (3D file {path_3d})" if path_3d is not None else ""
    only_3d = sorted(set(positions_3d) - set(positions_2d))
    only_2d = sorted(set(positions_2d) - set(positions_3d))
    if only_3d or only_2d:
        raise DataError(path_2d, f"subjects differ from the 3D data{other}: only in 3D {only_3d}, "
                                 f"only in 2D {only_2d}")
    out: Positions2D = {}
    for subject, actions in positions_3d.items():
        a3, a2 = set(actions), set(positions_2d[subject])
        if a3 != a2:
            raise DataError(path_2d, f"{subject}: actions differ from the 3D data{other}: only in "
                                     f"3D {sorted(a3 - a2)}, only in 2D {sorted(a2 - a3)}")
        out[subject] = {}
        for action in positions_2d[subject]:
            cams = positions_2d[subject][action]
            if len(cams) != NUM_CAMERAS:
                raise DataError(path_2d, f"{subject} '{action}': expected {NUM_CAMERAS} cameras, "
                                         f"got {len(cams)}")
            n = actions[action].shape[0]
            for c, arr in enumerate(cams):
                if arr.shape[0] < n:
                    raise DataError(path_2d, f"{subject} '{action}' camera {c}: {arr.shape[0]} 2D "
                                             f"frames but {n} mocap frames{other}")
            out[subject][action] = [arr[:n] for arr in cams]
    return out


def load_h36m(
    path_3d: str | Path, path_2d: str | Path
) -> tuple[Positions3D, Positions2D, dict[str, Any]]:
    """Read both files and match them (:func:`match_positions`): (3D, truncated 2D, metadata)."""
    positions_3d = load_positions_3d(path_3d)
    positions_2d, metadata = load_positions_2d(path_2d)
    return positions_3d, match_positions(positions_3d, positions_2d, path_2d, path_3d), metadata


__all__ = [
    "DEFAULT_METADATA",
    "KEYPOINTS_SYMMETRY",
    "load_h36m",
    "load_positions_2d",
    "load_positions_3d",
    "match_positions",
    "positions_2d_path",
    "save_positions_2d",
    "save_positions_3d",
    "validate_metadata",
    "validate_positions_2d",
    "validate_positions_3d",
]
