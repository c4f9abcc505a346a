"""Only what dvc.yaml runs: the stage runner (:mod:`.runner`, one error contract) and one module
per stage named after it, each with ``run(params, root, tracker)``."""
