"""The names an exported denoiser graph and its readers share: inputs, output, metadata keys
(``metadata_props``), and the extra that holds the ONNX packages. No imports: the exporter
(:mod:`.onnx_export`) and the runtime (:mod:`.onnx_runtime`) both read it."""

from __future__ import annotations

INPUT_NAMES = ("x2d", "directions", "lengths", "t")
OUTPUT_NAME = "x0"

META_CONFIG = "ddhpose.model_config"
META_VERSION = "ddhpose.version"
META_DATASET = "ddhpose.dataset"
META_SKELETON = "ddhpose.skeleton"
META_OPSET = "ddhpose.opset"
META_EXPORTER = "ddhpose.exporter"
META_WEIGHTS = "ddhpose.weights_sha256"
META_SOURCE = "ddhpose.source"
META_GRAPH = "ddhpose.graph"
GRAPH_KIND = "denoiser-step"
#: the extra that holds the packages export needs, and their module names
EXTRA = "onnx"
EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")


__all__ = ["EXTRA", "EXTRA_MODULES", "GRAPH_KIND", "INPUT_NAMES", "META_CONFIG", "META_DATASET",
           "META_EXPORTER", "META_GRAPH", "META_OPSET", "META_SKELETON", "META_SOURCE",
           "META_VERSION", "META_WEIGHTS", "OUTPUT_NAME"]
