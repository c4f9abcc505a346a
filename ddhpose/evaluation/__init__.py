"""Evaluation: metrics (:mod:`.metrics`), the four aggregations of H hypotheses
(:mod:`.aggregate`), the Human3.6M and MPI-INF-3DHP protocols (:mod:`.h36m`, :mod:`.mpi3dhp`),
batched prediction of a split (:mod:`.predict`), tables (:mod:`.report`), plots and the ``.mat``
export. The aggregation names below are used everywhere (params ``eval.headline``, tables,
MLflow, files); the oracle ones pick hypotheses with the ground truth and say so.
"""

AGGREGATIONS = ("j_best_oracle", "p_best_oracle", "p_agg", "j_agg")
ORACLE = {"j_best_oracle": True, "p_best_oracle": True, "p_agg": False, "j_agg": False}
