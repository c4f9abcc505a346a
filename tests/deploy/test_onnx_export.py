"""The exported denoiser graph on onnxruntime against the PyTorch model: one denoiser call
(``model.denoise``) and the whole sampler with the same noise (``model.sample``), max abs <= 1e-4
metres; no random node in the graph; the model config round trip through the metadata."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from demo_config import demo_model, paper_model

import ddhpose
from ddhpose.model import DDHPose

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnx", reason="the onnx extra: pip install -e '.[onnx]'")

from ddhpose.deploy.onnx_export import (
    INPUT_NAMES,
    META_CONFIG,
    META_DATASET,
    META_EXPORTER,
    META_OPSET,
    META_SKELETON,
    META_VERSION,
    META_WEIGHTS,
    example_inputs,
    export_denoiser,
    parity,
    random_ops,
)
from ddhpose.deploy.onnx_runtime import OnnxDenoiser, load_onnx
from ddhpose.model.checkpoint import weights_sha256

TOL = 1e-4  # metres


def _model(dataset: str = "h36m", **overrides) -> DDHPose:
    torch.manual_seed(0)
    return DDHPose(demo_model(dataset=dataset, **overrides))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo-size model (params.yaml: width 64, depth 3, F 27), random weights, and its graph;
    the model stays in training mode (export and sampling must switch drop-path off)."""
    model = _model()
    assert model.config.drop_path > 0 and model.training
    path = export_denoiser(model, tmp_path_factory.mktemp("onnx") / "demo.onnx")
    return model, path


def _denoise(model: DDHPose, inputs) -> np.ndarray:
    """``model.denoise`` in eval mode (no drop-path), no autograd; the mode restored."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.denoise(*inputs).numpy()
    finally:
        model.train(was)


@pytest.mark.parametrize(("batch", "hypotheses"), [(1, 1), (2, 3), (5, 4)])
def test_denoiser_parity_any_batch_and_hypotheses(demo, batch, hypotheses):
    model, path = demo
    c = model.config
    assert (c.width, c.depth, c.frames) == (64, 3, 27)
    inputs = example_inputs(c.frames, 17, c.timesteps, batch, hypotheses,
                            torch.Generator().manual_seed(batch))
    got = OnnxDenoiser.from_path(path)(*inputs).numpy()
    ref = _denoise(model, inputs)
    assert got.shape == ref.shape == (batch, hypotheses, c.frames, 17, 3)
    assert np.abs(got - ref).max() <= TOL
    # the comparison can fail: other timesteps give other outputs
    other = _denoise(model, (*inputs[:3], (inputs[3] + 500) % c.timesteps))
    assert np.abs(got - other).max() > 10 * TOL


def test_the_graph_draws_nothing(demo):
    model, path = demo
    assert random_ops(path) == []
    inputs = example_inputs(model.config.frames, 17, model.config.timesteps)
    run = OnnxDenoiser.from_path(path)
    assert np.array_equal(run(*inputs).numpy(), run(*inputs).numpy())


def test_metadata_round_trip(demo):
    model, path = demo
    lifter = load_onnx(path)
    assert lifter.config == model.config
    meta = lifter.metadata
    assert json.loads(meta[META_CONFIG]) == dataclasses.asdict(model.config)
    assert meta[META_VERSION] == ddhpose.__version__
    assert (meta[META_DATASET], meta[META_SKELETON]) == ("h36m", "h36m17")
    assert (meta[META_EXPORTER], meta[META_OPSET]) == ("torchscript", "17")
    assert meta[META_WEIGHTS] == weights_sha256(model.state_dict())
    assert [i.name for i in lifter.denoiser.session.get_inputs()] == list(INPUT_NAMES)
    shapes = {i.name: i.shape for i in lifter.denoiser.session.get_inputs()}
    assert shapes["directions"][2:] == [27, 17, 3] and shapes["x2d"][1:] == [27, 17, 2]
    assert all(isinstance(d, str) for d in shapes["directions"][:2])  # dynamic B and H


def test_sampler_with_the_same_noise(demo):
    model, path = demo
    lifter = load_onnx(path)
    x2d = torch.randn((3, 27, 17, 2), generator=torch.Generator().manual_seed(3)) * 0.3
    ref = model.sample(x2d, hypotheses=5, steps=2, generator=torch.Generator().manual_seed(7))
    got = lifter.sample(x2d, hypotheses=5, steps=2, generator=torch.Generator().manual_seed(7))
    assert got.shape == ref.shape == (3, 2, 5, 27, 17, 3)
    assert (got - ref).abs().max().item() <= TOL
    other = lifter.sample(x2d, hypotheses=5, steps=2, generator=torch.Generator().manual_seed(8))
    assert (other - ref).abs().max().item() > 10 * TOL
    assert model.training  # sample restored the mode


def test_sampler_3dhp_millimetres(tmp_path):
    model = _model("3dhp", width=32, depth=2, heads=4, frames=9)
    path = export_denoiser(model, tmp_path / "m.onnx")
    lifter = load_onnx(path)
    assert lifter.unit_scale == 1000.0 and lifter.skeleton.name == "3dhp17"
    x2d = torch.randn((2, 9, 17, 2), generator=torch.Generator().manual_seed(0)) * 0.3
    ref = model.sample(x2d, hypotheses=2, steps=3, generator=torch.Generator().manual_seed(1))
    got = lifter.sample(x2d, hypotheses=2, steps=3, generator=torch.Generator().manual_seed(1))
    assert ((got - ref).abs().max() / 1000.0).item() <= TOL  # outputs are millimetres


@pytest.mark.slow
def test_dynamo_exporter_parity(tmp_path):
    model = _model()
    path = export_denoiser(model, tmp_path / "d.onnx", exporter="dynamo")
    assert load_onnx(path).metadata[META_EXPORTER] == "dynamo"
    assert random_ops(path) == []
    assert parity(model, path, batch=3, hypotheses=2) <= TOL


@pytest.mark.slow
def test_paper_size_parity(tmp_path):
    """Width 512, depth 8, heads 8, F 243 (configs/paper_h36m_cpn.yaml), random weights; the
    PyTorch side runs its fused oneDNN inference path, the graph the plain one."""
    torch.manual_seed(0)
    model = DDHPose(paper_model())
    c = model.config
    assert (c.width, c.depth, c.heads, c.frames) == (512, 8, 8, 243)
    path = export_denoiser(model, tmp_path / "paper.onnx")
    assert random_ops(path) == []
    assert parity(model, path, batch=1, hypotheses=2) <= TOL
    x2d = torch.randn((1, 243, 17, 2), generator=torch.Generator().manual_seed(0)) * 0.3
    ref = model.sample(x2d, hypotheses=1, steps=1, generator=torch.Generator().manual_seed(1))
    got = load_onnx(path).sample(x2d, hypotheses=1, steps=1,
                                 generator=torch.Generator().manual_seed(1))
    assert (got - ref).abs().max().item() <= TOL
