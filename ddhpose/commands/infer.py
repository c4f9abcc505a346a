"""``ddhpose infer --checkpoint CKPT --keypoints FILE --out OUT.npz``: lift your own 2D keypoints
to root-relative 3D (metres). Writes OUT.npz and OUT.json with the same content, as a pair (both
new or, on any failure, both old); never over an input file, over an existing file only with
``--force``:

- ``poses_3d`` (T, 17, 3) metres, root joint = 0 (Human3.6M-17 order, camera axes);
- ``layout`` ("h36m17"), ``keypoints_2d`` (T, 17, 2) the input in pixels after conversion and
  gap filling, ``image_size`` [w, h];
- ``uncertainty`` (T, 17) metres, per joint the spread over the H hypotheses (0 with H = 1), and
  ``spread``, the same array under its older name; ``jitter`` (metres/frame²) the mean
  acceleration of ``poses_3d``; ``smooth_window`` (0 = off) and with ``--smooth [WINDOW]`` (the
  output poses filtered in time) ``jitter_before_smooth`` (:mod:`ddhpose.commands.infer_quality`);
- ``hypotheses`` (T, H, 17, 3) metres with ``--save-hypotheses``;
- ``root_translation`` (T, 3) metres and ``intrinsic_px`` (9,) with ``--aggregate j_agg``;
- settings: ``aggregate``, ``num_hypotheses``, ``steps``, ``seed``, ``precision`` (e.g.
  ``float32``, ``bfloat16-weights`` on a CPU, ``bfloat16-autocast`` or ``float32-tf32`` on a GPU),
  ``checkpoint``, ``keypoints_file``, ``source_layout``, ``filled`` (interpolated keypoints),
  ``runtime`` (``torch``, or ``onnx`` with ``--onnx FILE``: then ``checkpoint`` is that file);
  ``track`` with ``--track ID``.

A file with track ids (several people: AlphaPose ``idx``, a ``track`` column, a ``tracks`` list;
see :mod:`ddhpose.keypoints`) without ``--track`` gives one 3D sequence per track, keyed by id:
``tracks`` (N,) the ids (strings, in the file's order) and, per id, ``track_<id>_poses_3d``
(T_i, 17, 3) metres, ``track_<id>_frames`` (T_i,) the frame index of each row in the file's
numbering (first to last frame of the track, gaps filled), ``track_<id>_keypoints_2d``
(T_i, 17, 2) pixels, ``track_<id>_uncertainty`` and ``track_<id>_spread`` (the same (T_i, 17)
metres), ``track_<id>_jitter``, ``track_<id>_filled``, and with the options above
``track_<id>_hypotheses``, ``track_<id>_root_translation`` and ``track_<id>_jitter_before_smooth``;
the settings and ``layout``, ``image_size``, ``intrinsic_px``, ``smooth_window`` are shared, and
there is no top-level ``poses_3d``.
``--track ID`` gives today's single-person output for that track.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddhpose.inference import limits
from ddhpose.keypoints.layouts import LAYOUTS

if TYPE_CHECKING:
    from ddhpose.keypoints import Keypoints, Tracks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="model checkpoint (ours, or an authors' .bin) or an MLflow model "
                             "URI: models:/ddhpose-h36m@champion, models:/NAME/VERSION, "
                             "runs:/ID/PATH "
                             "(tracking server from MLFLOW_TRACKING_URI, else ./mlflow.db); "
                             "required unless --runtime onnx")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="torch (default) or onnx: the denoiser graph of --onnx on "
                             "onnxruntime (CPU, float32; see docs/deployment.md)")
    parser.add_argument("--onnx", metavar="FILE.onnx", default=None,
                        help="with --runtime onnx: a graph written by ddhpose export onnx (it "
                             "carries the model config; no --checkpoint)")
    parser.add_argument("--keypoints", metavar="FILE",
                        help="2D keypoints in pixels: our .npz, .json or .csv, an OpenPose "
                             "--write_json folder, AlphaPose alphapose-results.json, MMPose "
                             "predictions or a MediaPipe landmark dump (see ddhpose.keypoints); "
                             "required unless --stream (then JSON lines, default stdin)")
    parser.add_argument("--out", metavar="OUT",
                        help="output .npz (a .json with the same content is written next to it); "
                             "required unless --stream (then a .jsonl, default stdout)")
    parser.add_argument("--layout", choices=LAYOUTS, default=None,
                        help="keypoint layout when neither the file nor its joint count names "
                             "it (17 joints)")
    parser.add_argument("--track", default=None, metavar="ID",
                        help="lift only this track (person) id of a file with track ids")
    parser.add_argument("--image-size", nargs=2, type=float, metavar=("W", "H"), default=None,
                        help="image width and height in pixels (overrides the file's)")
    parser.add_argument("--hypotheses", type=int, default=1, metavar="H",
                        help="number of hypotheses H (default 1)")
    parser.add_argument("--steps", type=int, default=1, metavar="K",
                        help="DDIM steps K (default 1)")
    parser.add_argument("--aggregate", choices=("p_agg", "j_agg"), default="p_agg",
                        help="hypothesis aggregation (default p_agg, the mean pose)")
    parser.add_argument("--focal", type=float, default=None, metavar="PX",
                        help="focal length in pixels for j_agg (default 1.2 x image width)")
    parser.add_argument("--min-confidence", type=float, default=0.0, metavar="C",
                        help="keypoints with confidence below C count as missing (default 0)")
    parser.add_argument("--save-hypotheses", action="store_true",
                        help="also store all hypotheses (T, H, 17, 3)")
    parser.add_argument("--batch-windows", type=int, default=4, metavar="N",
                        help="windows of F frames per sampler call (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="sampler noise seed (default 0)")
    parser.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"),
                        default="float32",
                        help="denoiser precision (default float32). bfloat16: faster on CPUs "
                             "with bf16 units and on GPUs, slightly less accurate (see "
                             "reports/bench.md); float16: GPUs without bf16; auto: bfloat16 "
                             "where the device has bf16 units, float16 on older GPUs, float32 "
                             "on other CPUs")
    parser.add_argument("--no-tf32", dest="tf32", action="store_false",
                        help="CUDA: IEEE float32 matmuls instead of TF32 tensor cores (for "
                             "parity runs; slower)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    parser.add_argument("--force", action="store_true",
                        help="replace existing OUT.npz / OUT.json (never an input file)")
    from ddhpose.commands.infer_stream import add_stream_arguments

    add_stream_arguments(parser)
    from ddhpose.commands.infer_quality import add_quality_arguments

    add_quality_arguments(parser)


# upper bounds of the numbers a user gives (beyond them a typo costs hours or all the memory)
MAX_HYPOTHESES = limits.MAX_HYPOTHESES  # shared with the served model
MAX_BATCH_WINDOWS = 4096
MAX_IMAGE_SIDE_PX = 100_000.0


def _device_and_dtype(args: argparse.Namespace) -> tuple[Any, Any]:
    """``--device``, ``--dtype``, ``--no-tf32`` -> (torch device, denoiser dtype); sets the TF32
    choice; a one-line error when CUDA is asked for and absent."""
    import torch

    from ddhpose.errors import DataError
    from ddhpose.model.precision import sample_dtype, set_tf32

    if args.device == "cuda" and not torch.cuda.is_available():
        raise DataError(None, "--device cuda was asked for but CUDA is not available")
    device = torch.device(args.device)
    dtype = sample_dtype(args.dtype, device)
    set_tf32(args.tf32)
    return device, dtype


def _check(args: argparse.Namespace) -> None:
    from ddhpose.errors import DataError

    if args.runtime == "onnx":  # ddhpose/deploy/onnx_runtime.py
        from ddhpose.deploy.onnx_runtime import check_infer_options

        check_infer_options(args.onnx, args.checkpoint, args.device, args.dtype,
                            stream=getattr(args, "stream", False))
    elif args.onnx is not None:
        raise DataError(args.onnx, "--onnx needs --runtime onnx")
    elif args.checkpoint is None:
        raise DataError(None, "--checkpoint is required (unless --runtime onnx)")
    if not getattr(args, "stream", False) and Path(args.out).suffix.lower() != ".npz":
        raise DataError(args.out, "--out must end in .npz")
    for name, top in (("hypotheses", MAX_HYPOTHESES), ("steps", None),
                      ("batch_windows", MAX_BATCH_WINDOWS)):
        value = getattr(args, name)
        if value < 1 or (top is not None and value > top):
            bound = f"between 1 and {top}" if top is not None else ">= 1"
            raise DataError(None, f"--{name.replace('_', '-')} must be {bound}, got {value}")
    if args.focal is not None and not (np.isfinite(args.focal) and args.focal > 0):
        raise DataError(None, f"--focal must be a positive number of pixels, got {args.focal}")
    if args.image_size is not None and not all(
            np.isfinite(v) and 1 <= v <= MAX_IMAGE_SIDE_PX for v in args.image_size):
        raise DataError(None, f"--image-size must be two numbers of pixels between 1 and "
                              f"{MAX_IMAGE_SIDE_PX:.0f}, got {args.image_size}")
    if not (np.isfinite(args.min_confidence) and args.min_confidence >= 0):
        raise DataError(None, f"--min-confidence must be >= 0, got {args.min_confidence}")
    if not 0 <= args.seed < 2**63:
        raise DataError(None, f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
    if getattr(args, "stream", False) and getattr(args, "smooth", None) is not None:
        raise DataError(None, "--smooth filters a whole sequence after lifting: it does not "
                              "apply to --stream")


def output_paths(args: argparse.Namespace) -> list[Path]:
    """OUT.npz and the OUT.json written beside it."""
    out = Path(args.out)
    return [out, out.with_suffix(".json")]


def check_in_image(xy: np.ndarray, image_size: tuple[float, float], path: object) -> str | None:
    """Keypoints (T, 17, 2) pixels against the image (w, h): a :class:`DataError` when one lies
    more than an image size outside it (a wrong ``--image-size`` or a unit mix-up; the model
    would see a collapsed skeleton), a warning text when more than 5 % lie outside, else None."""
    from ddhpose.errors import DataError

    size = np.asarray(image_size, dtype=np.float64)
    outside = np.maximum(-xy, xy - size) / size  # > 0 outside, in image sizes
    worst = float(outside.max())
    if worst > 1.0:
        t, j, c = np.unravel_index(int(np.argmax(outside)), outside.shape)
        raise DataError(path, f"keypoint {j} of frame {t} is at {'uv'[c]} = {xy[t, j, c]:.6g} "
                              f"px, more than an image size outside the {size[0]:g} x "
                              f"{size[1]:g} px image: check --image-size and that the keypoints "
                              "are pixels")
    share = float((outside > 0).any(axis=-1).mean())
    if share > 0.05:
        return (f"{path}: {100 * share:.0f} % of the keypoints lie outside the {size[0]:g} x "
                f"{size[1]:g} px image: check --image-size")
    return None


def read_tracks(args: argparse.Namespace, command: str, single: bool = False) -> Tracks:
    """``args.keypoints`` read with ``args.layout``/``image_size``/``min_confidence``/``track``
    (``single``: several tracks without ``--track`` are an error); the gap filling and
    several-people warnings are printed as ``ddhpose COMMAND: warning: ...`` lines on stderr."""
    from ddhpose.keypoints import MissingKeypointsWarning, SeveralPeopleWarning, load_tracks

    shown = (MissingKeypointsWarning, SeveralPeopleWarning)
    with warnings.catch_warnings(record=True) as caught:
        for category in shown:
            warnings.simplefilter("always", category)
        res = load_tracks(args.keypoints, args.layout,
                          None if args.image_size is None else tuple(args.image_size),
                          min_confidence=getattr(args, "min_confidence", 0.0),
                          track=getattr(args, "track", None), single=single)
    for w in caught:
        if issubclass(w.category, shown):
            print(f"ddhpose {command}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for kps in res.tracks.values():
        note = check_in_image(kps.xy, kps.image_size, args.keypoints)
        if note:
            who = f" (track {kps.track})" if kps.track is not None else ""
            print(f"ddhpose {command}: warning: {note}{who}", file=sys.stderr)
    return res


def read_keypoints(args: argparse.Namespace, command: str) -> Keypoints:
    """One person's keypoints of ``args.keypoints`` (:func:`read_tracks` with ``single``)."""
    return next(iter(read_tracks(args, command, single=True).tracks.values()))


def _local_checkpoint(checkpoint: str, work_dir: Path) -> Path:
    """A file path as is; an MLflow model URI downloaded into ``work_dir`` (mlflow is imported
    only then)."""
    if not checkpoint.startswith(("models:/", "runs:/")):
        return Path(checkpoint)
    from ddhpose.registry.resolve import download_checkpoint

    path, record = download_checkpoint(checkpoint, work_dir)
    version = f" version {record['version']}" if record.get("version") else ""
    print(f"ddhpose infer: {checkpoint} -> {record.get('name') or record['run_id']}{version}",
          file=sys.stderr)
    return path


def run(args: argparse.Namespace) -> int:
    import torch

    from ddhpose.commands.infer_quality import (
        apply_quality,
        check_smooth,
        quality_content,
        quality_summary,
    )
    from ddhpose.errors import DataError
    from ddhpose.inference.infer import default_intrinsic, infer_h36m17
    from ddhpose.io import atomic_paths, check_outputs, json_text
    from ddhpose.model.checkpoint import load_model
    from ddhpose.model.precision import precision_label

    if getattr(args, "stream", False):  # live: ddhpose/commands/infer_stream.py
        from ddhpose.commands.infer_stream import run_stream

        return run_stream(args, check=_check, local_checkpoint=_local_checkpoint,
                          device_and_dtype=_device_and_dtype)
    if args.keypoints is None or args.out is None:
        raise DataError(None, "--keypoints and --out are required (unless --stream)")
    _check(args)
    check_smooth(args)  # --smooth [WINDOW]: ddhpose/commands/infer_quality.py
    outputs = output_paths(args)
    check_outputs(outputs, inputs=[i for i in (args.keypoints, args.checkpoint, args.onnx) if i],
                  force=args.force)
    device, dtype = _device_and_dtype(args)
    with tempfile.TemporaryDirectory(prefix="ddhpose-infer-") as tmp:
        # an MLflow URI first: a registry that cannot be reached is the one line to show
        onnx = args.runtime == "onnx"  # the graph's config is in its metadata: no checkpoint
        checkpoint = None if onnx else _local_checkpoint(args.checkpoint, Path(tmp))
        if onnx:  # a file onnxruntime cannot load is the one line to show
            from ddhpose.deploy.onnx_runtime import load_for_infer

            model = load_for_infer(args.onnx, lambda m: print(f"ddhpose infer: {m}",
                                                              file=sys.stderr, flush=True))
        people = read_tracks(args, "infer")
        if not onnx:
            model = load_model(checkpoint, map_location=args.device).to(args.device)
    if args.steps > model.config.timesteps:
        raise DataError(args.checkpoint or args.onnx, f"--steps {args.steps} exceeds the "
                        f"model's {model.config.timesteps} diffusion timesteps")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    several = people.tracked and args.track is None
    per_track = {}
    for tid, kps in people.tracks.items():
        intrinsic = (default_intrinsic(kps.image_size, args.focal)
                     if args.aggregate == "j_agg" else None)
        per_track[tid] = infer_h36m17(
            model, kps.xy, kps.image_size, hypotheses=args.hypotheses, steps=args.steps,
            aggregate=args.aggregate, intrinsic=intrinsic, generator=generator,
            batch_windows=args.batch_windows, keep_hypotheses=args.save_hypotheses, dtype=dtype)
    quality = apply_quality(per_track, args.smooth)  # uncertainty, jitter, --smooth
    kps = next(iter(people.tracks.values()))
    res = next(iter(per_track.values()))

    content: dict[str, object] = {} if several else {"poses_3d": res.poses_3d}
    content["layout"] = kps.layout
    if not several:
        content["keypoints_2d"] = kps.xy.astype(np.float32)
    content["image_size"] = np.asarray(kps.image_size, dtype=np.float64)
    if not several:
        content["spread"] = res.spread
    content.update({
        "aggregate": res.aggregate,
        "num_hypotheses": args.hypotheses,
        "steps": args.steps,
        "seed": args.seed,
        "precision": precision_label(dtype, device, args.tf32, autocast=False),
        "checkpoint": str(args.checkpoint if args.runtime == "torch" else args.onnx),
        "runtime": args.runtime,
        "keypoints_file": str(args.keypoints),
        "source_layout": kps.source_layout,
        "filled": sum(k.filled for k in people.tracks.values()),
    })
    content.update(quality_content(quality, args.smooth, several))
    if several:
        content["tracks"] = np.asarray(list(per_track), dtype=str)
        for tid, r in per_track.items():
            k = people.tracks[tid]
            content.update({
                f"track_{tid}_poses_3d": r.poses_3d,
                f"track_{tid}_frames": k.frames,
                f"track_{tid}_keypoints_2d": k.xy.astype(np.float32),
                f"track_{tid}_spread": r.spread,
                f"track_{tid}_filled": k.filled,
            })
            if r.hypotheses is not None:
                content[f"track_{tid}_hypotheses"] = r.hypotheses
            if r.root_translation is not None:
                content[f"track_{tid}_root_translation"] = r.root_translation
        if res.intrinsic_px is not None:
            content["intrinsic_px"] = res.intrinsic_px
    else:
        if args.track is not None:
            content["track"] = args.track
        if res.hypotheses is not None:
            content["hypotheses"] = res.hypotheses
        if res.root_translation is not None:
            content["root_translation"] = res.root_translation
            content["intrinsic_px"] = res.intrinsic_px
    out, json_path = outputs
    with atomic_paths(out, json_path) as (tmp_npz, tmp_json):  # both files new, or both old
        with open(tmp_npz, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in content.items()})
        tmp_json.write_text(json_text(content), encoding="utf-8")
    if several:
        frames = ", ".join(f"{tid}: {r.poses_3d.shape[0]}" for tid, r in per_track.items())
        print(f"wrote {out} and {json_path}: {len(per_track)} tracks (frames per track: "
              f"{frames}) x 17 joints (metres, root-relative), H={args.hypotheses} "
              f"K={args.steps} {res.aggregate}, {content['filled']} keypoint(s) interpolated, "
              f"{quality_summary(quality, args.smooth, several)}")
        return 0
    t = res.poses_3d.shape[0]
    print(f"wrote {out} and {json_path}: {t} frames x 17 joints (metres, root-relative), "
          f"H={args.hypotheses} K={args.steps} {res.aggregate}, {len(res.windows)} window(s) of "
          f"{res.frames}, mean spread {1000 * float(res.spread.mean()):.1f} mm, "
          f"{kps.filled} keypoint(s) interpolated, {quality_summary(quality, args.smooth, False)}")
    return 0
