"""The ddhpose MLflow model: a pyfunc wrapper that lifts 2D keypoints to root-relative 3D.

Request (``POST /invocations`` of ``mlflow models serve``, or ``pyfunc.predict(inputs, params)``)::

    {"inputs": <T x 17 x 2 or T x 17 x 3 keypoints in pixels (x, y[, confidence])>,
     "params": {"layout": "coco17" | "h36m17", "image_size": [W, H],
                "hypotheses": H, "steps": K, "seed": S}}

``params`` and each of its keys are optional; the defaults are :data:`DEFAULT_PARAMS`
(``h36m17``, a 1000 x 1000 image, H = 1, K = 1, seed 0). Missing joints (NaN, or confidence 0)
are interpolated in time. Response: ``{"predictions": <T x 17 x 3>}``, root-relative metres in
the Human3.6M-17 joint order (pelvis = 0), the mean of the H hypotheses after K DDIM steps,
whatever the model's dataset (a 3DHP model's joints are mapped to Human3.6M-17).

Bad input (wrong shape, unknown layout, a joint missing in every frame, a bad parameter) raises
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which the scoring server answers with
HTTP 400 and the one-line reason.

Limits (:mod:`ddhpose.inference.limits`, shared with ``ddhpose infer``): H <= 100, K <= 100
(and <= the model's timesteps), T <= 10,000 frames, H x K x max(T, F) <= 100,000 (F the model's
window) and a body of at most 32 MiB; beyond them the answer is HTTP 413 with one line (run long
sequences with ``ddhpose infer``). These are checked before the keypoints are converted or the
model runs, so a refused request costs no memory and does not hold the worker.

Served with ``mlflow models serve``, the model puts
:class:`ddhpose.registry.request.RequestFront` in front of MLflow's scoring app, so that every bad
request is answered with one line (see :mod:`ddhpose.registry.request`). Called in Python
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

from ddhpose.registry.request import (
    DEFAULT_PARAMS,
    RequestError,
    _bad,
    check_params,
    check_size,
    install_request_front,
)

__all__ = ["DEFAULT_PARAMS", "DDHPoseModel", "RequestError", "input_example", "log_model",
           "pip_requirements", "signature"]



class DDHPoseModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around :func:`ddhpose.inference.infer.infer_h36m17` (see module doc)."""

    def load_context(self, context: Any) -> None:
        from ddhpose.model.checkpoint import load_model

        self.model = load_model(context.artifacts["checkpoint"], map_location="cpu")
        install_request_front(int(self.model.config.frames))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow
        # would read them as a schema; the signature is given when the model is logged
        """(T, 17, 2|3) pixels -> (T, 17, 3) float32 metres, root-relative, Human3.6M-17."""
        import torch

        from ddhpose.errors import DDHPoseError
        from ddhpose.inference.infer import infer_h36m17
        from ddhpose.keypoints import keypoints_from_array

        p = check_params(params)
        if p["steps"] > self.model.config.timesteps:
            raise _bad(f"params.steps must be <= {self.model.config.timesteps}")
        if isinstance(model_input, dict) and len(model_input) == 1:  # a named tensor
            model_input = next(iter(model_input.values()))
        frames = len(model_input) if hasattr(model_input, "__len__") else 0
        check_size(frames, p["hypotheses"], p["steps"], int(self.model.config.frames))
        try:
            kps = keypoints_from_array(np.asarray(model_input), str(p["layout"]),
                                       p["image_size"], source="request inputs")
            generator = torch.Generator().manual_seed(int(p["seed"]))
            res = infer_h36m17(self.model, kps.xy, kps.image_size, hypotheses=int(p["hypotheses"]),
                               steps=int(p["steps"]), generator=generator, keep_hypotheses=False)
        except (DDHPoseError, ValueError, TypeError) as exc:
            raise _bad(str(exc)) from None
        return res.poses_3d


# --- in front of MLflow's scoring server ---------------------------------------------------------


def signature() -> Any:
    """Inputs (T, 17, 2|3) float64 pixels, outputs (T, 17, 3) float32 metres, the params above."""
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


def log_model(checkpoint: str | Path, *, name: str = "model") -> Any:
    """Log ``checkpoint`` as a ddhpose pyfunc model in the active MLflow run; its ModelInfo."""
    import logging
    import os
    import shutil
    import tempfile
    import warnings

    import ddhpose
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
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=DDHPoseModel(),
                artifacts={"checkpoint": str(named)},
                code_paths=[str(Path(ddhpose.__file__).parent)],
                signature=signature(),
                input_example=(example, example_params),
                pip_requirements=pip_requirements(),
            )
        finally:
            quiet.setLevel(level)
