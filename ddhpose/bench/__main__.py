"""``python -m ddhpose.bench [--quick] [--mlflow] ...``: the same as ``ddhpose bench``."""

from __future__ import annotations

import sys

from ddhpose.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
