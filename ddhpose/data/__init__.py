"""Real dataset formats: Human3.6M VideoPose3D npz (:mod:`.h36m`), MPI-INF-3DHP (:mod:`.mpi3dhp`),
the processed split format shared by the stages (:mod:`.processed`, :mod:`.processed_build`) and
the clips cut from it for training and evaluation (:mod:`.clips`)."""
