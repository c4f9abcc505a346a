"""The processed split format shared by Human3.6M and MPI-INF-3DHP (``data/processed/<split>.npz``).

Written by the preprocess stage, read by train / sample / evaluate. Frames of all sequences are
concatenated along one axis T; sequence ``s`` owns frames ``[seq_start[s], seq_start[s] +
seq_length[s])`` (contiguous, in order). Per frame:

- ``pose_2d`` float32 (T, 17, 2): normalised screen coordinates (the network input, docs/model.md
  "Cameras and projection");
- ``pose_3d`` float32 (T, 17, 3): camera-space, root-relative, metres, the root joint exactly 0
  (joint 0 for ``h36m17``, joint 14 for ``3dhp17``);
- ``traj`` float32 (T, 3): camera-space root position, metres;
- ``valid`` bool (T,): scored frames (all True for Human3.6M and 3DHP training);
- ``activity`` int16 (T,): 3DHP activity label, 0 = unknown.

Per sequence (S,): ``seq_start``, ``seq_length``, ``seq_camera`` int64; ``seq_name``,
``seq_subject``, ``seq_action`` unicode (the action is the full name, e.g. ``"Walking 1"``);
``intrinsic`` float32 (S, 9) normalised ``[fx, fy, cx, cy, k1, k2, k3, p1, p2]``; ``intrinsic_px``
float32 (S, 9) the same in pixels; ``res`` int64 (S, 2) image ``(width, height)`` px. Scalars:
``dataset`` (``h36m`` | ``3dhp``) and ``layout`` (``h36m17`` | ``3dhp17``). The file holds no
pickles (:func:`ddhpose.io.read_npz` refuses one in a processed split).

Builders: ``h36m_to_processed`` (VideoPose3D dicts) and ``mpi3dhp_to_processed`` (D3DP dicts;
see docs/model.md "Data files and cameras"), defined in :mod:`ddhpose.data.processed_build` and
importable from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ddhpose.errors import DataError
from ddhpose.io import atomic_open, file_sha256, read_npz
from ddhpose.skeleton import Skeleton, get_skeleton

DATASET_LAYOUTS = {"h36m": "h36m17", "3dhp": "3dhp17"}
NUM_JOINTS = 17
# name -> (dtype, per-row shape); frame arrays have T rows, sequence arrays S rows.
FRAME_ARRAYS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "pose_2d": (np.float32, (NUM_JOINTS, 2)),
    "pose_3d": (np.float32, (NUM_JOINTS, 3)),
    "traj": (np.float32, (3,)),
    "valid": (np.bool_, ()),
    "activity": (np.int16, ()),
}
SEQ_ARRAYS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "seq_start": (np.int64, ()),
    "seq_length": (np.int64, ()),
    "seq_name": (np.str_, ()),
    "seq_subject": (np.str_, ()),
    "seq_action": (np.str_, ()),
    "seq_camera": (np.int64, ()),
    "intrinsic": (np.float32, (9,)),
    "intrinsic_px": (np.float32, (9,)),
    "res": (np.int64, (2,)),
}
SCALARS = ("dataset", "layout")


@dataclass(frozen=True, eq=False)
class SequenceView:
    """One sequence of a split; the arrays are views into the split (no copies).

    Attributes:
        index: position in the split. name / subject / action / camera: identity.
        pose_2d (N, 17, 2), pose_3d (N, 17, 3), traj (N, 3), valid (N,), activity (N,).
        intrinsic / intrinsic_px: (9,) normalised / pixel camera. res: (width, height) px.
    """

    index: int
    name: str
    subject: str
    action: str
    camera: int
    pose_2d: np.ndarray
    pose_3d: np.ndarray
    traj: np.ndarray
    valid: np.ndarray
    activity: np.ndarray
    intrinsic: np.ndarray
    intrinsic_px: np.ndarray
    res: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return int(self.pose_2d.shape[0])


@dataclass(eq=False)
class ProcessedSplit:
    """All sequences of one split, frames concatenated (see the module docstring for fields)."""

    pose_2d: np.ndarray
    pose_3d: np.ndarray
    traj: np.ndarray
    valid: np.ndarray
    activity: np.ndarray
    seq_start: np.ndarray
    seq_length: np.ndarray
    seq_name: np.ndarray
    seq_subject: np.ndarray
    seq_action: np.ndarray
    seq_camera: np.ndarray
    intrinsic: np.ndarray
    intrinsic_px: np.ndarray
    res: np.ndarray
    dataset: str
    layout: str

    @property
    def skeleton(self) -> Skeleton:
        return get_skeleton(self.layout)

    @property
    def num_frames(self) -> int:
        return int(self.pose_2d.shape[0])

    @property
    def num_sequences(self) -> int:
        return int(self.seq_start.shape[0])

    def arrays(self) -> dict[str, Any]:
        """Every field by name (arrays and the two scalar strings)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, path: Any = None) -> ProcessedSplit:
        """Check dtypes, shapes, sequence bounds, finiteness and the zero root; returns self."""
        _validate(self, path)
        return self

    def sequence(self, index: int) -> SequenceView:
        """The ``index``-th sequence as views into the split's arrays."""
        lo = int(self.seq_start[index])
        hi = lo + int(self.seq_length[index])
        return SequenceView(
            index=index,
            name=str(self.seq_name[index]),
            subject=str(self.seq_subject[index]),
            action=str(self.seq_action[index]),
            camera=int(self.seq_camera[index]),
            pose_2d=self.pose_2d[lo:hi],
            pose_3d=self.pose_3d[lo:hi],
            traj=self.traj[lo:hi],
            valid=self.valid[lo:hi],
            activity=self.activity[lo:hi],
            intrinsic=self.intrinsic[index],
            intrinsic_px=self.intrinsic_px[index],
            res=(int(self.res[index, 0]), int(self.res[index, 1])),
        )

    def sequences(self) -> Iterator[SequenceView]:
        """Every sequence in order, as :class:`SequenceView` s."""
        for i in range(self.num_sequences):
            yield self.sequence(i)

    def select(
        self,
        subjects: str | Iterable[str] | None = None,
        actions: str | Iterable[str] | None = None,
    ) -> ProcessedSplit:
        """The sequences of the given subjects whose action starts with one of ``actions``.

        ``None`` or ``"*"`` selects all; a string is split at commas (``"S9,S11"``). Action
        prefixes match as in the reference's action filter (``"Walk"`` matches ``"Walking 1"``
        and ``"WalkDog"``). Returns a new split with copied arrays, in the original order.
        """
        keep = np.ones(self.num_sequences, dtype=bool)
        subj = parse_names(subjects)
        if subj is not None:
            keep &= np.isin(self.seq_subject, subj)
        prefixes = parse_names(actions)
        if prefixes is not None:
            keep &= np.array([a.startswith(tuple(prefixes)) for a in self.seq_action.tolist()],
                             dtype=bool)
        if not keep.any():
            raise DataError(None, f"no sequences match subjects={subj} actions={prefixes}")
        return take_sequences(self, np.flatnonzero(keep))


def parse_names(value: str | Iterable[str] | None) -> list[str] | None:
    """Selection list: None or one containing ``"*"`` -> None (= all); a string splits at commas."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    return None if "*" in items else items


def take_sequences(split: ProcessedSplit, indices: np.ndarray) -> ProcessedSplit:
    """A new split holding the sequences ``indices`` (S',) of ``split``, in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    lengths = split.seq_length[indices]
    new_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    frames = np.repeat(split.seq_start[indices] - new_start, lengths) + np.arange(total)
    out = {name: getattr(split, name)[frames] for name in FRAME_ARRAYS}
    out.update({name: getattr(split, name)[indices] for name in SEQ_ARRAYS})
    out["seq_start"] = new_start
    return ProcessedSplit(**out, dataset=split.dataset, layout=split.layout)


def concat_sequences(parts: list[dict[str, Any]], dataset: str, layout: str) -> ProcessedSplit:
    """Build a split from per-sequence dicts (frame arrays (N, ...) and per-sequence values)."""
    if not parts:
        raise DataError(None, "no sequences to write")
    out: dict[str, Any] = {}
    for name, (dtype, _) in FRAME_ARRAYS.items():
        out[name] = np.concatenate([np.asarray(p[name], dtype=dtype) for p in parts])
    lengths = np.array([len(p["pose_2d"]) for p in parts], dtype=np.int64)
    out["seq_length"] = lengths
    out["seq_start"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for name, (dtype, _) in SEQ_ARRAYS.items():
        if name not in ("seq_start", "seq_length"):
            out[name] = np.array([p[name] for p in parts], dtype=dtype)
    return ProcessedSplit(**out, dataset=dataset, layout=layout).validate()


# --- validation -----------------------------------------------------------------------------------


def _validate(split: ProcessedSplit, path: Any) -> None:
    if split.dataset not in DATASET_LAYOUTS:
        raise DataError(path, f"unknown dataset {split.dataset!r} (expected h36m or 3dhp)")
    if split.layout != DATASET_LAYOUTS[split.dataset]:
        raise DataError(path, f"layout {split.layout!r} does not belong to dataset "
                              f"{split.dataset!r} (expected {DATASET_LAYOUTS[split.dataset]!r})")
    for group, rows_name in ((FRAME_ARRAYS, "T"), (SEQ_ARRAYS, "S")):
        rows = None
        for name, (dtype, tail) in group.items():
            arr = getattr(split, name)
            if not isinstance(arr, np.ndarray):
                raise DataError(path, f"'{name}' is not an array")
            ok_dtype = arr.dtype.kind == "U" if dtype is np.str_ else arr.dtype == np.dtype(dtype)
            if not ok_dtype:
                raise DataError(path, f"'{name}' has dtype {arr.dtype}, expected "
                                      f"{'unicode' if dtype is np.str_ else np.dtype(dtype)}")
            if arr.ndim != 1 + len(tail) or arr.shape[1:] != tail:
                want = ", ".join([rows_name, *map(str, tail)])
                raise DataError(path, f"'{name}' has shape {arr.shape}, expected ({want})")
            rows = arr.shape[0] if rows is None else rows
            if arr.shape[0] != rows:
                raise DataError(path, f"'{name}' has {arr.shape[0]} rows, expected {rows} "
                                      f"({rows_name})")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DataError(path, f"'{name}' contains NaN or infinite values")
    n_seq, n_frames = split.seq_start.shape[0], split.pose_2d.shape[0]
    if n_seq == 0 or n_frames == 0:
        raise DataError(path, "empty split (no sequences or no frames)")
    if (split.seq_length < 1).any():
        raise DataError(path, "a sequence has no frames (seq_length < 1)")
    expected = np.concatenate([[0], np.cumsum(split.seq_length)[:-1]])
    if not np.array_equal(split.seq_start, expected) or int(split.seq_length.sum()) != n_frames:
        raise DataError(path, "seq_start/seq_length do not tile the frames contiguously in order")
    if len(set(split.seq_name.tolist())) != n_seq:
        raise DataError(path, "duplicate sequence names")
    if (split.res < 1).any():
        raise DataError(path, "'res' must be positive (width, height)")
    if (split.activity < 0).any():
        raise DataError(path, "'activity' must be >= 0 (0 = unknown)")
    root = get_skeleton(split.layout).root
    if (split.pose_3d[:, root] != 0).any():
        raise DataError(path, f"'pose_3d' root joint {root} is not zero (must be root-relative)")


# --- files ----------------------------------------------------------------------------------------


def save_split(path: str | Path, split: ProcessedSplit) -> None:
    """Validate ``split`` and write it to ``path`` (uncompressed npz, no pickles), atomically."""
    split.validate(path)
    arrays = {name: getattr(split, name) for name in (*FRAME_ARRAYS, *SEQ_ARRAYS)}
    scalars = {name: np.array(getattr(split, name), dtype=np.str_) for name in SCALARS}
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays, **scalars)


def load_split(path: str | Path) -> ProcessedSplit:
    """Read and validate a processed split written by :func:`save_split`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    wanted = (*FRAME_ARRAYS, *SEQ_ARRAYS, *SCALARS)
    raw = read_npz(path, wanted, what="processed split")
    for k in SCALARS:
        if raw[k].shape != () or raw[k].dtype.kind != "U":
            raise DataError(path, f"'{k}' must be a scalar string, got {raw[k].dtype} "
                                  f"{raw[k].shape}")
        raw[k] = str(raw[k])
    return ProcessedSplit(**raw).validate(path)


def manifest(split: ProcessedSplit, path: str | Path | None = None) -> dict[str, Any]:
    """A JSON-ready summary: dataset, layout, subjects, actions, cameras, counts, file checksum.

    ``subjects`` / ``actions`` keep their first-appearance order; ``sha256`` is that of ``path``
    (None when no path is given).
    """
    def ordered(values: np.ndarray) -> list[str]:
        return list(dict.fromkeys(values.tolist()))

    return {
        "dataset": split.dataset,
        "layout": split.layout,
        "subjects": ordered(split.seq_subject),
        "actions": ordered(split.seq_action),
        "cameras": sorted({int(c) for c in split.seq_camera}),
        "sequences": split.num_sequences,
        "frames": split.num_frames,
        "valid_frames": int(split.valid.sum()),
        "sequence_frames": {
            str(n): int(k) for n, k in zip(split.seq_name, split.seq_length, strict=True)
        },
        "file": None if path is None else str(path),
        "sha256": None if path is None else file_sha256(path),
    }

def ground_truth_fingerprint(split: ProcessedSplit) -> str:
    """16 hex digits identifying what a split is scored against: its dataset, sequence names,
    3D poses (float32 bytes) and valid-frame mask. Equal fingerprints = the same test data."""
    digest = hashlib.sha256(f"{split.dataset}|{split.layout}".encode())
    digest.update("|".join(map(str, split.seq_name.tolist())).encode())
    digest.update(np.ascontiguousarray(split.pose_3d, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(split.valid, dtype=bool).tobytes())
    return digest.hexdigest()[:16]


__all__ = [
    "DATASET_LAYOUTS",
    "ProcessedSplit",
    "SequenceView",
    "concat_sequences",
    "file_sha256",
    "ground_truth_fingerprint",
    "load_split",
    "manifest",
    "parse_names",
    "save_split",
    "take_sequences",
]
