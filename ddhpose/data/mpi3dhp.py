"""MPI-INF-3DHP files: the processed npz files of D3DP and the official annotations.

Layouts (3D in mm, camera coordinates; 2D in pixels; joints in the 17-joint "relevant" order):

- ``data_train_3dhp_ori.npz``: key ``data`` -> ``{"S{s} Seq{q}": [ {camera: {"data_3d" (N,17,3),
  "data_2d" (N,17,2)}} ]}``;
- ``data_test_3dhp_ori.npz``: key ``data`` -> ``{"TS1".."TS6": {"data_3d" (N,17,3), "data_2d"
  (N,17,2), "valid" (N,), optional "activity" (N,)}}``;
- ``TS*/annot_data.mat`` (MATLAB v7.3 = HDF5; h5py shows the axes reversed, e.g. ``annot3`` as
  (N, 1, 17, 3)).

Every reader validates what it returns and raises :class:`ddhpose.errors.DataError` naming the
file and the problem.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.io import atomic_open

NUM_JOINTS = 17
TRAIN_KEY = re.compile(r"^S\d+ Seq\d+$")
TEST_KEY = re.compile(r"^TS[1-6]$")
ANNOT_KEYS = ("annot2", "annot3", "univ_annot3", "valid_frame", "activity_annotation")

# --- validation -----------------------------------------------------------------------------------


def _array(path: Any, where: str, value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """Check ``value`` is a finite numeric array of ``shape`` (None = any length)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise DataError(path, f"{where}: not an array ({exc})") from exc
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise DataError(path, f"{where}: expected a numeric array, got dtype {arr.dtype}")
    ok = arr.ndim == len(shape) and all(
        s is None or s == n for s, n in zip(shape, arr.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise DataError(path, f"{where}: expected shape {want}, got {arr.shape}")
    if arr.dtype != bool and not np.isfinite(arr).all():
        raise DataError(path, f"{where}: contains NaN or infinite values")
    return arr


def _frames_match(path: Any, where: str, arrays: dict[str, np.ndarray]) -> None:
    counts = {k: len(v) for k, v in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError(path, f"{where}: frame counts differ: {counts}")
    if 0 in counts.values():
        raise DataError(path, f"{where}: empty sequence")


def validate_3dhp_train(data: Any, path: Any = None) -> dict[str, list[dict[Any, dict]]]:
    """Check the train layout; returns it with arrays as float32 NumPy arrays."""
    if not isinstance(data, dict) or not data:
        raise DataError(path, "train data must be a non-empty dict 'S{s} Seq{q}' -> [cameras]")
    out: dict[str, list[dict[Any, dict]]] = {}
    for key, entry in data.items():
        if not isinstance(key, str) or not TRAIN_KEY.match(key):
            raise DataError(path, f"train key {key!r} is not of the form 'S<s> Seq<q>'")
        if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], dict):
            raise DataError(path, f"{key}: expected a list whose element 0 is a camera dict")
        if not entry[0]:
            raise DataError(path, f"{key}: no cameras")
        cams: dict[Any, dict] = {}
        for cam, seq in entry[0].items():
            where = f"{key} camera {cam}"
            if not isinstance(seq, dict):
                raise DataError(path, f"{where}: expected a dict with data_3d and data_2d")
            for name in ("data_3d", "data_2d"):
                if name not in seq:
                    raise DataError(path, f"{where}: missing key '{name}'")
            arrays = {
                "data_3d": _array(path, f"{where} data_3d", seq["data_3d"], (None, NUM_JOINTS, 3)),
                "data_2d": _array(path, f"{where} data_2d", seq["data_2d"], (None, NUM_JOINTS, 2)),
            }
            _frames_match(path, where, arrays)
            cams[cam] = {k: v.astype(np.float32) for k, v in arrays.items()}
        out[key] = [cams]
    return out


def validate_3dhp_test(data: Any, path: Any = None) -> dict[str, dict[str, np.ndarray]]:
    """Check the test layout; returns it with float32 poses, int8 valid, int64 activity."""
    if not isinstance(data, dict) or not data:
        raise DataError(path, "test data must be a non-empty dict 'TS<i>' -> sequence")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, seq in data.items():
        if not isinstance(key, str) or not TEST_KEY.match(key):
            raise DataError(path, f"test key {key!r} is not one of TS1..TS6")
        if not isinstance(seq, dict):
            raise DataError(path, f"{key}: expected a dict with data_3d, data_2d and valid")
        for name in ("data_3d", "data_2d", "valid"):
            if name not in seq:
                raise DataError(path, f"{key}: missing key '{name}'")
        arrays = {
            "data_3d": _array(path, f"{key} data_3d", seq["data_3d"], (None, NUM_JOINTS, 3)),
            "data_2d": _array(path, f"{key} data_2d", seq["data_2d"], (None, NUM_JOINTS, 2)),
            "valid": _array(path, f"{key} valid", seq["valid"], (None,)),
        }
        if seq.get("activity") is not None:
            arrays["activity"] = _array(path, f"{key} activity", seq["activity"], (None,))
        _frames_match(path, key, arrays)
        if not np.isin(arrays["valid"], (0, 1)).all():
            raise DataError(path, f"{key} valid: values must be 0/1")
        clean = {
            "data_3d": arrays["data_3d"].astype(np.float32),
            "data_2d": arrays["data_2d"].astype(np.float32),
            "valid": arrays["valid"].astype(np.int8),
        }
        if "activity" in arrays:
            clean["activity"] = arrays["activity"].astype(np.int64)
        out[key] = clean
    return out


# --- npz files ------------------------------------------------------------------------------------


def _load_npz_data(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with np.load(path, allow_pickle=True) as npz:
            if "data" not in npz.files:
                raise DataError(path, f"missing key 'data' (keys: {sorted(npz.files)})")
            raw = npz["data"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not a readable npz file (truncated or corrupt?): {exc}") from exc
    if raw.dtype == object and raw.shape == ():
        return raw.item()
    raise DataError(path, f"key 'data' must hold a pickled dict, got array {raw.shape} {raw.dtype}")


def _save_npz_data(path: str | Path, data: Any) -> None:
    obj = np.empty((), dtype=object)
    obj[()] = data
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, data=obj)


def save_3dhp_train(path: str | Path, data: dict) -> None:
    """Validate and write ``data_train_3dhp_ori.npz`` (atomically)."""
    _save_npz_data(path, validate_3dhp_train(data, path))


def save_3dhp_test(path: str | Path, data: dict) -> None:
    """Validate and write ``data_test_3dhp_ori.npz`` (atomically)."""
    _save_npz_data(path, validate_3dhp_test(data, path))


def load_3dhp_train(path: str | Path) -> dict[str, list[dict[Any, dict]]]:
    """Read and validate ``data_train_3dhp_ori.npz``."""
    return validate_3dhp_train(_load_npz_data(path), path)


def load_3dhp_test(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read and validate ``data_test_3dhp_ori.npz``."""
    return validate_3dhp_test(_load_npz_data(path), path)


# --- official annotations (annot_data.mat) --------------------------------------------------------


def _read_mat_variables(path: Path) -> dict[str, np.ndarray]:
    """The numeric variables of an annotation file, in h5py axis order (N, 1, 17, C)."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            return {k: np.asarray(fh[k][()]) for k in ANNOT_KEYS if k in fh}
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        v5 = _read_mat_v5(path)
        if v5 is None:
            raise DataError(path, f"not a readable MATLAB v7.3 (HDF5) file: {exc}") from exc
        return v5


def _read_mat_v5(path: Path) -> dict[str, np.ndarray] | None:
    """A pre-v7.3 MAT file (scipy): reverse the axes to match the HDF5 view."""
    import scipy.io

    try:
        raw = scipy.io.loadmat(path)
    except Exception:
        return None
    return {k: np.asarray(raw[k]).T for k in ANNOT_KEYS if k in raw}


def load_annot_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official ``annot_data.mat``.

    Returns:
        ``annot2`` (N, 17, 2) px, ``annot3`` (N, 17, 3) mm, ``univ_annot3`` (N, 17, 3) mm (float64),
        ``valid`` (N,) bool and ``activity`` (N,) int64.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    raw = _read_mat_variables(path)
    for key in ANNOT_KEYS:
        if key not in raw:
            raise DataError(path, f"missing variable '{key}'")
    out: dict[str, np.ndarray] = {}
    for key, name, c in (("annot2", "annot2", 2), ("annot3", "annot3", 3),
                         ("univ_annot3", "univ_annot3", 3)):
        arr = raw[key]
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        out[name] = _array(path, key, arr, (None, NUM_JOINTS, c)).astype(np.float64)
    for key, name in (("valid_frame", "valid"), ("activity_annotation", "activity")):
        arr = raw[key]
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        out[name] = _array(path, key, arr, (None,))
    _frames_match(path, "annotations", out)
    out["valid"] = out["valid"] != 0
    out["activity"] = out["activity"].astype(np.int64)
    return out


def load_test_annotations(directory: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read every ``TS*/annot_data.mat`` under ``directory``: ``{"TS5": load_annot_mat(...)}``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, "annotation directory not found")
    found = sorted(
        (p for p in directory.glob("TS*/annot_data.mat") if TEST_KEY.match(p.parent.name)),
        key=lambda p: int(p.parent.name[2:]),
    )
    if not found:
        raise DataError(directory, "no TS<i>/annot_data.mat files")
    return {p.parent.name: load_annot_mat(p) for p in found}


def annotations_to_test_data(
    annotations: dict[str, dict[str, np.ndarray]],
) -> dict[str, dict[str, np.ndarray]]:
    """Official annotations -> the ``data_test_3dhp_ori.npz`` layout (metric ``annot3``, "ori")."""
    data = {
        ts: {
            "data_3d": a["annot3"].astype(np.float32),
            "data_2d": a["annot2"].astype(np.float32),
            "valid": a["valid"].astype(np.int8),
            "activity": a["activity"].astype(np.int64),
        }
        for ts, a in annotations.items()
    }
    return validate_3dhp_test(data)


__all__ = [
    "annotations_to_test_data",
    "load_3dhp_test",
    "load_3dhp_train",
    "load_annot_mat",
    "load_test_annotations",
    "save_3dhp_test",
    "save_3dhp_train",
    "validate_3dhp_test",
    "validate_3dhp_train",
]
