"""Upper bounds on what one inference may ask for, in one place.

``ddhpose infer`` (:mod:`ddhpose.commands.infer`), the library's
:func:`ddhpose.inference.infer.infer` and the served MLflow model
(its request checks, :mod:`ddhpose.registry.request`) share :data:`MAX_HYPOTHESES`.
The served model also bounds each request, because one request holds the server's only worker
and its memory: at most :data:`MAX_SERVED_FRAMES` frames, :data:`MAX_SERVED_WORK` frame samples
(H x K x max(T, F), F the model's window) and :data:`MAX_REQUEST_BYTES` of request body. Longer
sequences belong to ``ddhpose infer``, which reads them from a file and has no frame bound.
"""

from __future__ import annotations

# H: hypotheses per frame (the paper's largest setting is 20)
MAX_HYPOTHESES = 100
# K: DDIM steps a served request may ask for (also at most the model's diffusion timesteps)
MAX_STEPS = 100
# T: frames in one request to the served model (10,000 frames: 6.7 minutes of 25 fps video)
MAX_SERVED_FRAMES = 10_000
# H x K x max(T, F): poses one request may make the denoiser sample (H = K = 1: T = 10,000)
MAX_SERVED_WORK = 100_000
# bytes of one request body (10,000 x 17 x 3 numbers of up to 60 characters each)
MAX_REQUEST_BYTES = 32 * 1024 * 1024


def served_work(hypotheses: int, steps: int, frames: int, window: int) -> int:
    """The frame samples a served request costs: H x K x max(T, F)."""
    return int(hypotheses) * int(steps) * max(int(frames), int(window))
