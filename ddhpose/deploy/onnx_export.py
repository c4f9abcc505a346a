"""Export the denoiser step of a :class:`~ddhpose.model.ddhpose.DDHPose` as an ONNX graph.

The graph is ONE denoiser call, the :data:`~ddhpose.model.sampler.DenoiseFn` of the sampler:

====================  ==================  =====================================================
name                  shape, type         meaning
====================  ==================  =====================================================
``x2d`` (input)       (B, F, J, 2) f32    2D keypoints, normalised screen coordinates
``directions`` (in)   (B, H, F, J, 3) f32 noisy bone directions (metres / ``scale``, clamped)
``lengths`` (input)   (B, H, F, J, 1) f32 noisy bone lengths (metres / ``scale``, clamped)
``t`` (input)         (B,) int64          diffusion timestep of each clip, 0 .. T-1
``x0`` (output)       (B, H, F, J, 3) f32 predicted clean pose x̂0, metres (root not zeroed)
====================  ==================  =====================================================

B (clips) and H (hypotheses) are dynamic; F and J are fixed as the model has them. The noisy
state and the timestep are INPUTS: the graph draws nothing (drop-path, the only randomness of the
network, is off in eval mode, and :func:`random_ops` finds no random node). The DDIM loop, its
noise draws, the flip pass and the aggregation stay outside the graph, in
:func:`ddhpose.model.ddhpose.sample_with`, which both back ends run.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset
17) by default. The dynamo exporter (``dynamo=True``, opset 18; needs ``onnxscript``) exports
the same network with parity too, but export + check of the demo model took 40.6 s against
8.5 s in one run on the project's busy 2-core VM (``reports/bench_onnx.md``), and the evaluate
stage exports on every run; pass ``exporter="dynamo"`` to use it. Either way the network is
traced on its plain PyTorch path (``nn.Linear``; oneDNN's fused kernels, which ONNX cannot
express, are switched off for the trace).

The model's configuration travels in the graph's ``metadata_props`` (:data:`META_*` keys):
``ModelConfig`` as JSON, the ddhpose version, dataset and skeleton, opset, exporter and the
weights' sha256, so :func:`ddhpose.deploy.onnx_runtime.load_onnx` needs nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddhpose.deploy.graph_spec import (
    EXTRA,
    EXTRA_MODULES,
    GRAPH_KIND,
    INPUT_NAMES,
    META_CONFIG,
    META_DATASET,
    META_EXPORTER,
    META_GRAPH,
    META_OPSET,
    META_SKELETON,
    META_SOURCE,
    META_VERSION,
    META_WEIGHTS,
    OUTPUT_NAME,
)
from ddhpose.io import atomic_path

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
OPSETS = {"torchscript": 17, "dynamo": 18}

#: ONNX operators that draw random numbers; an exported graph holds none of them
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                        "Multinomial", "Bernoulli"})
#: the largest max abs difference (metres) between the graph and ``model.denoise`` that
#: :func:`export_checked` accepts
PARITY_TOLERANCE = 1e-4



@contextlib.contextmanager
def _plain_path(net: torch.nn.Module) -> Iterator[None]:
    """Eval mode, grad mode on (so the blocks skip the fused no-grad kernels) and the oneDNN
    training linear off (:class:`~ddhpose.model.linear_grad.OneDNNLinear`): the network runs
    on ``nn.Linear`` and standard ops only. Parameters are frozen meanwhile; all restored."""
    from ddhpose.model.linear_grad import OneDNNLinear

    was_training, was_enabled = net.training, OneDNNLinear.enabled
    grads = [p.requires_grad for p in net.parameters()]
    net.eval()
    OneDNNLinear.enabled = False
    try:
        for p in net.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        OneDNNLinear.enabled = was_enabled
        for p, g in zip(net.parameters(), grads, strict=True):
            p.requires_grad_(g)
        net.train(was_training)


def example_inputs(frames: int, joints: int, timesteps: int, batch: int = 2, hypotheses: int = 3,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs of one denoiser call: x2d (B,F,J,2), directions (B,H,F,J,3), lengths
    (B,H,F,J,1) float32 and t (B,) int64 in [0, timesteps)."""
    g = generator or torch.Generator().manual_seed(0)
    x2d = torch.randn((batch, frames, joints, 2), generator=g) * 0.3
    dirs = torch.randn((batch, hypotheses, frames, joints, 3), generator=g)
    lens = torch.randn((batch, hypotheses, frames, joints, 1), generator=g)
    t = torch.randint(0, timesteps, (batch,), generator=g)
    return x2d, dirs, lens, t


def metadata(model: Any, exporter: str, opset: int, source: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` of a graph exported from ``model`` (strings)."""
    import ddhpose
    from ddhpose.model.checkpoint import weights_sha256

    meta = {
        META_GRAPH: GRAPH_KIND,
        META_CONFIG: json.dumps(dataclasses.asdict(model.config), sort_keys=True),
        META_VERSION: ddhpose.__version__,
        META_DATASET: model.config.dataset,
        META_SKELETON: model.skeleton.name,
        META_OPSET: str(opset),
        META_EXPORTER: exporter,
        META_WEIGHTS: weights_sha256(model.state_dict()),
    }
    if source is not None:
        meta[META_SOURCE] = source
    return meta


def _export(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, exporter: str,
            opset: int) -> None:
    names = {"input_names": list(INPUT_NAMES), "output_names": [OUTPUT_NAME]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the fixed F/J shape checks
        if exporter == "dynamo":
            from torch.export import Dim

            b, h = Dim("batch"), Dim("hypotheses")
            shapes = {"x2d": {0: b}, "bone_dir": {0: b, 1: h}, "bone_len": {0: b, 1: h},
                      "t": {0: b}}
            with contextlib.redirect_stdout(None):  # the exporter's progress lines
                torch.onnx.export(net, inputs, str(path), dynamo=True, dynamic_shapes=shapes,
                                  opset_version=opset, external_data=False, **names)
            return
        axes = {"x2d": {0: "batch"}, "t": {0: "batch"}}
        for name in ("directions", "lengths", OUTPUT_NAME):
            axes[name] = {0: "batch", 1: "hypotheses"}
        torch.onnx.export(net, inputs, str(path), dynamo=False, opset_version=opset,
                          dynamic_axes=axes, do_constant_folding=True, **names)


def export_denoiser(model: Any, path: str | Path, *, exporter: str = DEFAULT_EXPORTER,
                    opset: int | None = None, source: str | None = None) -> Path:
    """Write ``model``'s denoiser step (module docstring) to ``path`` atomically, with the
    model's config in the metadata; returns ``path``. ``model`` is a
    :class:`~ddhpose.model.ddhpose.DDHPose` (a model on another device is exported from a CPU
    copy)."""
    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    opset = opset or OPSETS[exporter]
    path = Path(path)
    if next(model.parameters()).device.type != "cpu":  # a CPU copy: the caller's model stays
        model = copy.deepcopy(model).to("cpu")
    net = model.dir_bone_estimator
    c = model.config
    inputs = example_inputs(c.frames, model.skeleton.num_joints, c.timesteps)
    with atomic_path(path) as tmp, _plain_path(net):
        _export(net, inputs, tmp, exporter, opset)
        graph = onnx.load(str(tmp))
        del graph.metadata_props[:]
        for key, value in metadata(model, exporter, opset, source).items():
            graph.metadata_props.add(key=key, value=value)
        graph.doc_string = ("DDHPose denoiser step: x2d (B,F,J,2), directions (B,H,F,J,3), "
                            "lengths (B,H,F,J,1), t (B,) int64 -> x0 (B,H,F,J,3) metres")
        onnx.save(graph, str(tmp))
    return path


def random_ops(path: str | Path) -> list[str]:
    """The random-number operators (:data:`RANDOM_OPS`) of the graph at ``path``, subgraphs
    and local functions included (an empty list for an exported denoiser)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    found: list[str] = []

    def walk(nodes: Any) -> None:
        for node in nodes:
            if node.op_type in RANDOM_OPS:
                found.append(node.op_type)
            for attr in node.attribute:
                if attr.g is not None:
                    walk(attr.g.node)
                for sub in attr.graphs:
                    walk(sub.node)

    walk(graph.graph.node)
    for fn in graph.functions:
        walk(fn.node)
    return found


def parity(model: Any, path: str | Path, *, batch: int = 2, hypotheses: int = 3, seed: int = 0,
           threads: int | None = None) -> float:
    """Max abs difference (metres) between the graph at ``path`` on onnxruntime and
    ``model.denoise`` (no autograd: the model's own inference path) on one random input of
    ``batch`` clips × ``hypotheses`` (:func:`example_inputs` seeded with ``seed``)."""
    from ddhpose.deploy.onnx_runtime import OnnxDenoiser

    c = model.config
    g = torch.Generator().manual_seed(seed)
    inputs = example_inputs(c.frames, model.skeleton.num_joints, c.timesteps, batch, hypotheses,
                            g)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model.denoise(*(x.to(device) for x in inputs)).cpu().numpy()
    finally:
        model.train(was_training)
    got = OnnxDenoiser.from_path(path, threads=threads)(*inputs).numpy()
    return float(np.abs(got - ref).max())


def export_checked(model: Any, path: str | Path, *, exporter: str = DEFAULT_EXPORTER,
                   source: str | None = None, tolerance: float | None = None,
                   threads: int | None = None) -> float:
    """:func:`export_denoiser` then :func:`parity` on the written graph before it takes the name
    ``path`` (atomic): returns the max abs difference (metres); above ``tolerance`` raises a
    one-line :class:`~ddhpose.errors.DataError` naming ``path`` and ``path`` is left as it was.
    ``tolerance`` defaults to :data:`PARITY_TOLERANCE` (1e-4 m)."""
    from ddhpose.errors import DataError

    tolerance = PARITY_TOLERANCE if tolerance is None else tolerance
    path = Path(path)
    with atomic_path(path) as tmp:
        export_denoiser(model, tmp, exporter=exporter, source=source)
        diff = parity(model, tmp, threads=threads)
        if not diff <= tolerance:  # NaN refused too
            raise DataError(path, f"the exported graph differs from model.denoise by {diff:.3g} "
                                  f"(max abs, metres) on a random input, above {tolerance:g}; "
                                  "nothing written")
    return diff


#: the graph's file name in a logged MLflow model (``artifacts/model.onnx``)
ONNX_FILE = "model.onnx"


def export_for_registry(checkpoint: str | Path, folder: str | Path) -> tuple[Path | None, str]:
    """The graph of ``checkpoint`` as ``folder/model.onnx`` (:func:`export_checked`) for a logged
    MLflow model: ``(path, note)``, or ``(None, why)`` — one line — when the ``onnx`` extra is
    missing or the export fails, so the model is logged without it."""
    from ddhpose.extras import missing_modules
    from ddhpose.model.checkpoint import load_model

    missing = missing_modules(("onnx", "onnxruntime"))
    if missing:
        return None, (f"the onnx extra is missing ({', '.join(missing)}; pip install -e "
                      f"'.[{EXTRA}]'): the model is logged without {ONNX_FILE}")
    out = Path(folder) / ONNX_FILE
    try:
        diff = export_checked(load_model(checkpoint), out, source=str(checkpoint))
    except Exception as exc:  # the registration goes on without the graph, saying why
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"no {ONNX_FILE} in the logged model: {first[:300]}"
    return out, f"{ONNX_FILE}: max abs diff to model.denoise {diff:.2e} m"


__all__ = [
    "DEFAULT_EXPORTER",
    "EXPORTERS",
    "EXTRA",
    "EXTRA_MODULES",
    "INPUT_NAMES",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "RANDOM_OPS",
    "example_inputs",
    "export_checked",
    "export_denoiser",
    "export_for_registry",
    "metadata",
    "parity",
    "random_ops",
]
