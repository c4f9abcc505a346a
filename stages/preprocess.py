"""DVC stage 'preprocess': thin entry point; the logic lives in ddhpose.pipeline.preprocess."""

import sys

from ddhpose.pipeline.preprocess import run
from ddhpose.pipeline.runner import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("preprocess", run))
