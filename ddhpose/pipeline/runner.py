"""Common entry of the DVC stage scripts: load params, join the MLflow run, one-line errors.

A stage script in ``stages/`` is three lines: it imports its stage function and calls
:func:`run_stage`. Everything a user can get wrong (params.yaml, data files, checkpoints)
surfaces as a single ``<stage>: error: <file or key>: <problem>`` line and exit status 2; so does
every OS error (disk full, read-only file system, permission denied), with the cause in words.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.errors import DDHPoseError, os_error_line
from ddhpose.project import project_root

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker

# a stage body: run(params, project root, MLflow tracker)
StageFn = Callable[["Params", Path, "Tracker"], None]



def run_stage(
    stage: str, fn: StageFn, params_path: str | Path | None = None, *, track: bool = True,
    load: Callable[[Path], Any] | None = None,
) -> int:
    """Run ``fn(params, root, tracker)`` in the stage's MLflow child run; return the exit code.

    ``track=False`` runs ``fn(params, root, None)`` without opening any MLflow run; ``load``
    replaces :func:`ddhpose.config.schema.load_params` (a stage that checks only its keys).
    """
    from ddhpose.config.schema import load_params

    root = project_root()
    try:
        params = (load or load_params)(Path(params_path) if params_path else root / "params.yaml")
        if not track:
            fn(params, root, None)
            return 0
        from ddhpose.tracking.runs import stage_run

        with stage_run(stage, params, root) as tracker:
            fn(params, root, tracker)
    except DDHPoseError as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permission, ...: one line naming the file
        print(f"{stage}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    return 0
