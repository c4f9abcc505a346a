"""``ddhpose params apply|check|render``: merge a named config into params.yaml, validate a
params file, print it as the schema renders it.

``apply`` deep-merges an overrides-only file (``configs/*.yaml``) into the base params file,
validates the result and writes it atomically, comments included (the file is rendered from the
schema's field docs); the file it replaces is kept in
``<base folder>/.ddhpose/params-previous/<UTC stamp>-<name>``. The command
(:mod:`ddhpose.commands.params`) then also shapes dvc.yaml's ``init_model`` stage for the new
``model.init`` (:mod:`ddhpose.pipeline.deps`). ``python -m ddhpose.config.apply`` runs the same
without that last step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from ddhpose.config.build import type_name
from ddhpose.config.schema import Params, load_params, render_yaml
from ddhpose.config.yamlfile import ParamsFileError, deep_merge, read_yaml
from ddhpose.errors import ConfigError, DDHPoseError
from ddhpose.io import atomic_open
from ddhpose.project import utc_stamp

PREVIOUS_DIR = Path(".ddhpose") / "params-previous"


def write_params(params: Params, path: str | Path) -> None:
    """Write ``params`` as commented YAML, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(render_yaml(params))


def merged_params(base_path: str | Path, override_path: str | Path) -> Params:
    """The override file deep-merged into the base file, validated (nothing is written)."""
    base = read_yaml(base_path)
    override = read_yaml(override_path)
    if not isinstance(base, Mapping):
        raise ParamsFileError(base_path, f"expected a mapping of sections, got {type_name(base)}")
    if override is None:
        override = {}
    if not isinstance(override, Mapping):
        raise ParamsFileError(override_path, f"expected a mapping, got {type_name(override)}")
    try:
        return Params.from_dict(deep_merge(base, override))
    except ConfigError as exc:
        where = f"merging {override_path} into {base_path}"
        raise ConfigError(exc.key, f"{exc.problem} ({where})") from exc


def apply_overrides(
    base_path: str | Path, override_path: str | Path, out_path: str | Path
) -> Params:
    """Deep-merge the override file into the base file, validate, write ``out_path`` atomically."""
    params = merged_params(base_path, override_path)
    write_params(params, out_path)
    return params


def apply_file(override: str | Path, base: str | Path = "params.yaml",
               out: str | Path | None = None) -> tuple[Path, Path | None]:
    """Apply ``override`` to ``base`` into ``out`` (default: ``base``); ``(out, the kept copy of
    the file it replaced or None)``."""
    out = Path(out or base)
    params = merged_params(base, override)  # invalid: nothing written, nothing kept
    previous = None
    if out.is_file():  # keep the file it replaces before replacing it
        previous = out.parent / PREVIOUS_DIR / f"{utc_stamp()}-{out.name}"
        previous.parent.mkdir(parents=True, exist_ok=True)
        previous.write_bytes(out.read_bytes())
    write_params(params, out)
    return out, previous


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = sub.add_parser("apply", help="merge a configs/*.yaml override into params.yaml")
    a.add_argument("override", help="override file, e.g. configs/paper_h36m_cpn.yaml")
    a.add_argument("--base", default="params.yaml", help="base params file (default params.yaml)")
    a.add_argument("--out", default=None, help="output file (default: the base file)")
    c = sub.add_parser("check", help="validate a params file")
    c.add_argument("path", nargs="?", default="params.yaml")
    r = sub.add_parser("render", help="print a params file as the schema renders it")
    r.add_argument("path", nargs="?", default="params.yaml")


def run(args: argparse.Namespace) -> Path | None:
    """Carry out ``args`` (see :func:`add_arguments`); the file written by ``apply``, else None.
    Errors are :class:`ddhpose.errors.DDHPoseError` (one line)."""
    if args.action == "apply":
        out, kept = apply_file(args.override, args.base, args.out)
        note = f"; previous version kept in {kept}" if kept else ""
        print(f"{out}: applied {args.override} (validated){note}")
        return out
    if args.action == "check":
        load_params(args.path)
        print(f"{args.path}: ok")
    else:
        sys.stdout.write(render_yaml(load_params(args.path)))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddhpose.config.apply",
                                     description="Validate or update params.yaml.")
    add_arguments(parser)
    try:
        run(parser.parse_args(argv))
    except DDHPoseError as exc:
        print(f"params: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
