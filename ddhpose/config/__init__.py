"""``params.yaml``: the typed schema (:mod:`.schema`), every key's rule (:mod:`.rules`), the
YAML file (:mod:`.yamlfile`) and ``ddhpose params apply|check|render`` (:mod:`.apply`). Imports
neither torch nor mlflow at module level: a stage's params are checked before anything heavy."""
