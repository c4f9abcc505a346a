"""``ddhpose server``: a team MLflow tracking server on PostgreSQL with artifact proxying
(see :mod:`ddhpose.tracking.server`). Runs in the foreground; Ctrl-C or SIGTERM stops it cleanly.
Killed (``kill -9``), its watchdog stops mlflow server and PostgreSQL; failing that, the next
start on the same --data-dir stops what was left and says so."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a team)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--data-dir", default=".mlflow-server",
                        help="folder of the embedded PostgreSQL (postgres/), the default "
                             "artifact folder (artifacts/) and ddhpose-server.json (what the "
                             "running server started) (default .mlflow-server, git-ignored)")
    parser.add_argument("--backend-store-uri", default=None,
                        help="postgresql://USER:PASSWORD@HOST:PORT/DB of an existing PostgreSQL "
                             "(default: the embedded one in --data-dir)")
    parser.add_argument("--artifacts-destination", default=None,
                        help="folder or s3://bucket/prefix for artifacts (default "
                             "<data-dir>/artifacts)")
    parser.add_argument("--allowed-hosts", default=None,
                        help="Host headers the server accepts, comma-separated, e.g. "
                             "'ddhpose.lab:5000,10.0.0.5:5000' (MLflow's default: localhost only)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from ddhpose.extras import ensure_extra
    from ddhpose.tracking.server import EXTRA, EXTRA_MODULES, ServerConfig, ServerError, serve

    if not 1 <= args.port <= 65535:
        raise ServerError(f"--port must be in 1..65535, got {args.port}")
    if not 1 <= args.workers <= 64:
        raise ServerError(f"--workers must be in 1..64, got {args.workers}")
    uri = args.backend_store_uri
    if uri is not None and not uri.startswith(("postgresql://", "postgres://",
                                               "postgresql+psycopg://")):
        raise ServerError(f"--backend-store-uri must be a postgresql:// URI, got {uri!r}")
    data_dir = Path(args.data_dir).resolve()
    parent = data_dir if data_dir.exists() else data_dir.parent
    if not os.access(parent, os.W_OK):
        raise ServerError(f"--data-dir {data_dir}: {parent} is not writable")

    def log(msg: str) -> None:
        print(f"ddhpose server: {msg}", flush=True)

    ensure_extra(log, EXTRA, EXTRA_MODULES, error=ServerError)
    config = ServerConfig(data_dir=data_dir, host=args.host, port=args.port,
                          backend_store_uri=uri, artifacts_destination=args.artifacts_destination,
                          workers=args.workers, allowed_hosts=args.allowed_hosts)
    return serve(config, log=lambda m: print(m if m.startswith("export ") else
                                              f"ddhpose server: {m}", flush=True))
