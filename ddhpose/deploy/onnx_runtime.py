"""Run an exported denoiser graph (:mod:`ddhpose.deploy.onnx_export`) on onnxruntime.

- :class:`OnnxDenoiser`: an onnxruntime session as a :data:`~ddhpose.model.sampler.DenoiseFn`
  (x2d (B,F,J,2), directions (B,H,F,J,3), lengths (B,H,F,J,1), t (B,) -> x̂0 (B,H,F,J,3)
  metres, torch tensors in and out), so the runtime-agnostic DDIM loop runs it unchanged;
- :class:`OnnxLifter` / :func:`load_onnx`: the model's config from the graph's metadata and a
  :meth:`OnnxLifter.sample` with the meaning of :meth:`DDHPose.sample
  <ddhpose.model.ddhpose.DDHPose.sample>` (same code path,
  :func:`ddhpose.model.ddhpose.sample_with`: with the same noise the two agree to float32
  round-off). It has the attributes :func:`ddhpose.inference.infer.infer` reads (``config``,
  ``skeleton``, ``unit_scale``, ``device``), so ``ddhpose infer --runtime onnx`` lifts keypoints
  with it. CPU, float32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ddhpose.deploy.graph_spec import (
    GRAPH_KIND,
    INPUT_NAMES,
    META_CONFIG,
    META_GRAPH,
    OUTPUT_NAME,
)
from ddhpose.errors import DataError, DDHPoseError
from ddhpose.model.config import ModelConfig
from ddhpose.model.ddhpose import sample_with, unit_scale_of
from ddhpose.model.diffusion import NoiseSpec, cosine_schedule
from ddhpose.skeleton import Skeleton, get_skeleton


def _session(path: Path, threads: int | None) -> Any:
    """An onnxruntime CPU session on ``path`` with ``threads`` intra-op threads (default: torch's
    thread count, so both back ends use the same cores); a one-line DataError for a missing or
    unreadable file."""
    import onnxruntime as ort

    if not path.is_file():
        raise DataError(path, "no such ONNX file" if not path.exists() else "is not a file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no per-node placement notes on stderr
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(path, f"is not an ONNX graph onnxruntime can load ({first[:200]})") \
            from exc


class OnnxDenoiser:
    """An onnxruntime session of an exported denoiser graph, called like ``DDHPose.denoise``:
    ``(x2d (B,F,J,2), directions (B,H,F,J,3), lengths (B,H,F,J,1), t (B,)) -> (B,H,F,J,3)``
    float32 metres on the CPU. 4-D bone inputs (B,F,J,·) give (B,F,J,3)."""

    def __init__(self, session: Any, path: Path | None = None) -> None:
        self.session = session
        self.path = path
        names = [i.name for i in session.get_inputs()]
        if names != list(INPUT_NAMES) or [o.name for o in session.get_outputs()] != [OUTPUT_NAME]:
            raise DataError(path, f"is not a ddhpose denoiser graph: inputs {names}, expected "
                                  f"{list(INPUT_NAMES)}")

    @classmethod
    def from_path(cls, path: str | Path, threads: int | None = None) -> OnnxDenoiser:
        path = Path(path)
        return cls(_session(path, threads), path)

    def __call__(self, x2d: Tensor, directions: Tensor, lengths: Tensor, t: Tensor) -> Tensor:
        squeeze = directions.dim() == 4
        if squeeze:
            directions, lengths = directions.unsqueeze(1), lengths.unsqueeze(1)
        feed = {
            "x2d": _numpy(x2d, np.float32),
            "directions": _numpy(directions, np.float32),
            "lengths": _numpy(lengths, np.float32),
            "t": _numpy(t, np.int64),
        }
        out = torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])
        return out.squeeze(1) if squeeze else out


def _numpy(x: Tensor, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)


def read_metadata(session: Any, path: Path | None = None) -> tuple[ModelConfig, dict[str, str]]:
    """The :class:`ModelConfig` and all ``metadata_props`` of a session's graph; a one-line
    DataError naming ``path`` when the graph carries no (or a bad) ddhpose config."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get(META_GRAPH) != GRAPH_KIND or META_CONFIG not in meta:
        raise DataError(path, "carries no ddhpose model config in its metadata (write it with "
                              "ddhpose export onnx)")
    try:
        config = ModelConfig.from_dict(json.loads(meta[META_CONFIG]))
    except (ValueError, TypeError, DDHPoseError) as exc:
        raise DataError(path, f"bad ddhpose model config in its metadata: {exc}") from exc
    return config, meta


class OnnxLifter:
    """An exported DDHPose on onnxruntime: :meth:`sample` and :meth:`denoise` with the meaning
    of :class:`~ddhpose.model.ddhpose.DDHPose`'s, the DDIM loop in PyTorch around the graph.

    Attributes: ``config`` (:class:`ModelConfig` from the metadata), ``skeleton``,
    ``unit_scale`` (1 for h36m metres, 1000 for 3dhp millimetres), ``schedule`` (the 12 float64
    buffers (T,), recomputed from ``config.timesteps``), ``metadata`` (all metadata_props),
    ``device`` (the CPU), ``path``.
    """

    def __init__(self, denoiser: OnnxDenoiser, config: ModelConfig,
                 metadata: dict[str, str]) -> None:
        self.denoiser = denoiser
        self.config = config
        self.metadata = metadata
        self.path = denoiser.path
        self.skeleton: Skeleton = get_skeleton(config.dataset)
        self.unit_scale = unit_scale_of(config.dataset)
        self.schedule = cosine_schedule(config.timesteps)
        self.device = torch.device("cpu")

    def denoise(self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor) -> Tensor:
        """One graph call, as :meth:`DDHPose.denoise <ddhpose.model.ddhpose.DDHPose.denoise>`:
        (B,F,J,2), (B,H,F,J,3), (B,H,F,J,1), (B,) -> (B,H,F,J,3) float32 metres."""
        return self.denoiser(x2d, bone_dir, bone_len, t)

    def sample(
        self, x2d: Tensor, hypotheses: int = 1, steps: int = 1, noise: NoiseSpec = None,
        generator: torch.Generator | None = None, x2d_flip: Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """DDIM sampling with flip TTA, as :meth:`DDHPose.sample
        <ddhpose.model.ddhpose.DDHPose.sample>`: x2d (B,F,J,2) normalised -> (B,K,H,F,J,3)
        metres × unit_scale, root NOT zeroed; the same ``noise``/``generator`` draws give the
        same result to float32 round-off. ``dtype``: only float32 (or None) — the graph is
        float32."""
        if dtype not in (None, torch.float32):
            raise ValueError(f"the ONNX graph runs in float32, got dtype {dtype}")
        with torch.inference_mode():
            return sample_with(self.denoiser, x2d.cpu().float(), self.config, self.schedule,
                               hypotheses=hypotheses, steps=steps, noise=noise,
                               generator=generator,
                               x2d_flip=None if x2d_flip is None else x2d_flip.cpu().float())


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxLifter:
    """The graph at ``path`` (written by ``ddhpose export onnx``) as an :class:`OnnxLifter`;
    ``threads``: onnxruntime's intra-op threads (default torch's thread count). One-line
    :class:`~ddhpose.errors.DataError` for a missing file, a file onnxruntime cannot load, or a
    graph without ddhpose's metadata."""
    path = Path(os.fspath(path))
    denoiser = OnnxDenoiser.from_path(path, threads)
    config, meta = read_metadata(denoiser.session, path)
    return OnnxLifter(denoiser, config, meta)


# --- ``ddhpose infer --runtime onnx`` ----------------------------------------------------------


def check_infer_options(onnx: str | None, checkpoint: str | None, device: str, dtype: str,
                        stream: bool = False) -> None:
    """The option checks of ``ddhpose infer --runtime onnx`` before any work: one-line
    :class:`~ddhpose.errors.DataError` for a missing ``--onnx``, a ``--checkpoint`` beside it
    (the graph carries its config), ``--device cuda``, a ``--dtype`` other than float32 or a
    ``.onnx`` file that does not exist."""
    if onnx is None:
        raise DataError(None, "--runtime onnx needs --onnx FILE.onnx (written by ddhpose export "
                              "onnx)")
    if checkpoint is not None:
        raise DataError(checkpoint, "--checkpoint is not used with --runtime onnx (the graph "
                                    "given by --onnx carries the model config): drop one")
    if device != "cpu":
        raise DataError(None, f"--runtime onnx runs on the CPU (onnxruntime's CPU provider), "
                              f"got --device {device}")
    if dtype != "float32":
        raise DataError(None, f"--runtime onnx runs the float32 graph, got --dtype {dtype}")
    if stream:
        raise DataError(None, "--runtime onnx does not stream yet: drop --stream or use the "
                              "PyTorch runtime")
    path = Path(onnx)
    if not path.is_file():
        raise DataError(path, "no such ONNX file" if not path.exists() else "is not a file")


def load_for_infer(onnx: str, log: Any) -> OnnxLifter:
    """The ``onnx`` extra installed if missing (``log`` gets one line), then :func:`load_onnx`."""
    from ddhpose.deploy.graph_spec import EXTRA
    from ddhpose.extras import ensure_extra

    ensure_extra(log, EXTRA, ("onnxruntime",))
    return load_onnx(onnx)


__all__ = ["OnnxDenoiser", "OnnxLifter", "check_infer_options", "load_for_infer", "load_onnx",
           "read_metadata"]
