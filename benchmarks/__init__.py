"""Benchmarks of ddhpose: ``python -m benchmarks.run`` = ``ddhpose bench`` (logic in
:mod:`ddhpose.bench`, the only part installed with the package)."""
