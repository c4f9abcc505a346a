"""Stage ``preprocess``: the dataset's own files in ``data/raw`` ->
``data/processed/{train,test}.npz`` (camera-space, root-relative metres, normalised 2D) plus
``manifest.json``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.data.processed import ProcessedSplit, manifest, save_split
from ddhpose.errors import DataError
from ddhpose.io import probe_writable, write_json
from ddhpose.pipeline.paths import ProjectPaths

if TYPE_CHECKING:
    from ddhpose.pipeline.params import Params
    from ddhpose.pipeline.tracking import Tracker


def build_splits(params: Params, raw: Path) -> dict[str, ProcessedSplit]:
    """Read and validate the raw files of ``params.data.dataset``; return the train/test splits."""
    data = params.data
    if data.dataset == "h36m":
        from ddhpose.data.h36m import load_positions_2d, load_positions_3d, positions_2d_path
        from ddhpose.data.processed_build import h36m_to_processed

        pos3d = load_positions_3d(raw / "data_3d_h36m.npz")
        pos2d, _meta = load_positions_2d(positions_2d_path(raw, data.keypoints))
        actions = data.actions
        return {
            "train": h36m_to_processed(pos3d, pos2d, list(data.subjects_train), actions),
            "test": h36m_to_processed(pos3d, pos2d, list(data.subjects_test), actions),
        }
    from ddhpose.data.mpi3dhp import (
        annotations_to_test_data,
        load_3dhp_test,
        load_3dhp_train,
        load_test_annotations,
    )
    from ddhpose.data.processed_build import mpi3dhp_to_processed

    train = load_3dhp_train(raw / "data_train_3dhp_ori.npz")
    test_npz = raw / "data_test_3dhp_ori.npz"
    official = raw / "mpi_inf_3dhp_test_set"
    if test_npz.is_file():
        test = load_3dhp_test(test_npz)
    elif official.is_dir():
        test = annotations_to_test_data(load_test_annotations(official))
    else:
        raise DataError(raw, "no MPI-INF-3DHP test data: expected data_test_3dhp_ori.npz or "
                             "mpi_inf_3dhp_test_set/TS*/annot_data.mat (rerun fetch_data)")
    return {"train": mpi3dhp_to_processed(train, "train"),
            "test": mpi3dhp_to_processed(test, "test")}


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
    print(f"preprocess: train {splits['train'].num_frames} frames / "
          f"{splits['train'].num_sequences} sequences, test {splits['test'].num_frames} frames / "
          f"{splits['test'].num_sequences} sequences -> {paths.processed}")
