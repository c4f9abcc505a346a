"""Value rules of the pipeline configuration: ranges, choices and cross-key constraints.

:func:`validate` runs after the types were checked (``ddhpose.config.schema``) and raises
:class:`ddhpose.errors.ConfigError` naming the dotted params key and the offending value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ddhpose.errors import ConfigError
from ddhpose.evaluation import AGGREGATIONS
from ddhpose.model.config import DATASETS, SAMPLE_DTYPES, ModelConfig
from ddhpose.synthetic.config import SyntheticConfig
from ddhpose.training.config import DEVICE_PATTERN

if TYPE_CHECKING:
    from ddhpose.config.schema import Params

SOURCES = ("synthetic", "local", "url")
HEADLINES = AGGREGATIONS
# eval.headline values before the aggregations' own names were used (refused with a hint).
_OLD_HEADLINES = {"p_best": "p_best_oracle", "j_best": "j_best_oracle"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:/")  # a scheme (not a Windows drive letter)


def _check(key: str, ok: bool, problem: str, got: Any) -> None:
    if not ok:
        raise ConfigError(key, f"{problem}, got {got!r}")


def validate(p: Params) -> None:
    """Check every value of ``p``; the first problem raises ConfigError naming its key."""
    d, m, t, sa, e = p.data, p.model, p.train, p.sample, p.eval
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
    if d.source == "synthetic":
        SyntheticConfig.from_params(d)  # data.synthetic.* rules
    ModelConfig.from_params(d.dataset, m).validate()  # model.* rules
    t.check()  # train.* rules
    _check("model.init", not _URI.match(m.init) or m.init.startswith(("models:/", "runs:/")),
           "must be '', a checkpoint path, models:/<name>@<alias>, models:/<name>/<version> "
           "or runs:/<run id>/<path>", m.init)
    _check("train.epochs", t.epochs >= 1 or bool(m.init.strip()),
           "0 (evaluate only) needs model.init (the checkpoint to adopt)", t.epochs)

    _check("sample.hypotheses", sa.hypotheses >= 1, "must be >= 1", sa.hypotheses)
    _check("sample.steps", sa.steps >= 1, "must be >= 1", sa.steps)
    _check("sample.steps", sa.steps <= m.timesteps,
           f"must be <= model.timesteps ({m.timesteps})", sa.steps)
    _check("sample.batch_clips", sa.batch_clips >= 1, "must be >= 1", sa.batch_clips)
    _check("sample.seed", sa.seed >= 0, "must be >= 0", sa.seed)
    _check("sample.device", bool(DEVICE_PATTERN.match(sa.device)), "must be auto|cpu|cuda|cuda:N",
           sa.device)
    _check("sample.processes", sa.processes == "auto" or (isinstance(sa.processes, int)
                                                          and sa.processes >= 1),
           "must be auto or an integer >= 1", sa.processes)
    _check("sample.dtype", sa.dtype in SAMPLE_DTYPES, f"must be one of {'|'.join(SAMPLE_DTYPES)}",
           sa.dtype)

    if e.headline in _OLD_HEADLINES:
        raise ConfigError("eval.headline", f"{e.headline!r} is now called "
                          f"{_OLD_HEADLINES[e.headline]!r} (it picks with the ground truth)")
    _check("eval.headline", e.headline in HEADLINES, f"must be one of {'|'.join(HEADLINES)}",
           e.headline)
    _check("eval.render_clips", e.render_clips >= 0, "must be >= 0", e.render_clips)
    _check("eval.smooth_window", e.smooth_window == 0 or (e.smooth_window >= 3
                                                          and e.smooth_window % 2 == 1),
           "must be 0 (off) or an odd number >= 3", e.smooth_window)
    _check("eval.stream_frames", 0 <= e.stream_frames <= 100_000,
           "must be 0 (off) or a number of frames up to 100000", e.stream_frames)
    _check("tracking.experiment_prefix", bool(_SAFE_NAME.match(p.tracking.experiment_prefix)),
           "must be a non-empty name of letters, digits, '_', '-', '.'",
           p.tracking.experiment_prefix)
