"""``ddhpose infer --stream``: live lifting, JSON lines in, one JSON line per frame out.

Input, one frame per line (from stdin, or ``--keypoints FILE``; blank lines are skipped)::

    {"keypoints": [[u, v, confidence], ...J], "frame": 12}

``keypoints`` are pixels in ``--layout`` (J joints of it; ``[u, v]`` without a confidence is
accepted; ``null`` marks a missing value), ``frame`` an optional integer label, increasing from
line to line (default: the line's frame count from 0). A line ``{"end": true}`` ends the input;
so does the end of the file, except with ``--follow``, which waits for a growing file until that
line. ``--image-size W H`` is required; ``--layout`` is required for 17 joints (other joint
counts name their layout).

Output, one line per input frame, in order, flushed line by line, to stdout or ``--out
FILE.jsonl`` (a new file; an existing one only with ``--force``, never an input)::

    {"frame": 12, "pose_3d": [[x, y, z], ...17], "latency_frames": 13}

``pose_3d`` is root-relative metres in the Human3.6M-17 order (6 decimals); ``latency_frames`` is
how many frames had arrived after this one when it was written (the policy's latency, 0 for
``causal``, F // 2 for ``centred``; at the end of the input fewer). A bad line stops the command
with one line naming the line number and the cause (exit status 2); what was written before it
stays. The policies, padding and missing-joint rule: :mod:`ddhpose.inference.stream`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ddhpose.errors import DataError

POLL_SECONDS = 0.05  # --follow: wait between reads of a file that has not grown


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stream``, ``--policy``, ``--follow`` on ``ddhpose infer``."""
    parser.add_argument("--stream", action="store_true",
                        help="live: read one frame per JSON line (stdin or --keypoints) and "
                             "write one pose per frame as a JSON line (stdout or --out .jsonl)")
    parser.add_argument("--policy", choices=("centred", "causal"), default="centred",
                        help="--stream: centred (frame t waits for F//2 later frames) or causal "
                             "(no look-ahead, latency 0); default centred")
    parser.add_argument("--follow", action="store_true",
                        help="--stream --keypoints FILE: wait for the file to grow until a line "
                             '{"end": true}')


def _lines(source: TextIO, follow: bool) -> Iterator[str]:
    """Complete lines of ``source`` as they arrive; with ``follow`` an end of file means wait."""
    pending = ""
    while True:
        chunk = source.readline()
        if not chunk:
            if not follow:
                if pending:
                    yield pending
                return
            time.sleep(POLL_SECONDS)
            continue
        pending += chunk
        if pending.endswith("\n"):
            yield pending
            pending = ""


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a keypoint value must be a number or null, got {value!r}")
    return float(value)


def parse_line(text: str, joints: int) -> tuple[str, Any, int | None]:
    """One input line -> ("frame", (J, 2|3) list of floats, label or None), ("end", None,
    None) or ("skip", None, None); ValueError with the cause otherwise."""
    if not text.strip():
        return "skip", None, None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError("a line must be a JSON object with 'keypoints'")
    if doc.get("end") is True:
        return "end", None, None
    if "keypoints" not in doc:
        raise ValueError("no 'keypoints' (and not {\"end\": true})")
    kp = doc["keypoints"]
    if not isinstance(kp, list) or len(kp) != joints or not all(
            isinstance(j, list) and len(j) in (2, 3) for j in kp) or len({len(j) for j in kp}) > 1:
        raise ValueError(f"'keypoints' must be {joints} joints of [u, v] or [u, v, confidence]")
    values = [[_number(v) for v in j] for j in kp]
    label = doc.get("frame")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise ValueError(f"'frame' must be an integer, got {label!r}")
    return "frame", values, label


def run_stream(args: argparse.Namespace, *, check: Callable[[argparse.Namespace], None],
               local_checkpoint: Callable[[str, Path], Path],
               device_and_dtype: Callable[[argparse.Namespace], tuple[Any, Any]]) -> int:
    """``ddhpose infer --stream`` (``check``: infer's argument checks; ``local_checkpoint``:
    a path or MLflow URI -> a local checkpoint file; ``device_and_dtype``: infer's
    ``--device``/``--dtype``/``--no-tf32`` handling)."""
    from ddhpose.inference.stream import StreamLifter
    from ddhpose.io import check_outputs
    from ddhpose.model.checkpoint import load_model

    check(args)
    if args.follow and args.keypoints is None:
        raise DataError(None, "--follow needs --keypoints FILE (a growing JSON-lines file)")
    if args.image_size is None:
        raise DataError(args.keypoints, "--stream needs --image-size W H (pixels)")
    if args.track is not None:
        raise DataError(args.keypoints, "--track is not available with --stream (one person "
                                        "per line)")
    if args.save_hypotheses:
        raise DataError(args.keypoints, "--save-hypotheses is not available with --stream")
    if args.keypoints is not None and not Path(args.keypoints).is_file():
        raise DataError(args.keypoints, "no such file (--stream reads a JSON-lines file)")
    layout = args.layout
    if args.out is not None:
        if Path(args.out).suffix.lower() != ".jsonl":
            raise DataError(args.out, "--out must end in .jsonl with --stream")
        check_outputs([args.out], inputs=[p for p in (args.keypoints, args.checkpoint) if p],
                      force=args.force)
    _, dtype = device_and_dtype(args)
    with tempfile.TemporaryDirectory(prefix="ddhpose-infer-") as tmp:
        checkpoint = local_checkpoint(args.checkpoint, Path(tmp))
        model = load_model(checkpoint, map_location=args.device).to(args.device).eval()
    if args.steps > model.config.timesteps:
        raise DataError(args.checkpoint, f"--steps {args.steps} exceeds the model's "
                                         f"{model.config.timesteps} diffusion timesteps")
    name = args.keypoints or "<stdin>"
    make = functools.partial(
        StreamLifter, model, policy=args.policy, hypotheses=args.hypotheses, steps=args.steps,
        image_size=tuple(args.image_size), seed=args.seed, aggregate=args.aggregate,
        intrinsic=None if args.focal is None else _camera(args),
        min_confidence=args.min_confidence, max_batch=args.batch_windows, dtype=dtype)
    with contextlib.ExitStack() as stack:
        source = sys.stdin if args.keypoints is None else stack.enter_context(
            open(args.keypoints, encoding="utf-8"))
        out = sys.stdout if args.out is None else stack.enter_context(
            open(args.out, "w" if args.force else "x", encoding="utf-8"))
        try:
            lifter, count = _stream(make, _lines(source, args.follow), out, name, layout)
        except KeyboardInterrupt:  # Ctrl-C ends a live stream: the lines written stay
            print("ddhpose infer --stream: interrupted; the frames written so far stay",
                  file=sys.stderr)
            return 130
    where = args.out or "stdout"
    policy = f"{args.policy}, latency {lifter.latency_frames if lifter else 0} frame(s)"
    print(f"ddhpose infer --stream: {count} frame(s) -> {where} ({policy}, "
          f"H={args.hypotheses} K={args.steps} {args.aggregate})", file=sys.stderr)
    return 0


def _stream(make: Callable[..., Any], lines: Iterable[str], out: TextIO, name: str,
            layout: str | None) -> tuple[Any, int]:
    """Lift the frames of ``lines`` with ``make(layout=...)`` (a StreamLifter), writing each
    served pose to ``out`` as it comes; the lifter (None without frames) and the frame count.
    A bad line is a DataError naming ``name`` and the line number."""
    import numpy as np

    from ddhpose.keypoints import LAYOUT_BY_JOINTS, LAYOUT_TABLES

    lifter = None
    labels: list[int] = []

    def emit(served: list[tuple[int, Any]]) -> None:
        newest = len(labels) - 1
        for t, pose in served:
            out.write(json.dumps({"frame": labels[t], "pose_3d": np.round(
                pose.astype(np.float64), 6).tolist(), "latency_frames": newest - t},
                separators=(",", ":")) + "\n")
            out.flush()

    for lineno, text in enumerate(lines, 1):
        try:
            if lifter is None:  # the first frame fixes the layout
                kind, values, label = _first(text, layout, LAYOUT_BY_JOINTS)
                if kind == "frame":
                    layout = layout or LAYOUT_BY_JOINTS[len(values)]
                    lifter = make(layout=layout)
            else:
                kind, values, label = parse_line(text, LAYOUT_TABLES[layout].num_joints)
            if kind == "end":
                break
            if kind == "skip":
                continue
            if label is None:
                label = labels[-1] + 1 if labels else 0
            elif labels and label <= labels[-1]:
                raise ValueError(f"'frame' {label} does not follow frame {labels[-1]}")
            labels.append(label)
            served = lifter.push(np.asarray(values, dtype=np.float64))
        except ValueError as exc:
            raise DataError(f"{name}: line {lineno}", str(exc)) from None
        emit(served)
    if lifter is not None:
        try:
            emit(lifter.flush())
        except ValueError as exc:
            raise DataError(name, str(exc)) from None
    return lifter, len(labels)


def _first(text: str, layout: str | None, by_joints: dict[int, str]) -> tuple[str, Any, Any]:
    """The first frame line: its joint count names the layout when ``--layout`` is not given."""
    from ddhpose.keypoints import LAYOUT_TABLES

    if layout is not None:
        return parse_line(text, LAYOUT_TABLES[layout].num_joints)
    try:
        doc = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        doc = None
    joints = len(doc["keypoints"]) if isinstance(doc, dict) and isinstance(
        doc.get("keypoints"), list) else None
    if joints is not None and joints not in by_joints:
        same = [n for n, lay in LAYOUT_TABLES.items() if lay.num_joints == joints]
        if same:
            raise ValueError(f"{joints} joints can be {' or '.join(same)}: pass --layout")
        raise ValueError(f"{joints} joints match no layout (pass --layout)")
    return parse_line(text, joints if joints is not None else 0)


def _camera(args: argparse.Namespace) -> Any:
    from ddhpose.inference.infer import default_intrinsic

    return default_intrinsic(tuple(args.image_size), args.focal)
