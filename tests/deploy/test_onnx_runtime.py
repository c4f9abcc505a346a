"""Loading a graph for onnxruntime: each bad file is one line naming it (DataError), checked
before any sampling."""

from __future__ import annotations

import json

import pytest

from ddhpose.errors import DataError

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")

from onnx import TensorProto, helper  # noqa: E402

from ddhpose.deploy.graph_spec import GRAPH_KIND, META_CONFIG, META_GRAPH  # noqa: E402
from ddhpose.deploy.onnx_runtime import check_infer_options, load_onnx  # noqa: E402


def _graph(path, names=("x2d", "directions", "lengths", "t"), meta=None):
    """A small valid ONNX graph (``x0 = directions``) with the given input names and metadata."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    out = helper.make_tensor_value_info("x0", TensorProto.FLOAT, None)
    node = helper.make_node("Identity", [names[1]], ["x0"])
    model = helper.make_model(helper.make_graph([node], "g", inputs, [out]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as exc:
        load_onnx(tmp_path / "none.onnx")
    assert "no such ONNX file" in _one_line(exc, tmp_path / "none.onnx")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(DataError) as exc:
        load_onnx(bad)
    assert "is not an ONNX graph onnxruntime can load" in _one_line(exc, bad)


def test_graph_without_ddhpose_metadata(tmp_path):
    path = _graph(tmp_path / "plain.onnx")
    with pytest.raises(DataError) as exc:
        load_onnx(path)
    assert "carries no ddhpose model config" in _one_line(exc, path)


def test_graph_with_a_bad_config(tmp_path):
    meta = {META_GRAPH: GRAPH_KIND, META_CONFIG: json.dumps({"dataset": "h36m", "width": 64})}
    path = _graph(tmp_path / "badcfg.onnx", meta=meta)
    with pytest.raises(DataError) as exc:
        load_onnx(path)
    assert "bad ddhpose model config" in _one_line(exc, path)


def test_graph_with_other_inputs(tmp_path):
    path = _graph(tmp_path / "other.onnx", names=("a", "b", "c", "d"))
    with pytest.raises(DataError) as exc:
        load_onnx(path)
    assert "is not a ddhpose denoiser graph" in _one_line(exc, path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"onnx": None}, "--runtime onnx needs --onnx"),
    ({"checkpoint": "m.pt"}, "--checkpoint is not used with --runtime onnx"),
    ({"device": "cuda"}, "runs on the CPU"),
    ({"dtype": "bfloat16"}, "runs the float32 graph"),
    ({"stream": True}, "does not stream yet"),
])
def test_infer_option_checks(tmp_path, kwargs, message):
    graph = _graph(tmp_path / "g.onnx")
    args = {"onnx": str(graph), "checkpoint": None, "device": "cpu", "dtype": "float32",
            "stream": False, **kwargs}
    with pytest.raises(DataError, match=message):
        check_infer_options(**args)
