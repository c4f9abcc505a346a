"""Typed pipeline configuration: ``params.yaml`` -> frozen dataclasses, strictly validated.

``params.yaml`` holds six sections (``data``, ``model``, ``train``, ``sample``, ``eval``,
``tracking``); every key is a plain YAML scalar or list so ``dvc exp run --set-param
train.epochs=2`` works. Nothing is parsed at import time: call :func:`load_params`.

Validation is strict: an unknown or missing key, a wrong type (``true`` for an int, ``"1e-4"``
for a float; ints are accepted for float fields) or an impossible value raises
:class:`ddhpose.errors.ConfigError` naming the dotted key, e.g. ``params key 'sample.hypotheses':
must be >= 1, got 0``. Lists are stored as tuples.

Named configurations (``configs/*.yaml``) hold only overridden keys;
``python -m ddhpose.pipeline.params apply configs/paper_h36m_cpn.yaml`` deep-merges one into
``params.yaml``, validates the result and rewrites the file atomically, comments included
(the file is rendered from the field docs below).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddhpose.errors import ConfigError, DDHPoseError
from ddhpose.io import atomic_open
from ddhpose.pipeline.params_build import build_section, reject_unknown, type_name
from ddhpose.pipeline.params_rules import DATASETS, HEADLINES, SOURCES, XC_LAYOUTS, validate
from ddhpose.pipeline.yamlfile import ParamsFileError, deep_merge, dump_scalar, plain, read_yaml

__all__ = [
    "DATASETS", "HEADLINES", "SOURCES", "XC_LAYOUTS", "DataParams", "EvalParams", "ModelParams",
    "Params", "ParamsFileError", "SampleParams", "SyntheticParams", "TrackingParams",
    "TrainParams", "apply_overrides", "deep_merge", "load_params", "read_yaml", "render_yaml",
    "write_params",
]


def _f(default: Any, doc: str) -> Any:
    """A dataclass field with a default (lists/dicts via factory) and a one-line doc."""
    if isinstance(default, list):
        items = tuple(default)
        return field(default_factory=lambda: items, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


# --- the schema -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticParams:
    seed: int = _f(0, "random seed of the synthetic generator")
    frames: int = _f(300, "frames per synthetic sequence")
    subactions: int = _f(1, "sub-actions per action (e.g. 'Walking 1', 'Walking 2')")
    jitter_px: float = _f(3.0, "std of per-frame 2D detection noise (pixels)")
    bias_px: float = _f(2.0, "std of per-sequence, per-joint 2D detection bias (pixels)")
    outlier_rate: float = _f(0.01, "fraction of 2D joints replaced by outliers (0..1)")
    outlier_px: float = _f(40.0, "std of the outlier displacement (pixels)")


@dataclass(frozen=True)
class DataParams:
    dataset: str = _f("h36m", "h36m | 3dhp")
    source: str = _f("synthetic", "synthetic | local (copy from data.path) | url (download)")
    path: str = _f("", "local directory holding the dataset files (source: local)")
    url: str = _f("", "base URL; files are fetched from <url>/<file name> (source: url)")
    sha256: dict[str, str] = field(
        default_factory=dict,
        metadata={"doc": "file name -> hex sha256; required for url, checked when given"},
    )
    keypoints: str = _f("detections", "2D file data_2d_h36m_<keypoints>.npz (CPN: cpn_ft_h36m_dbb)")
    subjects_train: tuple[str, ...] = _f(["S1", "S5", "S6", "S7", "S8"], "H36M training subjects")
    subjects_test: tuple[str, ...] = _f(["S9", "S11"], "H36M test subjects")
    actions: str | tuple[str, ...] = _f("*", "'*' or a list of action-name prefixes")
    synthetic: SyntheticParams = field(
        default_factory=SyntheticParams,
        metadata={"doc": "synthetic data generator (source: synthetic)"},
    )


@dataclass(frozen=True)
class ModelParams:
    width: int = _f(64, "channel width C (paper 512); divisible by heads")
    depth: int = _f(3, "spatial-temporal layers L (paper 8)")
    heads: int = _f(8, "attention heads")
    mlp_ratio: float = _f(2.0, "MLP hidden width / C")
    frames: int = _f(27, "frames per clip F (paper 243)")
    timesteps: int = _f(1000, "diffusion steps T")
    scale: float = _f(1.0, "signal scale of the diffused bones")
    drop_path: float = _f(0.1, "max stochastic-depth rate while training (0 when sampling)")
    xc_layout: str = _f("reference", "reference (flat reshape, parity) | transpose (intended)")


@dataclass(frozen=True)
class TrainParams:
    epochs: int = _f(8, "training epochs (paper 400)")
    batch_clips: int = _f(4, "clips per optimiser step (global batch)")
    lr: float = _f(1.0e-4, "AdamW initial learning rate")
    lr_decay: float = _f(0.993, "lr multiplier after every epoch, in (0, 1]")
    weight_decay: float = _f(0.1, "AdamW weight decay")
    w_len: float = _f(1.0, "weight of the bone-length loss")
    w_dir: float = _f(1.0, "weight of the bone-direction loss")
    loss_scaled_grad: bool = _f(True, "reference backward(loss): gradient scaled by the loss")
    flip_augment: bool = _f(True, "random horizontal flip of training clips")
    seed: int = _f(1, "torch/numpy/random seed")
    shuffle_seed: int = _f(1234, "seed of the clip shuffling generator")
    checkpoint_every: int = _f(5, "save models/checkpoints/epoch_N.pt every N epochs (0 = never)")
    validate: bool = _f(True, "validate (H=1, K=1) after every epoch; picks best.pt")
    num_workers: int = _f(0, "data loader worker processes")
    grad_clip: float = _f(0.0, "max gradient norm (0 = off)")
    amp: bool = _f(False, "mixed precision (CUDA only)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")


@dataclass(frozen=True)
class SampleParams:
    hypotheses: int = _f(5, "hypotheses H per clip")
    steps: int = _f(3, "DDIM steps K (<= model.timesteps)")
    batch_clips: int = _f(4, "clips per sampler call (P-Best picks one hypothesis per batch)")
    seed: int = _f(0, "seed of the initial noise")
    save_hypotheses: bool = _f(False, "also save all H hypotheses (large)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = _f("float32", "denoiser precision: float32 | bfloat16 (faster on CPUs with bf16 "
                    "units; accuracy cost in reports/bench.md)")


@dataclass(frozen=True)
class EvalParams:
    headline: str = _f("j_agg", "aggregation in metrics.json: p_best | p_agg | j_best | j_agg")
    render_clips: int = _f(2, "clips rendered as plots (0 = none)")


@dataclass(frozen=True)
class TrackingParams:
    enabled: bool = _f(True, "log to MLflow (false: offline JSON lines only)")
    experiment_prefix: str = _f("ddhpose", "MLflow experiment name = <prefix>-<dataset>")


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
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    sample: SampleParams = field(default_factory=SampleParams)
    eval: EvalParams = field(default_factory=EvalParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)

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
        "# ddhpose pipeline parameters. Validated by ddhpose.pipeline.params (typed, strict).",
        "# Apply a named config: python -m ddhpose.pipeline.params apply configs/<name>.yaml",
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


def write_params(params: Params, path: str | Path) -> None:
    """Write ``params`` as commented YAML, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(render_yaml(params))


def apply_overrides(
    base_path: str | Path, override_path: str | Path, out_path: str | Path
) -> Params:
    """Deep-merge the override file into the base file, validate, write ``out_path`` atomically."""
    base = read_yaml(base_path)
    override = read_yaml(override_path)
    if not isinstance(base, Mapping):
        raise ParamsFileError(base_path, f"expected a mapping of sections, got {type_name(base)}")
    if override is None:
        override = {}
    if not isinstance(override, Mapping):
        raise ParamsFileError(override_path, f"expected a mapping, got {type_name(override)}")
    try:
        params = Params.from_dict(deep_merge(base, override))
    except ConfigError as exc:
        where = f"merging {override_path} into {base_path}"
        raise ConfigError(exc.key, f"{exc.problem} ({where})") from exc
    write_params(params, out_path)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddhpose.pipeline.params",
                                     description="Validate or update params.yaml.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="merge a configs/*.yaml override into params.yaml")
    a.add_argument("override", help="override file, e.g. configs/paper_h36m_cpn.yaml")
    a.add_argument("--base", default="params.yaml", help="base params file (default params.yaml)")
    a.add_argument("--out", default=None, help="output file (default: the base file)")
    c = sub.add_parser("check", help="validate a params file")
    c.add_argument("path", nargs="?", default="params.yaml")
    sub.add_parser("defaults", help="print the default params.yaml")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "apply":
            out = args.out or args.base
            apply_overrides(args.base, args.override, out)
            print(f"{out}: applied {args.override} (validated)")
        elif args.cmd == "check":
            load_params(args.path)
            print(f"{args.path}: ok")
        else:
            sys.stdout.write(render_yaml(Params()))
    except DDHPoseError as exc:
        print(f"params: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
