"""Live lifting: 2D keypoints frame by frame in, one 3D pose per frame out, with a stated policy.

:class:`StreamLifter` takes one frame at a time (:meth:`StreamLifter.push`) and returns the
frames it can serve now; :meth:`StreamLifter.flush` serves the rest at the end of the input;
:func:`lift_stream` wraps both around an iterable. Every input frame gets exactly one pose, in
order. The policies (:mod:`ddhpose.evaluation.streaming`):

- ``centred``: frame t is the centre of its window of F frames (position F // 2) and is served
  once frames up to ``t + F - 1 - F // 2`` have arrived (latency F // 2 frames for an odd F);
- ``causal``: frame t is the last frame of its window ``[t - F + 1, t]``: served on arrival,
  latency 0 frames, later frames never change it.

At the start of a stream the window is padded by repeating frame 0; at :meth:`flush` the
``centred`` windows of the last frames are padded by repeating the last frame. A frame's window
is fixed once it is served.

Keypoints: each frame is (J, 2) or (J, 3) pixels in ``layout`` (J of that layout; the third
column a confidence), converted to Human3.6M-17 as :mod:`ddhpose.keypoints` does (missing = NaN
coordinates, confidence not finite, <= 0 or below ``min_confidence``). A live stream cannot
interpolate towards frames that have not arrived, so a missing joint holds its last valid
position (the offline rule's end-of-sequence hold); a joint not yet seen since the start of the
stream is filled with its first valid position once it appears, so frames wait (beyond the
policy's latency) until every joint has been seen once. A joint never seen by :meth:`flush` is a
ValueError naming it.

Noise: frame t draws its sampler noise from ``noise_generator(seed, t)``
(:func:`ddhpose.evaluation.streaming.noise_generator`), so a stream is reproducible and a frame's
pose does not depend on how many windows were sampled together (several ready frames go through
one ``model.sample`` call, at most ``max_batch`` windows).

Output poses are (17, 3) float32 metres, root-relative (root joint = 0), Human3.6M-17 order
(a 3DHP model's joints are reordered like :func:`ddhpose.inference.infer.infer_h36m17`),
aggregated over the H hypotheses of the last DDIM step like :func:`ddhpose.inference.infer.infer`
(``p_agg`` mean; ``j_agg`` JPMA with the root translation estimated per frame from the mean pose
and the pinhole camera ``intrinsic`` or :func:`ddhpose.inference.infer.default_intrinsic`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ddhpose.camera import normalize_screen_coordinates
from ddhpose.evaluation.aggregate import gather_hypotheses, jpma_index
from ddhpose.evaluation.streaming import (
    check_policy,
    frames_ready,
    latency_frames,
    noise_generator,
    sample_served_frames,
    window_indices,
    window_offset,
)
from ddhpose.inference.infer import (
    AGGREGATES,
    H36M17_TO_3DHP17,
    default_intrinsic,
    estimate_root_translation,
)
from ddhpose.inference.limits import MAX_HYPOTHESES
from ddhpose.keypoints import LAYOUT_TABLES, check_layout, missing_mask, to_h36m17
from ddhpose.skeleton import H36M17

Served = tuple[int, np.ndarray]  # (frame index, (17, 3) float32 metres)


class StreamLifter:
    """Lift a live stream of 2D keypoints, one frame at a time (module docstring).

    Args:
        model: a :class:`ddhpose.model.ddhpose.DDHPose` (Human3.6M-17 or 3DHP-17 skeleton).
        policy: ``centred`` or ``causal``.
        hypotheses, steps: H (1 .. MAX_HYPOTHESES) and K (1 .. the model's timesteps).
        layout: the keypoints' layout (:data:`ddhpose.keypoints.LAYOUTS`).
        image_size: (w, h) pixels, for the normalisation and the default camera.
        seed: noise seed (frame t draws from ``noise_generator(seed, t)``).
        aggregate: ``p_agg`` or ``j_agg``.
        intrinsic: ``j_agg`` camera (fx, fy, cx, cy) or 9-vector in pixels.
        min_confidence: keypoints below this confidence count as missing.
        max_batch: most windows per ``model.sample`` call.
        dtype: denoiser precision (default the model's).

    Attributes:
        latency_frames: frames that must follow frame t before it is served (F // 2 centred
            with an odd F, 0 causal), beyond any wait for a joint not yet seen.
        frames: the model's window F.
    """

    def __init__(
        self, model: Any, *, policy: str = "centred", hypotheses: int = 1, steps: int = 1,
        layout: str = "h36m17", image_size: tuple[float, float] = (1000.0, 1000.0),
        seed: int = 0, aggregate: str = "p_agg", intrinsic: Any = None,
        min_confidence: float = 0.0, max_batch: int = 8, dtype: torch.dtype | None = None,
    ) -> None:
        self.policy = check_policy(policy)
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not 1 <= hypotheses <= MAX_HYPOTHESES:
            raise ValueError(f"hypotheses must be between 1 and {MAX_HYPOTHESES}, "
                             f"got {hypotheses}")
        if not 1 <= steps <= model.config.timesteps:
            raise ValueError(f"steps must be between 1 and the model's "
                             f"{model.config.timesteps} diffusion timesteps, got {steps}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        w, h = (float(v) for v in image_size)
        if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
            raise ValueError(f"image_size must be two positive numbers of pixels, "
                             f"got {image_size}")
        if model.skeleton.name not in ("h36m17", "3dhp17"):
            raise ValueError(f"no Human3.6M-17 correspondence for the "
                             f"'{model.skeleton.name}' skeleton")
        self.model, self.layout = model, check_layout(layout)
        self.hypotheses, self.steps, self.seed = int(hypotheses), int(steps), int(seed)
        self.aggregate, self.image_size = aggregate, (w, h)
        self.min_confidence, self.max_batch, self.dtype = float(min_confidence), max_batch, dtype
        self.frames = int(model.config.frames)
        self.latency_frames = latency_frames(policy, self.frames)
        self.offset = window_offset(policy, self.frames)
        cam = default_intrinsic((w, h)) if intrinsic is None else np.asarray(
            intrinsic, dtype=np.float64).reshape(-1)
        if cam.shape == (4,):
            cam = np.concatenate([cam, np.zeros(5)])
        if cam.shape != (9,) or not np.all(np.isfinite(cam)) or np.any(cam[:2] <= 0):
            raise ValueError("intrinsic must be (fx, fy, cx, cy) or a 9-vector in pixels with "
                             "positive focal lengths")
        self.intrinsic = cam
        self._to_model = (np.asarray(H36M17_TO_3DHP17) if model.skeleton.name == "3dhp17"
                          else np.arange(17))
        self._back = np.argsort(self._to_model)
        self._raw: list[np.ndarray] = []  # (17, 2) pixels with NaN, frames not yet filled
        self._filled: dict[int, np.ndarray] = {}  # frame -> (17, 2) pixels, Human3.6M-17
        self._n_filled = 0  # frames filled so far
        self._dropped_to = 1  # frames 1 .. _dropped_to - 1 are no longer kept
        self._last_valid = np.full((17, 2), np.nan)
        self._held: np.ndarray | None = None  # the last filled frame
        self._received = 0  # frames pushed
        self._served = 0  # frames served
        self._closed = False

    # -- input ---------------------------------------------------------------------------------

    def _convert(self, keypoints: Any) -> np.ndarray:
        want = LAYOUT_TABLES[self.layout].num_joints
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[0] != want or kp.shape[1] not in (2, 3):
            raise ValueError(f"frame {self._received}: keypoints must be ({want}, 2) or "
                             f"({want}, 3) pixels for layout {self.layout}, got {kp.shape}")
        coords = np.where(missing_mask(kp[None], self.min_confidence)[0, :, None], np.nan,
                          kp[:, :2])
        return coords if self.layout == "h36m17" else to_h36m17(coords, self.layout)

    def _fill(self) -> None:
        """Move the raw frames to the filled ones once every joint has been seen: a missing
        joint holds its previous position; one first seen later takes its first valid
        position (held backwards)."""
        for xy in self._raw:
            ok = np.all(np.isfinite(xy), axis=-1)
            self._last_valid[ok] = xy[ok]
        if not np.all(np.isfinite(self._last_valid)):
            return
        if self._held is not None:
            held = self._held
        else:
            held = np.full((17, 2), np.nan)
            for xy in reversed(self._raw):  # the first valid position of each joint
                ok = np.all(np.isfinite(xy), axis=-1)
                held = np.where(ok[:, None], xy, held)
        for xy in self._raw:
            held = np.where(np.all(np.isfinite(xy), axis=-1)[:, None], xy, held)
            self._filled[self._n_filled] = held
            self._n_filled += 1
        self._held = held
        self._raw.clear()

    def push(self, keypoints: Any) -> list[Served]:
        """Add the next frame ((J, 2|3) pixels in ``layout``); return the frames now served,
        in order: [(frame index, (17, 3) float32 metres)]."""
        if self._closed:
            raise ValueError("the stream was flushed: start a new StreamLifter")
        xy = self._convert(keypoints)
        self._raw.append(xy)
        self._received += 1
        self._fill()
        return self._serve(frames_ready(self._n_filled, self.policy, self.frames), last=None)

    def flush(self) -> list[Served]:
        """End of input: serve every frame not yet served (centred windows padded with the
        last frame). Raises ValueError if a joint was missing in every frame."""
        if self._closed:
            return []
        self._closed = True
        if self._raw:
            missing = [H36M17.joint_names[j] for j in range(17)
                       if not np.all(np.isfinite(self._last_valid[j]))]
            raise ValueError(f"joint(s) {', '.join(missing)} missing in every frame of the "
                             "stream")
        return self._serve(self._received, last=self._received - 1)

    # -- output --------------------------------------------------------------------------------

    def _serve(self, ready: int, last: int | None) -> list[Served]:
        out: list[Served] = []
        while self._served < ready:
            todo = list(range(self._served, min(ready, self._served + self.max_batch)))
            out.extend(self._lift(todo, last))
            self._served = todo[-1] + 1
        # the windows of the frames still to serve start at or after served - offset (or pad
        # with frame 0, which is kept): older frames are dropped
        for t in range(self._dropped_to, self._served - self.offset):
            self._filled.pop(t, None)
        self._dropped_to = max(self._dropped_to, self._served - self.offset)
        return out

    def _window(self, t: int, last: int | None) -> np.ndarray:
        return np.stack([self._filled[int(i)] for i in window_indices(t, self.policy,
                                                                       self.frames, last)])

    def _lift(self, todo: list[int], last: int | None) -> list[Served]:
        w, h = self.image_size
        px = np.stack([self._window(t, last) for t in todo])  # (B, F, 17, 2) Human3.6M-17
        x2d = normalize_screen_coordinates(px[:, :, self._to_model].astype(np.float32), w, h)
        gens = [noise_generator(self.seed, t) for t in todo]
        pred = sample_served_frames(self.model, x2d, gens, hypotheses=self.hypotheses,
                                    steps=self.steps, offset=self.offset, dtype=self.dtype)
        hyp = pred[:, -1].numpy() / self.model.unit_scale  # (B, H, J, 3) metres, as infer
        root = self.model.skeleton.root
        hyp = hyp - hyp[..., root:root + 1, :]
        mean = hyp.mean(axis=1)  # (B, J, 3)
        chosen = mean
        if self.aggregate == "j_agg":
            served_px = px[:, self.offset][:, self._to_model]  # (B, J, 2) model order
            traj = estimate_root_translation(mean, served_px, self.intrinsic)  # (B, 3)
            pred6 = torch.from_numpy(hyp[:, None, :, None])  # (B, 1, H, 1, J, 3)
            index = jpma_index(pred6, torch.from_numpy(traj[:, None, None, :]),
                               served_px[:, None], self.intrinsic)
            chosen = gather_hypotheses(pred6, index)[:, 0, 0].numpy()
        poses = chosen[:, self._back].astype(np.float32)
        poses[:, H36M17.root] = 0.0
        return [(t, poses[i]) for i, t in enumerate(todo)]


def lift_stream(model: Any, frames: Iterable[Any], **kwargs: Any) -> Iterator[Served]:
    """Lift an iterable of frames ((J, 2|3) pixels each) live: yields (frame index, (17, 3)
    float32 metres) as soon as the policy allows, then the rest at the end of the input.
    Keyword arguments as :class:`StreamLifter`."""
    lifter = StreamLifter(model, **kwargs)
    for frame in frames:
        yield from lifter.push(frame)
    yield from lifter.flush()


__all__ = ["Served", "StreamLifter", "lift_stream"]
