"""Stage ``preprocess``: the dataset's own files in ``data/raw`` ->
``data/processed/{train,test}.npz`` (camera-space, root-relative metres, normalised 2D) plus
``manifest.json``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.data.processed import ProcessedSplit, manifest, save_split
from ddhpose.errors import ConfigError, DataError
from ddhpose.io import probe_writable, write_json
from ddhpose.project import ProjectPaths

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker


def _h36m_splits(raw: Path, *, keypoints: str, subjects_train: Any, subjects_test: Any,
                 actions: Any, test_only: bool) -> dict[str, ProcessedSplit]:
    """Human3.6M: check ``data.subjects_*`` / ``data.actions`` against the files (errors name the
    key), note ignored 2D extras once, build the splits."""
    from ddhpose.data.h36m import (
        extra_2d,
        load_positions_2d,
        load_positions_3d,
        positions_2d_path,
    )
    from ddhpose.data.processed_build import h36m_to_processed

    path_3d, path_2d = raw / "data_3d_h36m.npz", positions_2d_path(raw, keypoints)
    pos3d = load_positions_3d(path_3d)
    pos2d, _meta = load_positions_2d(path_2d)
    wanted = {"test": list(subjects_test)}
    if not test_only:
        wanted["train"] = list(subjects_train)
    for split, subjects in wanted.items():
        for s in subjects:
            if s not in pos3d:
                raise ConfigError(f"data.subjects_{split}", f"{s} is not in {path_3d} (it "
                                                            f"holds {', '.join(pos3d)})")
            if s not in pos2d:
                raise ConfigError(f"data.subjects_{split}", f"{s} is not in {path_2d} (it "
                                                            f"holds {', '.join(pos2d)})")
    used = [s for subjects in wanted.values() for s in subjects]
    if actions != "*":
        names = {a for s in used for a in pos3d[s]}
        for prefix in actions:
            if not any(a.startswith(prefix) for a in names):
                known = sorted({a.split(" ")[0] for a in names})
                raise ConfigError("data.actions", f"prefix {prefix!r} matches no action of "
                                                  f"{path_3d} (actions: {', '.join(known)})")
    ignored = extra_2d(pos3d, pos2d)
    if ignored:
        shown = ", ".join(ignored[:8]) + (f" and {len(ignored) - 8} more" if len(ignored) > 8
                                          else "")
        print(f"preprocess: note: {path_2d}: ignored {len(ignored)} 2D entr"
              f"{'y' if len(ignored) == 1 else 'ies'} without mocap in {path_3d.name}: {shown}")
    return {split: h36m_to_processed(pos3d, pos2d, subjects, actions, path_3d=path_3d,
                                     path_2d=path_2d)
            for split, subjects in wanted.items()}


def build_splits(params: Params, raw: Path) -> dict[str, ProcessedSplit]:
    """Read and validate the raw files of ``params.data.dataset``; return the train/test splits
    (the test split only with ``train.epochs: 0``: nothing is trained)."""
    data = params.data
    test_only = params.train.epochs == 0
    if data.dataset == "h36m":
        return _h36m_splits(raw, keypoints=data.keypoints, subjects_train=data.subjects_train,
                            subjects_test=data.subjects_test, actions=data.actions,
                            test_only=test_only)
    from ddhpose.data.mpi3dhp import (
        annotations_to_test_data,
        load_3dhp_test,
        load_3dhp_train,
        load_test_annotations,
    )
    from ddhpose.data.processed_build import mpi3dhp_to_processed

    test_npz = raw / "data_test_3dhp_ori.npz"
    official = raw / "mpi_inf_3dhp_test_set"
    if test_npz.is_file():
        test = load_3dhp_test(test_npz)
    elif official.is_dir():
        test = annotations_to_test_data(load_test_annotations(official))
    else:
        raise DataError(raw, "no MPI-INF-3DHP test data: expected data_test_3dhp_ori.npz or "
                             "mpi_inf_3dhp_test_set/TS*/annot_data.mat (rerun fetch_data)")
    splits = {"test": mpi3dhp_to_processed(test, "test")}
    if not test_only:
        splits["train"] = mpi3dhp_to_processed(load_3dhp_train(raw / "data_train_3dhp_ori.npz"),
                                               "train")
    return splits


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    probe_writable(paths.processed)  # a read-only data/ fails before the work
    splits = build_splits(params, paths.raw)
    info: dict[str, Any] = {}
    for name, split in splits.items():
        if split.num_sequences == 0:
            raise DataError(paths.raw, f"the {name} split is empty: check data.subjects_{name} "
                                       f"and data.actions in params.yaml")
        out = paths.split(name)
        save_split(out, split)
        info[name] = manifest(split, out)
    write_json(paths.processed / "manifest.json", info)
    tracker.log_params({"preprocess.dataset": params.data.dataset})
    tracker.log_metrics({f"{name}_frames": float(s.num_frames) for name, s in splits.items()}
                        | {f"{name}_sequences": float(s.num_sequences)
                           for name, s in splits.items()})
    tracker.log_artifact(paths.processed / "manifest.json", "data")
    shown = ", ".join(f"{name} {s.num_frames} frames / {s.num_sequences} sequences"
                      for name, s in sorted(splits.items(), reverse=True))
    print(f"preprocess: {shown} -> {paths.processed}")
