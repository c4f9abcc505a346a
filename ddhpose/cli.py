"""The ``ddhpose`` command. Each subcommand lives in ``ddhpose/commands/<name>.py`` and provides
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

from ddhpose.errors import DDHPoseError, os_error_line

# subcommand -> (module under ddhpose.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("params", "params.yaml: apply a configs/*.yaml override, check, render"),
    "convert-checkpoint": ("convert_checkpoint", "convert an authors' checkpoint (.bin) to ours"),
    "evaluate-3dhp": ("evaluate_3dhp", "MPI-INF-3DHP PCK, AUC, MPJPE like the official scripts"),
    "infer": ("infer", "lift your own 2D keypoints (npz/json/csv) to 3D with a checkpoint"),
    "render": ("render", "animate a 3D prediction beside its 2D input (gif/mp4/png)"),
    "export": ("export", "export a model for other runtimes: export onnx CHECKPOINT OUT.onnx"),
    "bench": ("bench", "measure denoiser, sampling, training and data-loader speed"),
    "tracking": ("tracking", "tracking sync: replay offline MLflow records into the store"),
    "server": ("server", "a team MLflow tracking server on PostgreSQL with artifact proxying"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported (for its options)."""
    parser = argparse.ArgumentParser(prog="ddhpose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if command == name:
            importlib.import_module(f"ddhpose.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(f"ddhpose.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except DDHPoseError as exc:
        print(f"ddhpose {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permission, a folder where a file goes, ...
        print(f"ddhpose {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
