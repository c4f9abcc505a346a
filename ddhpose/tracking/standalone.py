"""One MLflow run outside the pipeline (``ddhpose bench --mlflow``): params, metrics and files
logged in a single finished run, with the same tracking URI, artifact location and HTTP retry
caps as the pipeline's runs (:mod:`ddhpose.tracking.tracker`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ddhpose.tracking.run_state import artifact_location, tracking_uri
from ddhpose.tracking.tracker import HTTP_ENV_DEFAULTS

_METRICS_PER_BATCH = 500


def log_standalone_run(experiment: str, run_name: str, *, root: Path,
                       params: Mapping[str, Any], metrics: Mapping[str, float],
                       artifacts: Iterable[Path] = ()) -> str:
    """Log one run of ``experiment`` (created when missing) in the project at ``root``
    (``MLFLOW_TRACKING_URI`` or its ``mlflow.db``): ``params`` as text, ``metrics`` at step 0,
    the existing ``artifacts``. Returns the run id; the run ends FINISHED, or FAILED when
    logging raised (the error propagates)."""
    import mlflow

    for key, val in HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(key, val)
    uri = tracking_uri(root)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=artifact_location(uri, experiment))
    rid = client.create_run(exp_id, run_name=run_name).info.run_id
    try:
        for k, v in params.items():
            client.log_param(rid, k, str(v))
        batch = [mlflow.entities.Metric(k, float(v), 0, 0) for k, v in metrics.items()]
        for i in range(0, len(batch), _METRICS_PER_BATCH):
            client.log_batch(rid, metrics=batch[i:i + _METRICS_PER_BATCH])
        for path in artifacts:
            if Path(path).exists():
                client.log_artifact(rid, str(path))
        client.set_terminated(rid, "FINISHED")
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    return rid
