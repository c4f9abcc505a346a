"""DVC stage 'export_mat': thin entry point; the logic lives in ddhpose.pipeline.export_mat."""

import sys

from ddhpose.pipeline.export_mat import run
from ddhpose.pipeline.runner import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("export_mat", run))
