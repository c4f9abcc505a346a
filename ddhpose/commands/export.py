"""``ddhpose export onnx CHECKPOINT OUT.onnx``: the denoiser step of a model as an ONNX graph
(:mod:`ddhpose.deploy.onnx_export`; inputs x2d (B,F,J,2), directions (B,H,F,J,3), lengths
(B,H,F,J,1), t (B,); output x̂0 (B,H,F,J,3) metres; the model config in its metadata).

CHECKPOINT is ours, an authors' ``.bin`` or an MLflow model URI (``models:/NAME@ALIAS``,
``models:/NAME/N``, ``runs:/ID/PATH``). OUT is written atomically, never over CHECKPOINT, over an
existing file only with ``--force``. Before OUT takes its name the graph is run on onnxruntime on
one random input against ``model.denoise``; the max abs difference is printed and above 1e-4
(metres) nothing is written (exit 2). The ``onnx`` extra is installed when missing.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", metavar="FORMAT")
    sub.required = True
    p = sub.add_parser("onnx", help="the denoiser step as an ONNX graph for onnxruntime",
                       description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="model checkpoint (ours, or an authors' .bin) or an MLflow model URI: "
                        "models:/ddhpose-h36m@champion, models:/NAME/VERSION, runs:/ID/PATH "
                        "(tracking server from MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--dataset", choices=("h36m", "3dhp"), default=None,
                   help="dataset of an authors' .bin (default h36m; ours carry theirs)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch's ONNX exporter (default torchscript: about 5x faster here; "
                        "dynamo needs onnxscript)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.onnx")


def run(args: argparse.Namespace) -> int:
    import sys
    import tempfile
    import time
    from pathlib import Path

    from ddhpose.errors import DataError
    from ddhpose.extras import ensure_extra
    from ddhpose.io import check_outputs

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise DataError(out, "the output must end in .onnx")
    check_outputs([out], inputs=[args.checkpoint], force=args.force)

    def log(msg: str) -> None:
        print(f"ddhpose export: {msg}", file=sys.stderr, flush=True)

    from ddhpose.deploy.onnx_export import EXTRA, EXTRA_MODULES, PARITY_TOLERANCE

    ensure_extra(log, EXTRA, EXTRA_MODULES)
    from ddhpose.deploy.onnx_export import export_checked
    from ddhpose.model.checkpoint import load_model

    with tempfile.TemporaryDirectory(prefix="ddhpose-export-") as tmp:
        checkpoint = Path(args.checkpoint)
        if args.checkpoint.startswith(("models:/", "runs:/")):
            from ddhpose.registry.resolve import download_checkpoint

            checkpoint, record = download_checkpoint(args.checkpoint, Path(tmp))
            version = f" version {record['version']}" if record.get("version") else ""
            log(f"{args.checkpoint} -> {record.get('name') or record['run_id']}{version}")
        model = load_model(checkpoint, dataset=args.dataset)
    start = time.perf_counter()
    diff = export_checked(model, out, exporter=args.exporter, source=str(args.checkpoint))
    seconds = time.perf_counter() - start
    c = model.config
    print(f"wrote {out}: denoiser step of {args.checkpoint} ({c.dataset}, width {c.width}, "
          f"depth {c.depth}, F {c.frames}), {args.exporter} exporter, "
          f"{out.stat().st_size / 1e6:.1f} MB; onnxruntime vs model.denoise on a random input: "
          f"max abs diff {diff:.2e} m (limit {PARITY_TOLERANCE:g}); {seconds:.1f} s")
    return 0
