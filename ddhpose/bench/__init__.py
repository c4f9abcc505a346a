"""Speed benchmarks: ``ddhpose bench`` / ``python -m ddhpose.bench`` (:mod:`.suite`), the speed
ablation ``python -m ddhpose.bench.ablation`` (:mod:`.ablation`), their cases (:mod:`.plan`),
timing and peak measurement (:mod:`.measure`) and the bfloat16 accuracy checks
(:mod:`.accuracy`)."""
