"""``ddhpose tracking sync``: replay the offline tracking records of a project
(``reports/tracking_offline/*.jsonl``) into the MLflow store, exactly once
(see :mod:`ddhpose.tracking.sync`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sync = sub.add_parser("sync", help="replay reports/tracking_offline/*.jsonl into MLflow")
    sync.add_argument("--root", default=".",
                      help="project root holding reports/tracking_offline (default .)")
    sync.add_argument("--tracking-uri", default=None,
                      help="target store (default: MLFLOW_TRACKING_URI, else the project's "
                           "sqlite:///mlflow.db)")


def run(args: argparse.Namespace) -> int:
    from ddhpose.registry.register import register_model
    from ddhpose.tracking.run_state import tracking_uri
    from ddhpose.tracking.sqlite_store import store_problem
    from ddhpose.tracking.sync import SyncError, sync_offline
    from ddhpose.tracking.tracker import HTTP_ENV_DEFAULTS, quiet_mlflow_logs

    root = Path(args.root).resolve()
    if not root.is_dir():
        raise SyncError(f"--root {root}: not a folder")
    uri = args.tracking_uri or tracking_uri(root)
    problem = store_problem(uri)
    if problem:
        raise SyncError(problem)
    for key, value in HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    quiet_mlflow_logs()

    def log(msg: str) -> None:
        print(f"ddhpose tracking: {msg}", flush=True)

    try:
        created, skipped = sync_offline(root, uri, log=log, register=register_model)
    except SyncError:
        raise
    except Exception as exc:  # the store is unreachable or refused a call: one line
        text = " ".join(str(exc).split())[:300]
        raise SyncError(f"MLflow at {uri}: {type(exc).__name__}: {text} (nothing marked "
                        f"synced for the failing record; run the command again)") from exc
    log(f"synced {created} run{'s' if created != 1 else ''} to {uri} "
        f"({skipped} already synced)")
    return 0
