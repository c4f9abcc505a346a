"""DVC stage 'train': thin entry point; the logic lives in ddhpose.pipeline.train."""

import sys

from ddhpose.pipeline.runner import run_stage
from ddhpose.pipeline.train import run

if __name__ == "__main__":
    sys.exit(run_stage("train", run))
