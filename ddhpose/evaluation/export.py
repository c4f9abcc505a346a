"""The MPI-INF-3DHP ``.mat`` export of the four aggregations (docs/model.md "The .mat export")
and its reader.

Files ``inference_data_{P_Best,P_Agg,J_Best,J_Agg}.mat`` each hold variables ``TS1``..``TS6``:
float64 arrays **(3, 17, N, K)** = (xyz, joint, frame, DDIM step) in **mm**, root-relative (joint
14 = 0), covering every frame of the sequence. The reader also accepts ``.npz`` files with the
same variables, and (3, 17, N) arrays as a single step.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.io import atomic_open

# Official file suffix -> our aggregation name (oracles named as such).
MAT_AGGREGATIONS = {
    "P_Best": "p_best_oracle",
    "P_Agg": "p_agg",
    "J_Best": "j_best_oracle",
    "J_Agg": "j_agg",
}
AGGREGATION_TO_MAT = {v: k for k, v in MAT_AGGREGATIONS.items()}
SEQ_VAR = re.compile(r"^TS[1-6]$")


def inference_mat_name(aggregation: str) -> str:
    """``inference_data_<P_Best|P_Agg|J_Best|J_Agg>.mat`` for an official or our name."""
    official = AGGREGATION_TO_MAT.get(aggregation, aggregation)
    if official not in MAT_AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{aggregation}' (known: {sorted(MAT_AGGREGATIONS)})")
    return f"inference_data_{official}.mat"


def aggregation_from_filename(path: str | Path) -> str | None:
    """The official aggregation (``J_Agg`` ...) named by an ``inference_data_*`` file, else None."""
    m = re.match(r"^inference_data_(P_Best|P_Agg|J_Best|J_Agg)$", Path(path).stem)
    return m.group(1) if m else None


def to_mat_layout(poses: Any) -> np.ndarray:
    """Poses (N, K, 17, 3) mm -> the export layout (3, 17, N, K) float64."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (N, K, J, 3) poses, got {arr.shape}")
    return np.ascontiguousarray(arr.transpose(3, 2, 0, 1))


def from_mat_layout(arr: Any) -> np.ndarray:
    """The export layout (3, 17, N, K) -> poses (N, K, 17, 3)."""
    arr = np.asarray(arr)
    if arr.ndim != 4 or arr.shape[0] != 3:
        raise ValueError(f"expected (3, J, N, K), got {arr.shape}")
    return arr.transpose(2, 3, 1, 0)


def validate_inference(arrays: dict[str, Any], path: Any = None) -> dict[str, np.ndarray]:
    """Check ``{"TS<i>": (3, 17, N, K) or (3, 17, N)}``; returns float64 (3, 17, N, K) arrays."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not SEQ_VAR.match(name):
            continue
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(path, f"variable {name}: expected numbers, got dtype {arr.dtype}")
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or arr.shape[:2] != (3, 17) or 0 in arr.shape:
            raise DataError(path, f"variable {name}: expected shape (3, 17, N, K), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise DataError(path, f"variable {name}: contains NaN or infinite values")
        out[name] = arr.astype(np.float64)
    if not out:
        raise DataError(path, "no TS1..TS6 variables")
    return dict(sorted(out.items(), key=lambda kv: int(kv[0][2:])))


def write_inference_mat(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Write ``{"TS<i>": (3, 17, N, K)}`` mm as a MATLAB file (scipy, v5), atomically."""
    import scipy.io

    clean = validate_inference(arrays, path)
    with atomic_open(path, "wb") as fh:
        scipy.io.savemat(fh, clean, do_compression=False)
    return Path(path)


def write_inference_mats(
    out_dir: str | Path, poses: dict[str, dict[str, Any]]
) -> dict[str, Path]:
    """Write the four files from ``{aggregation: {"TS<i>": (N, K, 17, 3) mm}}``.

    Aggregations may be named officially (``J_Agg``) or ours (``j_agg``, ``p_best_oracle``).
    Returns aggregation -> written path.
    """
    written = {}
    for agg, seqs in poses.items():
        path = Path(out_dir) / inference_mat_name(agg)
        written[agg] = write_inference_mat(path, {ts: to_mat_layout(p) for ts, p in seqs.items()})
    return written


def read_inference(path: str | Path) -> dict[str, np.ndarray]:
    """Read a prediction file (.mat v5 or v7.3, or .npz): ``{"TS<i>": (3, 17, N, K) float64}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(path, f"not a readable npz file (truncated?): {exc}") from exc
        return validate_inference(arrays, path)
    if path.suffix != ".mat":
        raise DataError(path, "prediction file must be .mat or .npz")
    return validate_inference(_read_mat(path), path)


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        raw = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5: h5py shows the axes reversed
        import h5py

        try:
            with h5py.File(path, "r") as fh:
                return {k: np.asarray(fh[k][()]).T for k in fh if SEQ_VAR.match(k)}
        except OSError as exc:
            raise DataError(path, f"not a readable MATLAB v7.3 file: {exc}") from exc
    except Exception as exc:
        raise DataError(path, f"not a readable MATLAB file (truncated or corrupt?): {exc}") from exc
    return {k: v for k, v in raw.items() if not k.startswith("__")}


__all__ = [
    "AGGREGATION_TO_MAT",
    "MAT_AGGREGATIONS",
    "aggregation_from_filename",
    "from_mat_layout",
    "inference_mat_name",
    "read_inference",
    "to_mat_layout",
    "validate_inference",
    "write_inference_mat",
    "write_inference_mats",
]


def mat_variable_name(sequence: str) -> str:
    """A MATLAB-legal variable name: ``"S9 Walking 1/cam0"`` -> ``S9_Walking_1_cam0``."""
    name = re.sub(r"\W", "_", sequence)
    return name if re.match(r"^[A-Za-z]", name) else f"seq_{name}"


def write_sequences_mat(path: str | Path, poses: dict[str, Any]) -> Path:
    """Write ``{sequence: (N, K, 17, 3) mm}`` in the export layout (3, 17, N, K) float64 under
    MATLAB-legal variable names (used for Human3.6M, whose sequences are not TS1..TS6)."""
    import scipy.io

    arrays = {mat_variable_name(s): to_mat_layout(p) for s, p in poses.items()}
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise DataError(path, f"variables {bad[:3]} contain NaN or infinite values")
    with atomic_open(path, "wb") as fh:
        scipy.io.savemat(fh, arrays, do_compression=True)
    return Path(path)
