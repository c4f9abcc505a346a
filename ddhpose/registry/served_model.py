"""The ddhpose MLflow model: a pyfunc wrapper that lifts 2D keypoints to root-relative 3D.

Request (``POST /invocations`` of ``mlflow models serve``, or ``pyfunc.predict(inputs, params)``)::

    {"inputs": <N x J x 2 or N x J x 3 keypoints in pixels (x, y[, confidence])>,
     "params": {"layout": "auto" | one of ddhpose.keypoints.LAYOUTS, "image_size": [W, H],
                "hypotheses": H, "steps": K, "seed": S,
                "tracks": [one track id per input row], "frames": [one frame number per row],
                "uncertainty": false | true}}

``params`` and each of its keys are optional; the defaults are :data:`DEFAULT_PARAMS`
(``auto``, a 1000 x 1000 image, H = 1, K = 1, seed 0, no tracks, no frames, no uncertainty).

- ``layout``: any layout of :data:`ddhpose.keypoints.LAYOUTS` (converted to Human3.6M-17 by its
  table). ``auto`` picks the layout the joint count names (25 ``openpose25``, 26 ``halpe26``,
  33 ``mediapipe33``, 133 ``coco_wholebody133``) and takes 17 joints as ``h36m17``, as before;
  COCO-17 and MPI-INF-3DHP-17 keypoints must say so. A wrong layout or joint count is a 400.
- ``tracks`` (several people): one id per input row (strings of 1-64 letters, digits, ``_`` or
  ``-``). Each track is lifted as its own sequence, tracks in the order of their first row,
  one noise generator seeded with ``seed`` running through them (as ``ddhpose infer`` does for
  a file's tracks, so both give the same poses).
- ``frames``: the frame number of each row. A track's sequence runs from its first to its last
  frame; frames without a row are missing keypoints, interpolated in time like any other (the
  rule of :mod:`ddhpose.keypoints`). Without ``frames`` each track's rows are consecutive frames
  in request order. One frame twice in a track is a 400.

Missing joints (NaN, or confidence 0) are interpolated in time, per track.

Response: the rows of the request, in its order (row i of the answer is the pose of input row i,
whatever its track; frames filled in a gap are lifted but not returned)::

    {"predictions": <N x 17 x 3>}                      # default
    {"predictions": {"poses_3d": <N x 17 x 3>,
                     "uncertainty": <N x 17>}}        # with "uncertainty": true

Poses are root-relative metres in the Human3.6M-17 joint order (pelvis = 0), the mean of the H
hypotheses after K DDIM steps, whatever the model's dataset (a 3DHP model's joints are mapped to
Human3.6M-17). ``uncertainty`` is, per joint, the spread of the H hypotheses in metres (the norm
of the per-axis standard deviation, :func:`ddhpose.evaluation.uncertainty.joint_spread`, the
``uncertainty`` / ``spread`` of ``ddhpose infer``); with H = 1 it is 0 everywhere (one hypothesis
has no spread): ask for H >= 2 (the paper uses 20).

Bad input (wrong shape, unknown layout, a joint missing in every frame, a bad parameter, a
``tracks`` or ``frames`` list whose length is not the number of rows) raises
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which the scoring server answers with
HTTP 400 and the one-line reason.

Limits (:mod:`ddhpose.inference.limits`, shared with ``ddhpose infer``): H <= 100, K <= 100
(and <= the model's timesteps), T <= 10,000 frames, H x K x max(T, F) <= 100,000 (F the model's
window) and a body of at most 32 MiB; beyond them the answer is HTTP 413 with one line (run long
sequences with ``ddhpose infer``). With tracks, T is the sum of the tracks' spans (first to last
frame) and the work is summed over tracks. These are checked before the keypoints are converted
or the model runs, so a refused request costs no memory and does not hold the worker.

Served with ``mlflow models serve``, the model puts
:class:`ddhpose.registry.front.RequestFront` in front of MLflow's scoring app, so that every bad
request is answered with one line (see :mod:`ddhpose.registry.front`). Called in Python
(``pyfunc.predict``), MLflow's schema still drops an unknown param key before
:meth:`DDHPoseModel.predict` sees it.

The logged model holds the checkpoint as the artifact ``checkpoint`` and this package's code, so
it runs wherever torch, numpy and mlflow are installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from ddhpose.registry.front import install_request_front
from ddhpose.registry.request import (
    AUTO_LAYOUT,
    DEFAULT_PARAMS,
    FALLBACK_LAYOUT,
    RequestError,
    RowTrack,
    _bad,
    check_params,
    check_size,
    split_rows,
)

__all__ = ["DEFAULT_PARAMS", "DDHPoseModel", "RequestError", "input_example", "lift_rows",
           "log_model", "pip_requirements", "request_layout", "signature"]



class DDHPoseModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around :func:`ddhpose.inference.infer.infer_h36m17` (see module doc)."""

    def load_context(self, context: Any) -> None:
        from ddhpose.model.checkpoint import load_model

        self.model = load_model(context.artifacts["checkpoint"], map_location="cpu")
        install_request_front(int(self.model.config.frames))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow
        # would read them as a schema; the signature is given when the model is logged
        """(N, J, 2|3) pixels -> (N, 17, 3) float32 metres, root-relative, Human3.6M-17; with
        ``params.uncertainty`` a dict of that (``poses_3d``) and (N, 17) float32 metres
        (``uncertainty``). See the module doc for the params."""
        import torch

        from ddhpose.errors import DDHPoseError

        p = check_params(params)
        if p["steps"] > self.model.config.timesteps:
            raise _bad(f"params.steps must be <= {self.model.config.timesteps}")
        if isinstance(model_input, dict) and len(model_input) == 1:  # a named tensor
            model_input = next(iter(model_input.values()))
        rows = len(model_input) if hasattr(model_input, "__len__") else 0
        groups = split_rows(rows, p["tracks"], p["frames"])
        check_size(rows, p["hypotheses"], p["steps"], int(self.model.config.frames),
                   [g.span for g in groups])
        try:
            arr = np.asarray(model_input, dtype=np.float64)
            generator = torch.Generator().manual_seed(int(p["seed"]))
            poses, spread = lift_rows(self.model, arr, groups, str(p["layout"]),
                                      p["image_size"], hypotheses=int(p["hypotheses"]),
                                      steps=int(p["steps"]), generator=generator)
        except (DDHPoseError, ValueError, TypeError) as exc:
            raise _bad(str(exc)) from None
        if p["uncertainty"]:
            return {"poses_3d": poses, "uncertainty": spread}
        return poses


def request_layout(layout: str, joints: int | None) -> str:
    """``params.layout`` resolved: ``auto`` is the layout the joint count names
    (:data:`~ddhpose.keypoints.LAYOUT_BY_JOINTS`), else ``h36m17``; any other name as given."""
    from ddhpose.keypoints import LAYOUT_BY_JOINTS

    if layout != AUTO_LAYOUT:
        return layout
    return LAYOUT_BY_JOINTS.get(joints, FALLBACK_LAYOUT)  # 17 joints are not in it


def lift_rows(model: Any, inputs: np.ndarray, groups: list[RowTrack], layout: str,
              image_size: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lift a request's rows, track by track (:func:`~ddhpose.registry.request.split_rows`).

    Args:
        model: a :class:`ddhpose.model.ddhpose.DDHPose`.
        inputs: (N, J, 2|3) pixels (x, y[, confidence]) in ``layout`` (``auto`` allowed).
        groups: the rows of each track, in frame order.
        image_size: [W, H] pixels.
        kwargs: passed to :func:`ddhpose.inference.infer.infer_h36m17` (hypotheses, steps,
            generator); the tracks are lifted in the order of ``groups``.
    Returns:
        (N, 17, 3) float32 metres root-relative and (N, 17) float32 metres spread, in the order
        of the input rows.
    """
    from ddhpose.inference.infer import infer_h36m17
    from ddhpose.keypoints import LAYOUT_TABLES, keypoints_from_array

    joints = inputs.shape[1] if inputs.ndim == 3 else None
    layout = request_layout(layout, joints)
    source = "request inputs"
    poses = np.zeros((len(inputs), 17, 3), dtype=np.float32)
    spread = np.zeros((len(inputs), 17), dtype=np.float32)
    want = LAYOUT_TABLES[layout].num_joints if layout in LAYOUT_TABLES else None
    if inputs.ndim != 3 or not len(inputs) or inputs.shape[1] != want \
            or inputs.shape[2] not in (2, 3):  # its one-line error, before any track is lifted
        keypoints_from_array(inputs, layout, image_size, source=source)
    for g in groups:
        first = int(g.frames[0])
        at = g.frames - first  # each row's place in the track's sequence
        seq = np.full((g.span, *inputs.shape[1:]), np.nan)
        seq[at] = inputs[g.rows]
        kps = keypoints_from_array(seq, layout, image_size, source=source,
                                   frames=np.arange(first, first + g.span), track=g.track)
        res = infer_h36m17(model, kps.xy, kps.image_size, keep_hypotheses=False, **kwargs)
        poses[g.rows] = res.poses_3d[at]
        spread[g.rows] = res.spread[at]
    return poses, spread


# --- in front of MLflow's scoring server ---------------------------------------------------------


def signature() -> Any:
    """Inputs (N, J, 2|3) float64 pixels, outputs (N, 17, 3) float32 metres (the default answer;
    with ``uncertainty`` the answer is a dict, see the module doc), the params above."""
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float64), (-1, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 17, 3))]),
        params=ParamSchema([
            ParamSpec("layout", DataType.string, DEFAULT_PARAMS["layout"]),
            ParamSpec("image_size", DataType.double, DEFAULT_PARAMS["image_size"], shape=(-1,)),
            ParamSpec("hypotheses", DataType.long, DEFAULT_PARAMS["hypotheses"]),
            ParamSpec("steps", DataType.long, DEFAULT_PARAMS["steps"]),
            ParamSpec("seed", DataType.long, DEFAULT_PARAMS["seed"]),
            ParamSpec("tracks", DataType.string, DEFAULT_PARAMS["tracks"], shape=(-1,)),
            ParamSpec("frames", DataType.long, DEFAULT_PARAMS["frames"], shape=(-1,)),
            ParamSpec("uncertainty", DataType.boolean, DEFAULT_PARAMS["uncertainty"]),
        ]),
    )


def input_example(frames: int = 4) -> tuple[np.ndarray, dict[str, Any]]:
    """A small valid request: a still standing pose, ``frames`` x 17 x 2 pixels (h36m17)."""
    from ddhpose.skeleton import H36M17

    rest = np.array([[0, 0], [-12, 0], [-12, 45], [-12, 90], [12, 0], [12, 45], [12, 90],
                     [0, -25], [0, -50], [0, -58], [0, -68], [18, -48], [26, -25], [30, -2],
                     [-18, -48], [-26, -25], [-30, -2]], dtype=np.float64)
    assert rest.shape == (H36M17.num_joints, 2)
    xy = rest * 2.5 + np.array([500.0, 500.0])
    return np.repeat(xy[None], frames, axis=0), {"layout": "h36m17", "image_size": [1000, 1000]}


def pip_requirements() -> list[str]:
    """The packages the model needs, pinned to the versions that logged it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "mlflow")]


def log_model(checkpoint: str | Path, *, name: str = "model", onnx: bool = True) -> Any:
    """Log ``checkpoint`` as a ddhpose pyfunc model in the active MLflow run; its ModelInfo.

    With ``onnx`` the model also carries the denoiser step as an ONNX graph,
    ``artifacts/model.onnx`` (:func:`ddhpose.deploy.onnx_export.export_for_registry`, checked
    against ``model.denoise``); without the ``onnx`` extra (or if the export fails) the model is
    logged without it and one ``ddhpose: warning:`` line on stderr says so."""
    import logging
    import os
    import shutil
    import sys
    import tempfile
    import warnings

    import ddhpose
    from ddhpose.deploy.onnx_export import export_for_registry
    from ddhpose.registry.resolve import CHECKPOINT_FILE

    example, example_params = input_example()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet = logging.getLogger("mlflow.pyfunc")  # its notes on type hints and cloudpickle: the
    level = quiet.level                          # signature is explicit, the class is ours
    quiet.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ddhpose-model-") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        named = Path(tmp) / CHECKPOINT_FILE  # the artifact keeps this file name
        shutil.copyfile(checkpoint, named)
        artifacts = {"checkpoint": str(named)}
        if onnx:
            graph, note = export_for_registry(named, Path(tmp))
            if graph is not None:
                artifacts["onnx"] = str(graph)
            else:
                print(f"ddhpose: warning: {note}", file=sys.stderr, flush=True)
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=DDHPoseModel(),
                artifacts=artifacts,
                code_paths=[str(Path(ddhpose.__file__).parent)],
                signature=signature(),
                input_example=(example, example_params),
                pip_requirements=pip_requirements(),
            )
        finally:
            quiet.setLevel(level)
