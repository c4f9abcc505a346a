"""Typed pipeline configuration: ``params.yaml`` -> frozen dataclasses, strictly validated.

``params.yaml`` holds six sections (``data``, ``model``, ``train``, ``sample``, ``eval``,
``tracking``); every key is a plain YAML scalar or list so ``dvc exp run --set-param
train.epochs=2`` works. Nothing is parsed at import time: call :func:`load_params`.

Validation is strict: an unknown or missing key, a wrong type (``true`` for an int, ``"1e-4"``
for a float; ints are accepted for float fields) or an impossible value raises
:class:`ddhpose.errors.ConfigError` naming the dotted key, e.g. ``params key 'sample.hypotheses':
must be >= 1, got 0``. Lists are stored as tuples.

Named configurations (``configs/*.yaml``) hold only overridden keys;
``ddhpose params apply configs/paper_h36m_cpn.yaml`` (:mod:`ddhpose.config.apply`) deep-merges
one into ``params.yaml``, validates the result and rewrites the file atomically, comments
included (the file is rendered from the field docs below by :func:`render_yaml`).

One set of defaults: the demo's values live in ``params.yaml`` only (the schema below has types
and docs, no values); the paper's values in ``configs/``. The library's configs use the same key
names: the ``train`` section IS :class:`ddhpose.training.config.TrainConfig`, and
:class:`ddhpose.model.ModelConfig` / :class:`ddhpose.synthetic.config.SyntheticConfig` are built
from their sections by one-line ``from_params`` adapters, which also hold the value rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddhpose.config.build import build_section, reject_unknown, type_name
from ddhpose.config.rules import DATASETS, HEADLINES, SOURCES, validate
from ddhpose.config.yamlfile import ParamsFileError, deep_merge, dump_scalar, plain, read_yaml
from ddhpose.errors import ConfigError
from ddhpose.model.config import XC_LAYOUTS
from ddhpose.training.config import TrainConfig as TrainParams
from ddhpose.training.config import doc

__all__ = [
    "DATASETS", "HEADLINES", "SOURCES", "XC_LAYOUTS", "DataParams", "EvalParams", "ModelParams",
    "Params", "ParamsFileError", "SampleParams", "SyntheticParams", "TrackingParams",
    "TrainParams", "deep_merge", "load_params", "read_yaml", "render_yaml",
]


# --- the schema -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticParams:
    seed: int = doc("random seed of the synthetic generator")
    frames: int = doc("frames per synthetic sequence")
    subactions: int = doc("sub-actions per action (e.g. 'Walking 1', 'Walking 2')")
    jitter_px: float = doc("std of per-frame 2D detection noise (pixels)")
    bias_px: float = doc("std of per-sequence, per-joint 2D detection bias (pixels)")
    outlier_rate: float = doc("fraction of 2D joints replaced by outliers (0..1)")
    outlier_px: float = doc("std of the outlier displacement (pixels)")


@dataclass(frozen=True)
class DataParams:
    dataset: str = doc("h36m | 3dhp")
    source: str = doc("synthetic | local (copy from data.path) | url (download)")
    path: str = doc("local directory holding the dataset files (source: local)")
    url: str = doc("base URL; files are fetched from <url>/<file name> (source: url)")
    sha256: dict[str, str] = doc("file name -> hex sha256; required for url, checked when given")
    keypoints: str = doc("2D file data_2d_h36m_<keypoints>.npz (CPN: cpn_ft_h36m_dbb)")
    subjects_train: tuple[str, ...] = doc("H36M training subjects")
    subjects_test: tuple[str, ...] = doc("H36M test subjects")
    actions: str | tuple[str, ...] = doc("'*' or a list of action-name prefixes")
    synthetic: SyntheticParams = doc("synthetic data generator (source: synthetic)")


@dataclass(frozen=True)
class ModelParams:
    width: int = doc("channel width C (paper 512); divisible by heads")
    depth: int = doc("spatial-temporal layers L (paper 8)")
    heads: int = doc("attention heads")
    mlp_ratio: float = doc("MLP hidden width / C")
    frames: int = doc("frames per clip F (paper 243)")
    timesteps: int = doc("diffusion steps T")
    scale: float = doc("signal scale of the diffused bones")
    drop_path: float = doc("max stochastic-depth rate while training (0 when sampling)")
    xc_layout: str = doc("reference (flat reshape, parity) | transpose (intended)")
    init: str = doc("start from: '' (scratch) | checkpoint path (ours, authors' .bin) | "
                    "models:/name@alias | models:/name/N | runs:/id/path")


@dataclass(frozen=True)
class SampleParams:
    hypotheses: int = doc("hypotheses H per clip")
    steps: int = doc("DDIM steps K (<= model.timesteps)")
    batch_clips: int = doc("clips per sampler call (P-Best picks one hypothesis per batch)")
    seed: int = doc("seed of the initial noise")
    save_hypotheses: bool = doc("also save all H hypotheses (large)")
    device: str = doc("auto | cpu | cuda | cuda:N")
    dtype: str = doc("denoiser precision: auto | float32 | float16 | bfloat16 (auto: bf16 on "
                     "GPUs/CPUs with bf16 units, fp16 on older GPUs; cost in reports/bench.md)")
    tf32: bool = doc("CUDA: float32 matmuls on TF32 tensor cores (false: IEEE float32, for "
                     "parity runs)")
    processes: int | str = doc("sampling processes started by the stage: N | auto (auto: one per "
                               "visible GPU, else 1); under torchrun, torchrun's count")


@dataclass(frozen=True)
class EvalParams:
    headline: str = doc("aggregation in metrics.json: j_agg | p_agg | p_best_oracle | "
                        "j_best_oracle")
    render_clips: int = doc("clips rendered as plots (0 = none)")
    smooth_window: int = doc("frames of the Savitzky-Golay temporal filter whose effect on P1 "
                             "and acceleration error evaluate measures (odd >= 3; 0 = do not "
                             "measure); also the default of ddhpose infer --smooth")
    stream_frames: int = doc("test frames (evenly spaced) evaluate lifts with each streaming "
                             "policy, centred and causal, and scores beside the offline "
                             "predictions (0 = do not measure)")


@dataclass(frozen=True)
class TrackingParams:
    enabled: bool = doc("log to MLflow (false: offline JSON lines only)")
    experiment_prefix: str = doc("MLflow experiment name = <prefix>-<dataset>")
    register_model: bool = doc("evaluate logs + registers the model as <prefix>-<dataset>")


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "model": ModelParams,
    "train": TrainParams,
    "sample": SampleParams,
    "eval": EvalParams,
    "tracking": TrackingParams,
}
SECTION_DOCS = {
    "data": "what fetch_data / preprocess read",
    "model": "the denoiser (HSTDenoiser) and diffusion schedule",
    "train": 'training recipe (docs/model.md "Training")',
    "sample": "DDIM sampling of the test set",
    "eval": "metrics and plots",
    "tracking": "MLflow tracking",
}


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    train: TrainParams
    sample: SampleParams
    eval: EvalParams
    tracking: TrackingParams

    @classmethod
    def from_dict(cls, d: Any) -> Params:
        """Build and validate from a nested mapping (the parsed params.yaml)."""
        if not isinstance(d, Mapping):
            raise ConfigError("<root>", f"expected a mapping of sections, got {type_name(d)}")
        reject_unknown("", d, SECTIONS)
        sections = {}
        for name, typ in SECTIONS.items():
            if name not in d:
                raise ConfigError(name, "missing section")
            sections[name] = build_section(typ, d[name], name)
        params = cls(**sections)
        validate(params)
        return params

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists, not tuples): what params.yaml holds."""
        return plain(dataclasses.asdict(self))

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys -> scalars for MLflow, e.g. ``{"train.lr": 1e-4, ...}``.

        Lists become comma-joined strings; ``data.sha256`` entries become ``data.sha256.<file>``.
        """
        flat: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(obj, list):
                flat[prefix] = ",".join(str(x) for x in obj)
            else:
                flat[prefix] = obj

        walk("", self.to_dict())
        return flat


# --- files ----------------------------------------------------------------------------------------


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
    raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ParamsFileError(path, f"expected a mapping of sections, got {type_name(raw)}")
    try:
        return Params.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{exc.problem} (in {path})") from exc


def render_yaml(params: Params) -> str:
    """params.yaml text for ``params``, one commented line per key."""
    lines = [
        "# ddhpose pipeline parameters. Validated by ddhpose.config.schema (typed, strict).",
        "# Apply a named config: ddhpose params apply configs/<name>.yaml",
        "# Override one key: dvc exp run --set-param train.epochs=2",
    ]

    def emit(obj: Any, indent: int) -> None:
        pad = "  " * indent
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            doc = f.metadata.get("doc", "")
            if dataclasses.is_dataclass(v):
                lines.append(f"{pad}{f.name}:  # {doc}")
                emit(v, indent + 1)
            elif isinstance(v, dict) and v:
                lines.append(f"{pad}{f.name}:  # {doc}")
                lines.extend(f"{pad}  {dump_scalar(k)}: {dump_scalar(h)}" for k, h in v.items())
            else:
                lines.append(f"{pad}{f.name}: {dump_scalar(plain(v))}  # {doc}")

    for name in SECTIONS:
        lines.append("")
        lines.append(f"{name}:  # {SECTION_DOCS[name]}")
        emit(getattr(params, name), 1)
    return "\n".join(lines) + "\n"
