"""``ddhpose render PRED.npz --out FILE.(gif|mp4|png)``: draw an ``ddhpose infer`` output.

The 2D panel shows the prediction file's ``keypoints_2d`` or, with ``--keypoints FILE``, a
keypoint file (read like ``ddhpose infer`` reads it). All hypotheses are drawn faintly when the
file holds them (``--save-hypotheses``), else the per-joint ``spread``.

A several-track output of ``ddhpose infer`` (a ``tracks`` list) is drawn side by side, one
column per track on the common frame numbering; ``--track ID`` draws one track as above.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ddhpose.keypoints.layouts import LAYOUTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", metavar="PRED", help="prediction .npz written by ddhpose infer")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output .gif, .mp4 (needs ffmpeg) or .png (a strip of frames)")
    parser.add_argument("--keypoints", default=None, metavar="FILE",
                        help="2D keypoints to show instead of the ones stored in PRED")
    parser.add_argument("--layout", choices=LAYOUTS, default=None,
                        help="layout of --keypoints when the file does not store it")
    parser.add_argument("--track", default=None, metavar="ID",
                        help="draw only this track of a several-track PRED (and of --keypoints)")
    parser.add_argument("--image-size", nargs=2, type=float, metavar=("W", "H"), default=None,
                        help="image size of --keypoints when the file does not store it")
    parser.add_argument("--fps", type=float, default=25.0, help="playback rate (default 25)")
    parser.add_argument("--max-frames", type=int, default=150, metavar="N",
                        help="animate at most N evenly spaced frames (default 150)")
    parser.add_argument("--title", default=None, help="figure title (default: PRED's name)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing FILE (never an input file)")


def _read_pred(path: Path) -> dict[str, np.ndarray]:
    from ddhpose.errors import DataError
    from ddhpose.io import read_npz

    if not path.is_file():
        raise DataError(path, "no such prediction file")
    data = read_npz(path, what="prediction npz file")
    if "tracks" in data and "poses_3d" not in data:
        return data
    if "poses_3d" not in data:
        raise DataError(path, "no 'poses_3d' array: is this a ddhpose infer output?")
    poses = data["poses_3d"]
    if poses.ndim != 3 or poses.shape[1:] != (17, 3):
        raise DataError(path, f"poses_3d must be (T, 17, 3), got {poses.shape}")
    if "layout" in data and str(data["layout"]) != "h36m17":
        raise DataError(path, f"layout '{data['layout']}' cannot be drawn (expected h36m17)")
    return data


def run(args: argparse.Namespace) -> int:
    from ddhpose.commands.infer import read_keypoints
    from ddhpose.errors import DataError
    from ddhpose.inference.render import render_sequence
    from ddhpose.io import check_outputs

    pred_path = Path(args.pred)
    check_outputs([args.out], inputs=[p for p in (args.pred, args.keypoints) if p],
                  force=args.force)
    data = _read_pred(pred_path)
    if "tracks" in data and "poses_3d" not in data:
        ids = [str(t) for t in np.asarray(data["tracks"]).reshape(-1)]
        if args.track is None:
            return _render_tracks(args, pred_path, data, ids)
        if args.track not in ids:
            raise DataError(pred_path, f"no track '{args.track}' (the file's tracks: "
                                       f"{', '.join(ids[:20])})")
        prefix = f"track_{args.track}_"
        data = {**{k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)},
                "aggregate": data.get("aggregate")}
        data = {k: v for k, v in data.items() if v is not None}
    elif args.track is not None and args.keypoints is None:
        raise DataError(pred_path, "--track: this prediction has no tracks")
    poses = data["poses_3d"]
    kp = data.get("keypoints_2d")
    if args.keypoints is not None:
        kp = read_keypoints(args, "render").xy
    if kp is not None and kp.shape != (poses.shape[0], 17, 2):
        raise DataError(args.keypoints or pred_path,
                        f"keypoints are {kp.shape}, the prediction has {poses.shape[0]} frames")
    if args.max_frames < 1 or not args.fps > 0:
        raise DataError(None, "--fps must be > 0 and --max-frames >= 1")
    hyp = data.get("hypotheses")
    spread = data.get("spread")
    title = args.title
    if title is None:
        agg = str(data["aggregate"]) if "aggregate" in data else "?"
        title = f"{pred_path.name} ({agg}, {poses.shape[0]} frames)"
    out = render_sequence(poses, args.out, keypoints_2d=kp, hypotheses=hyp,
                          spread=None if hyp is not None else spread, fps=args.fps,
                          title=title, max_frames=args.max_frames)
    print(f"wrote {out}: {poses.shape[0]} frames"
          f"{' (hypotheses shown)' if hyp is not None else ''}")
    return 0


def _render_tracks(args: argparse.Namespace, pred_path: Path, data: dict, ids: list[str]
                   ) -> int:
    """The tracks of a several-track prediction, side by side."""
    from ddhpose.errors import DataError
    from ddhpose.inference.render import render_tracks

    if args.keypoints is not None:
        raise DataError(args.keypoints, "--keypoints with a several-track prediction needs "
                                        "--track ID")
    if args.max_frames < 1 or not args.fps > 0:
        raise DataError(None, "--fps must be > 0 and --max-frames >= 1")
    tracks = {}
    for tid in ids:
        key = f"track_{tid}_poses_3d"
        if key not in data or f"track_{tid}_frames" not in data:
            raise DataError(pred_path, f"track {tid} has no '{key}' or frames array")
        poses = data[key]
        if poses.ndim != 3 or poses.shape[1:] != (17, 3):
            raise DataError(pred_path, f"{key} must be (T, 17, 3), got {poses.shape}")
        tracks[tid] = {"poses_3d": poses, "frames": data[f"track_{tid}_frames"],
                       "keypoints_2d": data.get(f"track_{tid}_keypoints_2d")}
    title = args.title
    if title is None:
        agg = str(data["aggregate"]) if "aggregate" in data else "?"
        title = f"{pred_path.name} ({agg}, {len(ids)} tracks)"
    out = render_tracks(tracks, args.out, fps=args.fps, title=title,
                        max_frames=args.max_frames)
    print(f"wrote {out}: {len(ids)} tracks side by side ({', '.join(ids[:20])})")
    return 0
