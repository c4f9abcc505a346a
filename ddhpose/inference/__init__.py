"""Your own 2D keypoints to 3D (:mod:`.infer`) and animations of the result (:mod:`.render`)."""
