"""DVC stage 'evaluate': thin entry point; the logic lives in ddhpose.pipeline.evaluate."""

import sys

from ddhpose.pipeline.evaluate import run
from ddhpose.pipeline.runner import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate", run))
