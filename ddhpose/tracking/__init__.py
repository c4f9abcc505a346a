"""Bookkeeping: MLflow runs of the pipeline (:mod:`.tracker`), the run state and provenance
(:mod:`.run_state`), the SQLite writer lock (:mod:`.sqlite_store`), offline records and their
sync (:mod:`.sync`), the team server (:mod:`.server`) and one run outside the pipeline
(:mod:`.standalone`). Nothing here changes a DVC output, so no stage lists these files in its
``deps``: editing them reruns nothing (``dvc repro -f STAGE`` applies a change on purpose).
Imports only :mod:`ddhpose.config`, :mod:`ddhpose.io`, :mod:`ddhpose.errors` and
:mod:`ddhpose.project` of the package (tests/test_architecture.py checks)."""
