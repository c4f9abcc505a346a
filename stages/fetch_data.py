"""DVC stage 'fetch_data': thin entry point; the logic lives in ddhpose.pipeline.fetch_data."""

import sys

from ddhpose.pipeline.fetch_data import run
from ddhpose.pipeline.runner import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("fetch_data", run))
