"""DVC stage 'sample': thin entry point; the logic lives in ddhpose.pipeline.sample."""

import sys

from ddhpose.pipeline.runner import run_stage
from ddhpose.pipeline.sample import run

if __name__ == "__main__":
    sys.exit(run_stage("sample", run))
