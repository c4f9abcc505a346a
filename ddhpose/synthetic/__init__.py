"""The embedded synthetic dataset: a procedural body and motion model (:mod:`.body`,
:mod:`.motion`, :mod:`.actions`) written in the real Human3.6M and MPI-INF-3DHP file formats
(:mod:`.h36m`, :mod:`.mpi3dhp`), its settings (:mod:`.config`), a preview (:mod:`.preview`) and
tiny smoke-test splits (:mod:`.smoke`)."""
