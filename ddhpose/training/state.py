"""Capture and restore every random-number state a training run depends on.

A resumed run must continue *bit-identically* (on the CPU; GPU backward kernels with atomics add
round-off), so the checkpoint stores, at each epoch boundary:
the Python ``random`` state, NumPy's global state and torch's CPU (and CUDA, when present) state
(the epoch shuffler is saved by :mod:`ddhpose.training.batches`). Everything is converted to
plain Python / torch objects (lists, ints, floats, uint8 tensors) so the checkpoint loads without
pickled NumPy classes.

The per-batch diffusion draws and drop-path masks do not need saving: they come from generators
re-seeded from ``(seed, epoch, ...)`` (see :func:`derive_seed`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every integer in ``parts`` (order-sensitive, well mixed)."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1)


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(*parts))
    return gen


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) like the reference's ``main.py``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def numpy_state_to_plain(state: tuple[Any, ...]) -> dict[str, Any]:
    """``RandomState.get_state()`` tuple -> a dict of plain Python values."""
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": [int(k) for k in np.asarray(keys, dtype=np.uint32)],
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def numpy_state_from_plain(plain: dict[str, Any]) -> tuple[Any, ...]:
    """Inverse of :func:`numpy_state_to_plain` (a tuple accepted by ``set_state``)."""
    return (
        plain["name"],
        np.asarray(plain["keys"], dtype=np.uint32),
        int(plain["pos"]),
        int(plain["has_gauss"]),
        float(plain["cached_gaussian"]),
    )


def _py_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [int(version), [int(v) for v in internal], gauss]


def _py_state_from_plain(plain: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = plain
    return (int(version), tuple(int(v) for v in internal), gauss)


def capture_rng_states() -> dict[str, Any]:
    """The global RNG states of this process (Python, NumPy, torch CPU and CUDA)."""
    states: dict[str, Any] = {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state().clone(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_states` captured (CUDA only if both sides have it)."""
    random.setstate(_py_state_from_plain(states["python"]))
    np.random.set_state(numpy_state_from_plain(states["numpy"]))
    torch.set_rng_state(torch.as_tensor(states["torch"], dtype=torch.uint8).cpu())
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])
