"""Numeric precision choices: mixed-precision training, sampling dtype, TF32 matmuls.

Names (the ``params.yaml`` values):

- training ``amp``: ``off`` | ``fp16`` | ``bf16`` | ``auto`` (YAML ``true`` = ``auto``, ``false`` =
  ``off``). The denoiser runs under ``torch.autocast`` in that dtype; the diffusion arithmetic
  and the losses stay float32/float64. ``auto``: bfloat16 on GPUs with bfloat16 tensor cores
  (compute capability >= 8.0), float16 on older GPUs, bfloat16 on CPUs with bfloat16 units
  (AVX-512 BF16 / AMX), otherwise off. ``fp16`` needs CUDA (and a gradient scaler, made by the
  training loop); on a CPU it falls back to float32.
- sampling ``dtype``: ``float32`` | ``float16`` | ``bfloat16`` | ``auto`` (``auto``: bfloat16 where
  the device has bfloat16 units, float16 on older GPUs, float32 on other CPUs). On CUDA a
  16-bit dtype runs the denoiser under autocast (float32 weights; LayerNorm and softmax in
  float32); on the CPU it runs a low-precision copy of the denoiser (faster with oneDNN).
- ``tf32``: float32 matmuls on CUDA use TF32 tensor cores (10-bit mantissa inputs, float32
  accumulation; about 8x the IEEE float32 rate on A100). Off = IEEE float32, for parity runs. No
  effect on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ddhpose.model.config import AMP_MODES, SAMPLE_DTYPES, amp_mode
from ddhpose.model.fused import onednn_bf16_cpu

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def has_bf16_units(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (CUDA compute capability >= 8.0;
    a CPU with oneDNN bfloat16 kernels)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return onednn_bf16_cpu()
    return False


def _lowp_auto(device: torch.device) -> torch.dtype | None:
    if has_bf16_units(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def autocast_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training with ``amp`` on ``device`` (None = float32)."""
    mode = amp_mode(amp)
    if mode == "off":
        return None
    if mode == "auto":
        return _lowp_auto(device)
    if mode == "fp16":
        return torch.float16 if device.type == "cuda" else None
    return torch.bfloat16


def sample_dtype(name: str, device: torch.device) -> torch.dtype:
    """The denoiser dtype of sampling for ``name`` (:data:`SAMPLE_DTYPES`) on ``device``."""
    if name == "auto":
        return _lowp_auto(device) or torch.float32
    if name not in _DTYPES:
        raise ValueError(f"must be one of {'|'.join(SAMPLE_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def precision_label(dtype: torch.dtype | None, device: torch.device, tf32: bool,
                    autocast: bool = True) -> str:
    """A short description for logs: ``float32``, ``float32-tf32`` (CUDA with TF32),
    ``bfloat16-autocast``, ``bfloat16-weights`` (sampling's low-precision copy on the CPU,
    ``autocast=False``)..."""
    if dtype is None or dtype == torch.float32:
        return "float32-tf32" if device.type == "cuda" and tf32 else "float32"
    name = str(dtype).removeprefix("torch.")
    return f"{name}-autocast" if autocast or device.type != "cpu" else f"{name}-weights"


def set_tf32(enabled: bool) -> None:
    """Let float32 matmuls on CUDA use TF32 tensor cores (``enabled``) or IEEE float32."""
    torch.backends.cuda.matmul.fp32_precision = "tf32" if enabled else "ieee"


def tf32_enabled() -> bool:
    return torch.backends.cuda.matmul.fp32_precision == "tf32"


@contextlib.contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """:func:`set_tf32` for the duration of the block; the previous setting is restored."""
    saved = torch.backends.cuda.matmul.fp32_precision
    set_tf32(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved


__all__ = ["AMP_MODES", "SAMPLE_DTYPES", "amp_mode", "autocast_dtype", "has_bf16_units",
           "matmul_precision", "precision_label", "sample_dtype", "set_tf32", "tf32_enabled"]
