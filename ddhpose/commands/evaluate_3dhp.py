"""``ddhpose evaluate-3dhp``: PCK / AUC / MPJPE on MPI-INF-3DHP, as the official MATLAB scripts.

Reads one or more exported predictions (``inference_data_<agg>.mat`` or ``.npz`` with variables
``TS1..TS6`` of shape (3, 17, N, K) mm), the official ``TS*/annot_data.mat`` files, scores every
DDIM step, writes the official CSVs per aggregation and step, a tidy ``evaluation_3dhp.csv`` and
``summary_3dhp.json``, and prints the headline table (unweighted mean over sequences).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddhpose.data.mpi3dhp import load_test_annotations
from ddhpose.evaluation.mpi3dhp import evaluate_files
from ddhpose.io import atomic_open, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pred", required=True, nargs="+", type=Path, metavar="PRED",
        help="prediction file(s): inference_data_<P_Best|P_Agg|J_Best|J_Agg>.mat or .npz",
    )
    parser.add_argument(
        "--annotations", required=True, type=Path, metavar="DIR",
        help="directory holding TS<i>/annot_data.mat",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument(
        "--aggregation", default=None,
        help="name used in the CSV file names (default: from the inference_data_<agg> file name)",
    )


def format_headline(summary: dict) -> str:
    """The printed table: one line per aggregation and step."""
    lines = [f"{'aggregation':<24}{'step':>5}{'MPJPE mm':>11}{'PCK':>9}{'AUC':>9}"]
    for agg, info in summary["aggregations"].items():
        label = f"{agg} (oracle)" if info["oracle"] else agg
        for row in info["per_step"]:
            lines.append(
                f"{label:<24}{'t' + str(row['step']):>5}{row['mpjpe_mm']:>11.2f}"
                f"{row['pck']:>9.2f}{row['auc']:>9.2f}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.aggregation is not None and len(args.pred) > 1:
        print("ddhpose evaluate-3dhp: error: --aggregation needs exactly one --pred file",
              file=sys.stderr)
        return 2
    annotations = load_test_annotations(args.annotations)
    table, summary = evaluate_files(args.pred, annotations, args.out, args.aggregation)
    out = Path(args.out)
    with atomic_open(out / "evaluation_3dhp.csv", "w", newline="") as fh:
        table.to_csv(fh, index=False)
    write_json(out / "summary_3dhp.json", summary)
    for info in summary["aggregations"].values():
        missing = info["missing_sequences"]
        if missing:
            scored = [ts for ts in annotations if ts not in missing]
            print(f"ddhpose evaluate-3dhp: warning: {info['file']} lacks {', '.join(missing)} "
                  f"of the given annotations: the scores are over {', '.join(scored)} only",
                  file=sys.stderr)
    seqs = ", ".join(next(iter(summary["aggregations"].values()))["sequences"].values())
    print(f"MPI-INF-3DHP evaluation of {seqs} (unweighted mean over sequences)")
    print(format_headline(summary))
    print(f"wrote {len(summary['csv'])} official CSVs, evaluation_3dhp.csv, summary_3dhp.json "
          f"to {out}")
    return 0
