"""MLflow models: resolve ``models:/`` and ``runs:/`` URIs to a checkpoint (:mod:`.resolve`),
register a version and move its aliases (:mod:`.register`), the served pyfunc model
(:mod:`.served_model`)."""
