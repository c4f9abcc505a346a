"""Value rules of the pipeline configuration: ranges, choices and cross-key constraints.

:func:`validate` runs after the types were checked (``ddhpose.pipeline.params``) and raises
:class:`ddhpose.errors.ConfigError` naming the dotted params key and the offending value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ddhpose.errors import ConfigError

if TYPE_CHECKING:
    from ddhpose.pipeline.params import Params

DATASETS = ("h36m", "3dhp")
SAMPLE_DTYPES = ("float32", "bfloat16")
SOURCES = ("synthetic", "local", "url")
XC_LAYOUTS = ("reference", "transpose")
HEADLINES = ("p_best", "p_agg", "j_best", "j_agg")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:/")  # a scheme (not a Windows drive letter)


def _check(key: str, ok: bool, problem: str, got: Any) -> None:
    if not ok:
        raise ConfigError(key, f"{problem}, got {got!r}")


def validate(p: Params) -> None:
    """Check every value of ``p``; the first problem raises ConfigError naming its key."""
    d, s, m, t, sa, e = p.data, p.data.synthetic, p.model, p.train, p.sample, p.eval
    _check("data.dataset", d.dataset in DATASETS, f"must be one of {'|'.join(DATASETS)}", d.dataset)
    _check("data.source", d.source in SOURCES, f"must be one of {'|'.join(SOURCES)}", d.source)
    if d.source == "local":
        _check("data.path", bool(d.path.strip()), "required when data.source is 'local'", d.path)
    if d.source == "url":
        _check("data.url", bool(re.match(r"^(https?|file)://", d.url)),
               "required when data.source is 'url' (http://, https:// or file://)", d.url)
        _check("data.sha256", bool(d.sha256),
               "required when data.source is 'url' (file name -> hex digest)", d.sha256)
    _check("data.keypoints", bool(_SAFE_NAME.match(d.keypoints)),
           "must be a non-empty name of letters, digits, '_', '-', '.'", d.keypoints)
    _check("data.subjects_train", len(d.subjects_train) >= 1, "must list >= 1 subject",
           list(d.subjects_train))
    _check("data.subjects_test", len(d.subjects_test) >= 1, "must list >= 1 subject",
           list(d.subjects_test))
    both = sorted(set(d.subjects_train) & set(d.subjects_test))
    _check("data.subjects_test", not both, "must not overlap data.subjects_train", both)
    if d.actions != "*":
        _check("data.actions", len(d.actions) >= 1, "must be '*' or a non-empty list", d.actions)
    _check("data.synthetic.seed", s.seed >= 0, "must be >= 0", s.seed)
    _check("data.synthetic.frames", s.frames >= 2, "must be >= 2", s.frames)
    _check("data.synthetic.subactions", s.subactions >= 1, "must be >= 1", s.subactions)
    _check("data.synthetic.jitter_px", s.jitter_px >= 0, "must be >= 0", s.jitter_px)
    _check("data.synthetic.bias_px", s.bias_px >= 0, "must be >= 0", s.bias_px)
    _check("data.synthetic.outlier_rate", 0 <= s.outlier_rate <= 1, "must be in [0, 1]",
           s.outlier_rate)
    _check("data.synthetic.outlier_px", s.outlier_px >= 0, "must be >= 0", s.outlier_px)

    for k in ("width", "depth", "heads", "frames", "timesteps"):
        _check(f"model.{k}", getattr(m, k) >= 1, "must be >= 1", getattr(m, k))
    _check("model.width", m.width % m.heads == 0,
           f"must be divisible by model.heads ({m.heads})", m.width)
    _check("model.mlp_ratio", m.mlp_ratio > 0, "must be > 0", m.mlp_ratio)
    _check("model.scale", m.scale > 0, "must be > 0", m.scale)
    _check("model.drop_path", 0 <= m.drop_path < 1, "must be in [0, 1)", m.drop_path)
    _check("model.xc_layout", m.xc_layout in XC_LAYOUTS, f"must be one of {'|'.join(XC_LAYOUTS)}",
           m.xc_layout)

    _check("model.init", not _URI.match(m.init) or m.init.startswith(("models:/", "runs:/")),
           "must be '', a checkpoint path, models:/<name>@<alias>, models:/<name>/<version> "
           "or runs:/<run id>/<path>", m.init)
    _check("train.epochs", t.epochs >= 0, "must be >= 0", t.epochs)
    _check("train.epochs", t.epochs >= 1 or bool(m.init.strip()),
           "0 (evaluate only) needs model.init (the checkpoint to adopt)", t.epochs)
    _check("train.batch_clips", t.batch_clips >= 1, "must be >= 1", t.batch_clips)
    _check("train.lr", t.lr > 0, "must be > 0", t.lr)
    _check("train.lr_decay", 0 < t.lr_decay <= 1, "must be in (0, 1]", t.lr_decay)
    for k in ("weight_decay", "w_len", "w_dir", "grad_clip"):
        _check(f"train.{k}", getattr(t, k) >= 0, "must be >= 0", getattr(t, k))
    for k in ("seed", "shuffle_seed", "num_workers"):
        _check(f"train.{k}", getattr(t, k) >= 0, "must be >= 0", getattr(t, k))
    _check("train.checkpoint_every", t.checkpoint_every >= 0, "must be >= 0 (0 = never)",
           t.checkpoint_every)
    _check("train.device", bool(_DEVICE.match(t.device)), "must be auto|cpu|cuda|cuda:N", t.device)

    _check("sample.hypotheses", sa.hypotheses >= 1, "must be >= 1", sa.hypotheses)
    _check("sample.steps", sa.steps >= 1, "must be >= 1", sa.steps)
    _check("sample.steps", sa.steps <= m.timesteps,
           f"must be <= model.timesteps ({m.timesteps})", sa.steps)
    _check("sample.batch_clips", sa.batch_clips >= 1, "must be >= 1", sa.batch_clips)
    _check("sample.seed", sa.seed >= 0, "must be >= 0", sa.seed)
    _check("sample.device", bool(_DEVICE.match(sa.device)), "must be auto|cpu|cuda|cuda:N",
           sa.device)
    _check("sample.dtype", sa.dtype in SAMPLE_DTYPES, f"must be one of {'|'.join(SAMPLE_DTYPES)}",
           sa.dtype)

    _check("eval.headline", e.headline in HEADLINES, f"must be one of {'|'.join(HEADLINES)}",
           e.headline)
    _check("eval.render_clips", e.render_clips >= 0, "must be >= 0", e.render_clips)
    _check("tracking.experiment_prefix", bool(_SAFE_NAME.match(p.tracking.experiment_prefix)),
           "must be a non-empty name of letters, digits, '_', '-', '.'",
           p.tracking.experiment_prefix)
