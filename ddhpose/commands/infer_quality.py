"""What ``ddhpose infer`` adds about the quality of its output: the per-joint uncertainty, the
jitter, and the optional temporal filter ``--smooth [WINDOW]``.

- ``uncertainty`` (T, 17) metres: per joint and frame, the spread of the H hypotheses
  (:func:`ddhpose.evaluation.uncertainty.joint_spread`, the norm of the per-axis standard
  deviation); the older key ``spread`` holds the same array. 0 everywhere with H = 1.
- ``jitter`` (a float, metres per frame²): the mean acceleration magnitude of the output poses
  (:func:`ddhpose.evaluation.temporal.jitter`), after the filter when ``--smooth`` is given.
- ``--smooth [WINDOW]`` (off by default): a Savitzky–Golay filter of order 2 along time on the
  output poses (:func:`ddhpose.evaluation.temporal.smooth_poses`; hypotheses and uncertainty are
  not filtered). WINDOW is an odd number of frames >= 3; without it, the params key
  ``eval.smooth_window`` of the project's ``params.yaml`` (``DDHPOSE_ROOT`` or the current
  directory, else the checkout's), the window the evaluate stage measures the filter with.
  The output then records ``smooth_window`` (0 when off) and ``jitter_before_smooth``.

With several tracks each key is per track (``track_<id>_uncertainty``, ``track_<id>_jitter``,
``track_<id>_jitter_before_smooth``); ``smooth_window`` is shared.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

SMOOTH_KEY = "eval.smooth_window"


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """``--smooth [WINDOW]``."""
    parser.add_argument("--smooth", nargs="?", type=int, const=-1, default=None,
                        metavar="WINDOW",
                        help="Savitzky-Golay filter of the output poses over WINDOW frames (odd, "
                             ">= 3; without WINDOW the params key eval.smooth_window of "
                             "params.yaml); off by default")


def default_smooth_window() -> tuple[int, Path]:
    """``eval.smooth_window`` of the project's params.yaml (``DDHPOSE_ROOT`` or the current
    directory), else of the checkout's; with the file it came from. Only that key is read, so a
    params file of another version still gives it. :class:`DataError` when there is none."""
    from ddhpose.config.yamlfile import read_yaml
    from ddhpose.errors import DataError
    from ddhpose.project import REPO, project_root

    candidates = [project_root() / "params.yaml", REPO / "params.yaml"]
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            continue
        raw = read_yaml(path)
        value = raw.get("eval", {}).get("smooth_window") if isinstance(raw, dict) and \
            isinstance(raw.get("eval"), dict) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 3 or value % 2 == 0:
            raise DataError(path, f"params key '{SMOOTH_KEY}' is {value!r}, not a window (odd "
                                  ">= 3): give one with --smooth WINDOW")
        return value, path
    raise DataError(None, f"--smooth without WINDOW reads the params key '{SMOOTH_KEY}' from "
                          f"params.yaml, and there is none in {project_root()}: give the window "
                          "with --smooth WINDOW")


def check_smooth(args: argparse.Namespace) -> None:
    """Resolve ``args.smooth`` to a window (or None when off); one-line :class:`DataError` for
    an even or too small window."""
    from ddhpose.errors import DataError

    if args.smooth is None:
        return
    if args.smooth == -1:  # --smooth without a value
        args.smooth, _ = default_smooth_window()
    elif args.smooth < 3 or args.smooth % 2 == 0:
        raise DataError(None, f"--smooth must be an odd number of frames >= 3, got {args.smooth}")


def apply_quality(results: dict[str, Any], window: int | None) -> dict[str, dict[str, Any]]:
    """Per track, smooth ``poses_3d`` in place when ``window`` is given and measure the jitter.

    Args:
        results: track id -> :class:`~ddhpose.inference.infer.InferResult` (``poses_3d``
            (T, 17, 3) metres).
        window: the Savitzky–Golay window in frames, or None (off).
    Returns:
        track id -> {``uncertainty`` (T, 17) metres, ``jitter`` metres/frame² of the output
        poses, and with ``window`` ``jitter_before_smooth``}.
    """
    from ddhpose.evaluation.temporal import jitter, smooth_poses

    out = {}
    for tid, res in results.items():
        rec: dict[str, Any] = {"uncertainty": res.spread}
        if window is not None:
            rec["jitter_before_smooth"] = jitter(res.poses_3d)
            res.poses_3d = smooth_poses(res.poses_3d, window).astype(np.float32)
        rec["jitter"] = jitter(res.poses_3d)
        out[tid] = rec
    return out


def quality_content(records: dict[str, dict[str, Any]], window: int | None,
                    several: bool) -> dict[str, Any]:
    """The output keys: ``smooth_window`` and, per track (``track_<id>_...``) or at the top
    level for one person, ``uncertainty``, ``jitter`` (and ``jitter_before_smooth``)."""
    content: dict[str, Any] = {"smooth_window": 0 if window is None else int(window)}
    for tid, rec in records.items():
        prefix = f"track_{tid}_" if several else ""
        content.update({f"{prefix}{k}": v for k, v in rec.items()})
    return content


def quality_summary(records: dict[str, dict[str, Any]], window: int | None,
                    several: bool) -> str:
    """The summary line's jitter part, in mm/frame², e.g. ``jitter 4.10 mm/frame²`` or
    ``jitter 4.10 -> 1.25 mm/frame² (--smooth 9)``; per track with several people."""
    def one(rec: dict[str, Any]) -> str:
        after = f"{1000 * rec['jitter']:.2f}"
        return (f"{1000 * rec['jitter_before_smooth']:.2f} -> {after}"
                if "jitter_before_smooth" in rec else after)

    smooth = f" (--smooth {window})" if window is not None else ""
    if several:
        per = ", ".join(f"{tid}: {one(rec)}" for tid, rec in records.items())
        return f"jitter per track {per} mm/frame²{smooth}"
    return f"jitter {one(next(iter(records.values())))} mm/frame²{smooth}"


__all__ = ["add_quality_arguments", "apply_quality", "check_smooth", "default_smooth_window",
           "quality_content", "quality_summary"]
