"""Stage ``init_model``: resolve ``model.init`` into ``models/init/`` (a dependency of ``train``).

``model.init`` is ``''`` (train from scratch), a checkpoint path (ours, an authors' ``.bin`` or a
bare state_dict; relative paths are relative to the project root) or an MLflow model URI
(``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run id>/<path>``, resolved by
:mod:`ddhpose.registry.resolve`).

The stage copies the checkpoint's bytes unchanged to ``models/init/init.pt`` and writes
``models/init/source.json`` (what was asked for, what it resolved to: file path or registered
model version and run id, and the sha256 of the copied bytes). The output holds no timestamps,
so it is byte-identical as long as the resolved checkpoint is.

Why a stage of its own: DVC cannot depend on a path (or a registry alias) named by a parameter,
and a changed init file must rerun ``train``. The stage's shape in dvc.yaml follows
``model.init`` (:mod:`ddhpose.pipeline.deps`): empty -> nothing to watch, so a finished project's
``dvc status`` is clean; a file -> the file is a dep of this stage; a registry URI -> the stage is
``always_changed`` (it only resolves the URI and copies). ``train`` depends on this stage's
output, so it reruns exactly when the resolved checkpoint's bytes change (a new file content, an
alias that moved to another version), and not otherwise. ``ddhpose params apply`` shapes the
stage; when ``model.init`` was set another way (``dvc exp run -S model.init=...``, an edit) and
the stage does not fit it, this stage still resolves it correctly now and prints one warning
saying that a later change of that file or alias would go unseen until the stage is shaped.

The stage does not open an MLflow run (it runs every time and must not start a new pipeline run);
``train`` records ``source.json`` as tags of its run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ddhpose.errors import ConfigError
from ddhpose.io import atomic_path, file_sha256, read_json, write_json
from ddhpose.project import ProjectPaths

URI_PREFIXES = ("models:/", "runs:/")


def is_model_uri(init: str) -> bool:
    """Whether ``model.init`` names an MLflow model rather than a file."""
    return init.startswith(URI_PREFIXES)


def resolve_init(init: str, root: Path, work_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``(local checkpoint file, record)`` for a non-empty ``model.init``.

    A URI is downloaded into ``work_dir``; a path is checked to be a file (a directory or a
    missing file is an error saying which). Errors name ``model.init``.
    """
    if is_model_uri(init):
        from ddhpose.registry.resolve import RegistryError, download_checkpoint

        try:
            return download_checkpoint(init, work_dir, root=root)
        except RegistryError as exc:
            raise ConfigError("model.init", str(exc)) from exc
    path = Path(init).expanduser()
    if not path.is_absolute():
        path = root / path
    if path.is_dir():
        raise ConfigError("model.init", f"{path}: a directory, not a checkpoint file")
    if not path.is_file():
        raise ConfigError("model.init", f"{path}: no such checkpoint file")
    return path, {"kind": "file", "path": str(path.resolve())}


OWN_KEYS = ("model.init", "data.dataset")


def stage_params(path: Path) -> Any:
    """params.yaml for this stage: the validated :class:`Params`, or, when a key this stage does
    not read is invalid, just ``model.init`` and ``data.dataset`` (checked here). The stage runs
    on every ``dvc repro``: another key's error belongs to the stage that reads it."""
    from types import SimpleNamespace

    from ddhpose.config.schema import DATASETS, load_params
    from ddhpose.config.yamlfile import read_yaml

    try:
        return load_params(path)
    except ConfigError as exc:
        if exc.key in OWN_KEYS:
            raise
    raw = read_yaml(path)
    init = (raw.get("model") or {}).get("init", "")
    dataset = (raw.get("data") or {}).get("dataset")
    if not isinstance(init, str) or (":/" in init and not is_model_uri(init)):
        raise ConfigError("model.init", f"must be '', a checkpoint path or a models:/ or runs:/ "
                                        f"URI, got {init!r} (in {path})")
    if dataset not in DATASETS:
        raise ConfigError("data.dataset", f"must be one of {'|'.join(DATASETS)}, got {dataset!r} "
                                          f"(in {path})")
    return SimpleNamespace(model=SimpleNamespace(init=init), data=SimpleNamespace(dataset=dataset))


def run(params: Any, root: Path, tracker: Any = None) -> None:
    """Write ``models/init/{init.pt,source.json}`` for ``params.model.init``."""
    paths = ProjectPaths(root)
    init = params.model.init.strip()
    paths.init_dir.mkdir(parents=True, exist_ok=True)
    if not init:
        paths.init_checkpoint.unlink(missing_ok=True)
        write_json(paths.init_source, {"init": ""})
        print("init_model: model.init is '' (train from scratch)")
        return
    with tempfile.TemporaryDirectory(prefix=".init.", dir=paths.models) as tmp:
        src, record = resolve_init(init, root, Path(tmp))
        _check_loadable(src, params.data.dataset)
        with atomic_path(paths.init_checkpoint) as dst:
            shutil.copyfile(src, dst)
    record = {"init": init, **record, "sha256": file_sha256(paths.init_checkpoint)}
    write_json(paths.init_source, record)
    _warn_if_unwatched(root, init)
    where = record.get("path") or f"{record.get('name')} version {record.get('version')}"
    print(f"init_model: {init} -> {where} (sha256 {record['sha256'][:12]}) -> "
          f"{paths.init_checkpoint}")


def _warn_if_unwatched(root: Path, init: str) -> None:
    from ddhpose.pipeline.deps import init_stage_problem

    if not (root / "dvc.yaml").is_file():
        return
    problem = init_stage_problem(root, init)
    if problem:
        print(f"init_model: warning: {root / 'dvc.yaml'}, stage init_model: {problem}; until "
              "`ddhpose params apply` or `python -m ddhpose.pipeline.deps --write` shapes it, a "
              f"later change of {init} does not rerun train", file=sys.stderr)


def _check_loadable(path: Path, dataset: str) -> None:
    """Fail here, naming the file, rather than in ``train`` (a corrupt or foreign file)."""
    from ddhpose.model.checkpoint import load_model

    load_model(path, dataset=dataset, map_location="cpu")


def read_init_record(root: Path) -> dict[str, Any]:
    """``models/init/source.json`` (``{"init": ""}`` when the stage has not run)."""
    return read_json(ProjectPaths(root).init_source, default={"init": ""})
