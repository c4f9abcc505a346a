"""The DDHPose wrapper (docs/model.md "Bone diffusion"): diffusion schedule buffers + the HST
denoiser, training forward and DDIM sampling. Its state_dict names equal the reference's exactly
(docs/model.md "Checkpoint formats"): the 12 float64 schedule buffers at top level, the network
under ``dir_bone_estimator``.

Units: the network works in metres. ``unit_scale`` is 1 for Human3.6M and 1000 for MPI-INF-3DHP,
whose reference model takes millimetres, divides by 1000 inside and multiplies outputs by 1000
(docs/model.md "Quirks: 3DHP units"); ``forward`` and ``sample`` take and return metres ×
``unit_scale``.

Keep the schedule buffers float64: do not call ``.half()``/``.float()``/``.double()`` on the whole
module (they would cast the buffers); move it with ``.to(device)`` only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ddhpose.errors import ConfigError
from ddhpose.model.denoiser import XC_LAYOUTS, HSTDenoiser
from ddhpose.model.diffusion import (
    SCHEDULE_BUFFERS,
    NoiseSpec,
    RandomDraws,
    cosine_schedule,
    noise_bone_slots,
)
from ddhpose.model.sampler import ddim_sample
from ddhpose.skeleton import Skeleton, flip_joints, get_skeleton, joints_to_slots

DATASETS = ("h36m", "3dhp")


@dataclass
class ModelConfig:
    """Architecture and diffusion settings: ``data.dataset`` plus the ``model`` section of
    params.yaml, under the same names (no defaults: the demo's values live in params.yaml, the
    paper's in ``configs/``; :meth:`from_params` is the adapter).

    dataset: ``"h36m"`` or ``"3dhp"`` (skeleton tables and units); width C, depth L (1 plain +
    L−1 hierarchical layers), heads, mlp_ratio, frames F, timesteps T, scale (signal scale),
    drop_path (maximum stochastic-depth rate, training only), xc_layout
    (``"reference"`` | ``"transpose"``, see :mod:`ddhpose.model.denoiser`). Fixed by the
    original model, not configurable in params.yaml: qkv_bias, eta (DDIM), clamp (bound of noisy
    inputs and predictions, in units of ``scale``, metres).
    """

    dataset: str
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    frames: int
    timesteps: int
    scale: float
    drop_path: float
    xc_layout: str
    qkv_bias: bool = True
    eta: float = 1.0
    clamp: float = 1.1

    @classmethod
    def from_params(cls, dataset: str, model: Any) -> ModelConfig:
        """The config of params.yaml's ``model`` section (any object with its field names)."""
        return cls(dataset=dataset, **{f.name: getattr(model, f.name) for f in fields(cls)
                                       if f.name != "dataset" and hasattr(model, f.name)})

    def validate(self) -> ModelConfig:
        """Raise :class:`ConfigError` naming the first bad field; return self."""
        if self.dataset not in DATASETS:
            raise ConfigError("data.dataset", f"must be one of {'|'.join(DATASETS)}, "
                                              f"got {self.dataset!r}")
        if self.xc_layout not in XC_LAYOUTS:
            raise ConfigError("model.xc_layout", f"must be one of {'|'.join(XC_LAYOUTS)}, "
                                                 f"got {self.xc_layout!r}")
        for name in ("width", "depth", "heads", "frames", "timesteps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError("model.width", f"must be divisible by model.heads ({self.heads}), "
                                             f"got {self.width}")
        if self.width % 2 or self.width < 4:
            raise ConfigError("model.width", f"must be even and >= 4, got {self.width}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError("model.drop_path", f"must be in [0, 1), got {self.drop_path}")
        for name in ("mlp_ratio", "scale", "clamp"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build from a plain dict; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model.{unknown[0]}", "unknown model setting")
        missing = [f.name for f in fields(cls)
                   if f.name not in d and f.default is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"model.{missing[0]}", "missing model setting")
        return cls(**d).validate()


class DDHPose(nn.Module):
    """Diffusion wrapper. Buffers: the 12 float64 schedule tensors (T,); ``dir_bone_estimator``.

    ``amp=True`` runs the denoiser under CUDA autocast (float16) on CUDA inputs; the diffusion
    arithmetic stays float64/float32 outside autocast.
    """

    #: Inference chunk size of one CPU denoiser call in activation elements (tokens × width):
    #: about one 243-frame clip or ten 27-frame clips of the paper-size model (see
    #: :meth:`denoise`); small models (e.g. width 64) are not chunked below this size.
    chunk_elements: int = 4608 * 512

    def __init__(self, config: ModelConfig, *, amp: bool = False) -> None:
        super().__init__()
        self.config = config.validate()
        self.skeleton: Skeleton = get_skeleton(self.config.dataset)
        self.amp = amp
        for name, buf in cosine_schedule(self.config.timesteps).items():
            self.register_buffer(name, buf)
        c = self.config
        self.dir_bone_estimator = HSTDenoiser(
            self.skeleton, num_frames=c.frames, width=c.width, depth=c.depth, num_heads=c.heads,
            mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, drop_path=c.drop_path,
            xc_layout=c.xc_layout,
        )

    @property
    def unit_scale(self) -> float:
        """Input/output unit in metres⁻¹: 1.0 (h36m, metres) or 1000.0 (3dhp, millimetres)."""
        return 1000.0 if self.config.dataset == "3dhp" else 1.0

    @property
    def schedule(self) -> dict[str, Tensor]:
        """The 12 float64 schedule buffers by name."""
        return {name: getattr(self, name) for name in SCHEDULE_BUFFERS}

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.amp and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def denoise(
        self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """One denoiser call: x2d (B,F,J,2), bone_dir (B,H,F,J,3), bone_len (B,H,F,J,1),
        t (B,) int64 -> x̂0 (B,H,F,J,3) metres (float32). 4-D bone inputs (B,F,J,·) give (B,F,J,3).

        ``dtype`` (e.g. ``torch.bfloat16``): run a cached low-precision copy of the denoiser
        (:meth:`lowp_denoiser`) on inputs cast to it; the output is cast back to float32.

        Without autograd, CPU calls over many clips run in chunks of about
        :attr:`chunk_elements` activation elements (clips are independent; smaller working sets
        stay in cache and run faster — same results up to float32 round-off).
        """
        net = self.dir_bone_estimator
        if dtype is not None and dtype != net.Spatial_pos_embed.dtype:
            net = self.lowp_denoiser(dtype)
            x2d, bone_dir, bone_len = x2d.to(dtype), bone_dir.to(dtype), bone_len.to(dtype)
        if bone_dir.dim() == 4 or torch.is_grad_enabled() or x2d.device.type != "cpu":
            with self._autocast(x2d.device):
                return net(x2d, bone_dir, bone_len, t).float()
        b, h, f, j, _ = bone_dir.shape
        per = max(1, self.chunk_elements // (f * j * self.config.width))  # clips per chunk
        if b * h <= per:
            return net(x2d, bone_dir, bone_len, t).float()
        out = bone_dir.new_empty((b, h, f, j, 3), dtype=torch.float32)
        hs = min(h, per)  # hypotheses per chunk, then clips per chunk
        bs = max(1, per // hs)
        for b0 in range(0, b, bs):
            for h0 in range(0, h, hs):
                bsl, hsl = slice(b0, b0 + bs), slice(h0, h0 + hs)
                out[bsl, hsl] = net(x2d[bsl], bone_dir[bsl, hsl], bone_len[bsl, hsl], t[bsl])
        return out

    def lowp_denoiser(self, dtype: torch.dtype) -> HSTDenoiser:
        """An inference copy of ``dir_bone_estimator`` with parameters in ``dtype`` (eval mode).

        Cached outside the module tree (not in ``state_dict``, not moved by ``.to``); rebuilt
        whenever a parameter of the original changed (storage or in-place version) or moved.
        (Parameters made under ``torch.inference_mode`` have no version counter: only a new
        storage is noticed for them.)
        """
        src = self.dir_bone_estimator
        key = (dtype, tuple((p.data_ptr(), None if p.is_inference() else p._version, p.device)
                            for p in src.parameters()))
        cached = self.__dict__.get("_lowp_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        self.__dict__["_lowp_cache"] = None  # free the old copy before building a new one
        # normal tensors even when called under inference_mode (their updates stay detectable)
        with torch.inference_mode(False), torch.no_grad():
            net = copy.deepcopy(src).to(dtype).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.__dict__["_lowp_cache"] = (key, net)
        return net

    def forward(
        self, x2d: Tensor, x3d: Tensor, noise: NoiseSpec = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Training forward (docs/model.md "Training forward"): noise the GT bones with one t per
        clip and predict x̂0.

        x2d (B,F,J,2) normalised; x3d (B,F,J,3) root-relative (root = 0), metres × unit_scale.
        ``noise``/``generator``: see :class:`~ddhpose.model.diffusion.RandomDraws` (a replayed list
        holds, per clip, t (1,), direction noise (F,J,3), length noise (F,J,1)).
        Returns x̂0 (B,F,J,3) in metres × unit_scale.
        """
        c = self.config
        x3d_m = x3d / self.unit_scale if self.unit_scale != 1.0 else x3d
        slot_dirs, slot_lens = joints_to_slots(x3d_m, self.skeleton)
        t, d_t, l_t = noise_bone_slots(
            slot_dirs, slot_lens, self.schedule, RandomDraws(noise, generator), c.timesteps,
            c.scale, c.clamp,
        )
        out = self.denoise(x2d, d_t, l_t, t)
        return out * self.unit_scale if self.unit_scale != 1.0 else out

    @torch.no_grad()
    def sample(
        self, x2d: Tensor, hypotheses: int = 1, steps: int = 1, noise: NoiseSpec = None,
        generator: torch.Generator | None = None, x2d_flip: Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """DDIM sampling with flip TTA (docs/model.md "The sampler"): x2d (B,F,J,2) ->
        (B,K,H,F,J,3), metres × unit_scale, root NOT zeroed. Runs in eval mode (no drop-path) and
        restores the previous mode.

        ``dtype=torch.bfloat16`` runs the denoiser in bfloat16 (:meth:`denoise`; faster on CPUs
        with bfloat16 matmul units, less accurate — see ``reports/bench.md``); the DDIM update
        stays float32/float64. Default (or the parameters' own dtype): the model as it is,
        bit-compatible.

        ``x2d_flip`` defaults to x2d with u negated and left/right keypoints swapped. Random draws
        (``noise``/``generator``, see :func:`ddhpose.model.sampler.ddim_sample` for the order)
        default to the global RNG.
        """
        if hypotheses < 1:
            raise ValueError(f"hypotheses must be >= 1, got {hypotheses}")
        if x2d_flip is None:
            x2d_flip = flip_joints(x2d, self.skeleton)
        was_training = self.training
        self.eval()
        try:
            c = self.config
            denoise = functools.partial(self.denoise, dtype=dtype)
            pred = ddim_sample(
                denoise, x2d, x2d_flip, self.schedule, self.skeleton,
                hypotheses=hypotheses, steps=steps, draws=RandomDraws(noise, generator),
                eta=c.eta, scale=c.scale, clamp=c.clamp,
            )
        finally:
            self.train(was_training)
        return pred * self.unit_scale if self.unit_scale != 1.0 else pred


__all__ = ["DATASETS", "DDHPose", "ModelConfig"]
