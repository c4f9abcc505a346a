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
import functools
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ddhpose.model.config import ModelConfig
from ddhpose.model.denoiser import HSTDenoiser
from ddhpose.model.diffusion import (
    SCHEDULE_BUFFERS,
    NoiseSpec,
    RandomDraws,
    cosine_schedule,
    noise_bone_slots,
)
from ddhpose.model.sampler import DenoiseFn, ddim_sample
from ddhpose.skeleton import Skeleton, flip_joints, get_skeleton, joints_to_slots


def cuda_clips_per_call(budget_bytes: float, *, frames: int, joints: int, width: int,
                        mlp_ratio: float, elem_bytes: int) -> int:
    """Clip passes of one no-grad denoiser call that fit ``budget_bytes`` of device memory (>= 1).

    Estimate per clip pass: F·J tokens × width × ``elem_bytes`` for each activation alive at once
    in a hierarchical temporal block (about 12 of width C, plus 2 of the MLP's hidden width),
    with 25 % allocator slack.
    """
    live = 12 + 2 * mlp_ratio
    per_clip = frames * joints * width * elem_bytes * live * 1.25
    return max(1, int(budget_bytes // per_clip))


class DDHPose(nn.Module):
    """Diffusion wrapper. Buffers: the 12 float64 schedule tensors (T,); ``dir_bone_estimator``.

    ``autocast`` (e.g. ``torch.bfloat16``; :func:`ddhpose.model.precision.autocast_dtype`) runs
    every denoiser call under ``torch.autocast`` of the input's device in that dtype (mixed
    precision training, and validation with it); the diffusion arithmetic stays float64/float32
    outside autocast. None: float32.
    """

    #: Inference chunk size of one CPU denoiser call in activation elements (tokens × width):
    #: about one 243-frame clip or ten 27-frame clips of the paper-size model (see
    #: :meth:`denoise`); small models (e.g. width 64) are not chunked below this size.
    chunk_elements: int = 4608 * 512
    #: Share of the CUDA memory still available (free on the device + held unused by torch's
    #: cache) that one no-grad CUDA denoiser call may fill; the clips of a call are chunked to
    #: stay under it (:func:`cuda_clips_per_call`).
    cuda_memory_fraction: float = 0.6

    def __init__(self, config: ModelConfig, *, autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        self.skeleton: Skeleton = get_skeleton(self.config.dataset)
        self.autocast = autocast
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
        return unit_scale_of(self.config.dataset)

    @property
    def schedule(self) -> dict[str, Tensor]:
        """The 12 float64 schedule buffers by name."""
        return {name: getattr(self, name) for name in SCHEDULE_BUFFERS}

    def _autocast(self, device: torch.device,
                  dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
        dt = dtype or self.autocast
        if dt is None or dt == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dt)

    def denoise(
        self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """One denoiser call: x2d (B,F,J,2), bone_dir (B,H,F,J,3), bone_len (B,H,F,J,1),
        t (B,) int64 -> x̂0 (B,H,F,J,3) metres (float32). 4-D bone inputs (B,F,J,·) give (B,F,J,3).

        ``dtype`` (``torch.bfloat16`` or ``torch.float16``): on the CPU run a cached
        low-precision copy of the denoiser (:meth:`lowp_denoiser`) on inputs cast to it; on other
        devices run the float32 denoiser under ``torch.autocast`` in ``dtype``. The output is
        float32 either way.

        Without autograd, CPU calls over many clips run in chunks of about
        :attr:`chunk_elements` activation elements (clips are independent; smaller working sets
        stay in cache and run faster — same results up to float32 round-off); CUDA calls run in
        chunks that fit :attr:`cuda_memory_fraction` of the memory available at the call (one
        paper-size sampling call at H=20 is 160 clip passes, about 16 GB in float32).
        """
        net = self.dir_bone_estimator
        amp = None  # autocast dtype of this call (None: the model's own setting)
        if dtype is not None and dtype != net.Spatial_pos_embed.dtype:
            if x2d.device.type == "cpu":
                net = self.lowp_denoiser(dtype)
                x2d, bone_dir, bone_len = x2d.to(dtype), bone_dir.to(dtype), bone_len.to(dtype)
            else:
                amp = dtype
        if bone_dir.dim() == 4 or torch.is_grad_enabled():
            with self._autocast(x2d.device, amp):
                return net(x2d, bone_dir, bone_len, t).float()
        b, h, f, j, _ = bone_dir.shape
        per = self._clips_per_call(x2d, f, j, b * h, amp or self.autocast)
        if b * h <= per:
            with self._autocast(x2d.device, amp):
                return net(x2d, bone_dir, bone_len, t).float()
        out = bone_dir.new_empty((b, h, f, j, 3), dtype=torch.float32)
        hs = min(h, per)  # hypotheses per chunk, then clips per chunk
        bs = max(1, per // hs)
        with self._autocast(x2d.device, amp):
            for b0 in range(0, b, bs):
                for h0 in range(0, h, hs):
                    bsl, hsl = slice(b0, b0 + bs), slice(h0, h0 + hs)
                    out[bsl, hsl] = net(x2d[bsl], bone_dir[bsl, hsl], bone_len[bsl, hsl], t[bsl])
        return out

    def _clips_per_call(self, x: Tensor, frames: int, joints: int, clips: int,
                        amp: torch.dtype | None = None) -> int:
        """Clip passes (B·H) per no-grad denoiser call on ``x``'s device: CPU by
        :attr:`chunk_elements`, CUDA by the memory available now, other devices all at once."""
        width = self.config.width
        if x.device.type == "cpu":
            return max(1, self.chunk_elements // (frames * joints * width))
        if x.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(x.device)
            cached = torch.cuda.memory_reserved(x.device) - torch.cuda.memory_allocated(x.device)
            elem = 2 if {x.dtype, amp} & {torch.float16, torch.bfloat16} else 4
            return cuda_clips_per_call(
                (free + cached) * self.cuda_memory_fraction, frames=frames, joints=joints,
                width=width, mlp_ratio=self.config.mlp_ratio, elem_bytes=elem)
        return clips

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

        ``dtype=torch.bfloat16`` (or ``torch.float16``) runs the denoiser in that precision
        (:meth:`denoise`: a low-precision copy on the CPU, faster on CPUs with bfloat16 matmul
        units; autocast on a GPU; less accurate — see ``reports/bench.md``); the DDIM update
        stays float32/float64. Default (or the parameters' own dtype): the model as it is
        (with its ``autocast`` setting), bit-compatible.

        ``x2d_flip`` defaults to x2d with u negated and left/right keypoints swapped. Random draws
        (``noise``/``generator``, see :func:`ddhpose.model.sampler.ddim_sample` for the order)
        default to the global RNG.
        """
        was_training = self.training
        self.eval()
        try:
            denoise = functools.partial(self.denoise, dtype=dtype)
            return sample_with(denoise, x2d, self.config, self.schedule, hypotheses=hypotheses,
                               steps=steps, noise=noise, generator=generator, x2d_flip=x2d_flip)
        finally:
            self.train(was_training)


def sample_with(
    denoise: DenoiseFn, x2d: Tensor, config: ModelConfig, schedule: Mapping[str, Tensor], *,
    hypotheses: int = 1, steps: int = 1, noise: NoiseSpec = None,
    generator: torch.Generator | None = None, x2d_flip: Tensor | None = None,
) -> Tensor:
    """The sampling of :meth:`DDHPose.sample` with any denoiser: the PyTorch module's
    (:meth:`DDHPose.denoise`) or an exported graph's (:mod:`ddhpose.deploy.onnx_runtime`).

    ``denoise`` (:data:`~ddhpose.model.sampler.DenoiseFn`) maps x2d (B,F,J,2), directions
    (B,H,F,J,3), lengths (B,H,F,J,1), t (B,) int64 to x̂0 (B,H,F,J,3) metres; ``config`` gives
    the skeleton, units and DDIM settings; ``schedule`` the float64 buffers (T,)
    (:func:`~ddhpose.model.diffusion.cosine_schedule`). x2d (B,F,J,2) normalised ->
    (B,K,H,F,J,3) metres × unit_scale, root NOT zeroed; ``x2d_flip``, ``noise`` and
    ``generator`` as in :meth:`DDHPose.sample`.
    """
    if hypotheses < 1:
        raise ValueError(f"hypotheses must be >= 1, got {hypotheses}")
    skeleton = get_skeleton(config.dataset)
    if x2d_flip is None:
        x2d_flip = flip_joints(x2d, skeleton)
    pred = ddim_sample(
        denoise, x2d, x2d_flip, schedule, skeleton,
        hypotheses=hypotheses, steps=steps, draws=RandomDraws(noise, generator),
        eta=config.eta, scale=config.scale, clamp=config.clamp,
    )
    unit_scale = unit_scale_of(config.dataset)
    return pred * unit_scale if unit_scale != 1.0 else pred


def unit_scale_of(dataset: str) -> float:
    """Input/output unit in metres⁻¹ of a model of ``dataset``: 1.0 (h36m, metres) or 1000.0
    (3dhp, millimetres)."""
    return 1000.0 if dataset == "3dhp" else 1.0


__all__ = ["DDHPose", "cuda_clips_per_call", "sample_with", "unit_scale_of"]
