"""The DVC pipeline: one module per stage (``run(params, root, tracker)``), the typed params.yaml
schema (:mod:`.params`), the stage error contract (:mod:`.runner`) and MLflow tracking
(:mod:`.tracking`, the only mlflow imports)."""
