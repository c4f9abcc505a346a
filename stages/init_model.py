"""DVC stage 'init_model': thin entry point; the logic lives in ddhpose.pipeline.init_model."""

import sys

from ddhpose.pipeline.init_model import run, stage_params
from ddhpose.pipeline.runner import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("init_model", run, track=False, load=stage_params))
