"""``ddhpose params apply|check|render``: the params.yaml commands (:mod:`ddhpose.config.apply`).

After ``apply`` writes the project's params.yaml, dvc.yaml's ``init_model`` stage is shaped for
the new ``model.init`` (:func:`ddhpose.pipeline.deps.init_stage_problem`): a file becomes a dep, a
registry URI makes the stage ``always_changed``; the dvc.yaml it replaces is kept in
``.ddhpose/previous/``.
"""

from __future__ import annotations

import argparse

from ddhpose.config import apply


def add_arguments(parser: argparse.ArgumentParser) -> None:
    apply.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ddhpose.pipeline import deps

    out = apply.run(args)
    if out is None or not (out.parent / "dvc.yaml").is_file():
        return 0
    root = out.resolve().parent
    if out.name == "params.yaml":
        kept = deps.shape_init_stage(root)
        if kept is not None:
            print(f"{root / 'dvc.yaml'}: init_model stage shaped for model.init (a file is a "
                  f"dep, a registry URI always reruns); previous version kept in {kept}")
    return 0
