"""``python -m benchmarks.ablation [--out reports]``: time the authors' sampling cases with the
speed changes switched on one at a time (see :mod:`ddhpose.bench_ablation`); writes
``bench_ablation.{json,md}``. About 5 minutes on 2 idle cores."""

from __future__ import annotations

import argparse
import sys

from ddhpose.bench_ablation import run_ablation, write_ablation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation")
    parser.add_argument("--out", default="reports", help="output directory (default reports)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    result = run_ablation(threads=args.threads, log=lambda m: print(m, flush=True))
    print(f"wrote {write_ablation(result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
