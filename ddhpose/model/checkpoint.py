"""Checkpoints: our own format, the authors' ``.bin`` files, and conversion between them.

Our format (``format="ddhpose-checkpoint"``, ``version=1``) is a ``torch.save`` of a dict with
``model_config`` (the :class:`ModelConfig` as a dict), ``state_dict`` (reference names),
``optimizer`` (an optimizer state_dict or None), ``train_state`` and ``metadata`` (plain Python
values and tensors) and ``weights_sha256`` (:func:`weights_sha256` of the state_dict, verified on
every load; files written before it existed load without the check). Everything loads with
``torch.load(weights_only=True)``; files are written atomically. Files are device-free: every
tensor (weights, optimizer state, training state) is stored on the CPU, so a checkpoint made on a
GPU loads with a plain ``torch.load`` on a CPU-only machine.

The authors' files (docs/model.md "Checkpoint formats") hold ``epoch``, ``lr``, ``random_state`` (a
NumPy RandomState), ``optimizer`` and ``model_pos`` (keys prefixed ``module.``). They are read with
``weights_only=True`` plus a narrow allow-list of the NumPy globals needed to rebuild the
RandomState (:func:`reference_safe_globals`) — never with ``weights_only=False``. They carry
no checksum, so a damaged ``.bin`` is caught only when it no longer parses or fits the model;
``ddhpose convert-checkpoint`` adds the checksum to the converted file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ddhpose.errors import CheckpointError, ConfigError, message_lines
from ddhpose.io import atomic_path
from ddhpose.model.config import ModelConfig
from ddhpose.model.ddhpose import DDHPose
from ddhpose.model.file_kind import not_a_checkpoint

FORMAT = "ddhpose-checkpoint"
VERSION = 1
_MARKER = "dir_bone_estimator.Spatial_pos_embed"


def reference_safe_globals() -> list[Any]:
    """The NumPy globals a reference checkpoint's pickled ``np.random.RandomState`` needs."""
    import numpy as np
    from numpy.random import _mt19937, _pickle

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list[Any] = [
        _pickle.__randomstate_ctor,
        _mt19937.MT19937,
        np.random.RandomState,
        multiarray._reconstruct,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    if hasattr(_pickle, "__bit_generator_ctor"):
        allowed.append(_pickle.__bit_generator_ctor)
    with contextlib.suppress(ImportError, AttributeError):
        from numpy import dtypes

        allowed.append(dtypes.UInt32DType)
    return allowed




def _first_line(exc: BaseException) -> str:
    """The informative line of an exception message, without terminal colour codes: for a
    refused pickle the cause (``Unsupported global: GLOBAL eval ...``), not torch's advice."""
    lines = message_lines(exc)
    causes = [ln.split("WeightsUnpickler error:", 1)[1].strip() for ln in lines
              if "WeightsUnpickler error:" in ln]
    marked = [ln for ln in lines if ln.startswith(("Can only build", "Unsupported", "Trying to"))]
    line = (causes or marked or lines or [""])[0]
    line = line.split(" Please use ", 1)[0].split(" To load ", 1)[0].rstrip()
    return f"{type(exc).__name__}: {line}".rstrip(": ")


def _torch_load(path: str | Path, map_location: Any, reference: bool = False) -> Any:
    """``torch.load(weights_only=True)`` turning every failure into a one-line CheckpointError.

    Before torch reads it, a file that plainly is no PyTorch checkpoint is named for what it is
    (a directory, an empty file, a text file, a plain Python pickle, a zip archive without
    ``data.pkl`` such as a NumPy ``.npz``); torch's warning about a pickle protocol is silenced.
    """
    import warnings

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    what = not_a_checkpoint(path)
    if what:
        raise CheckpointError(path, what)
    ctx = (torch.serialization.safe_globals(reference_safe_globals()) if reference
           else contextlib.nullcontext())
    try:
        with ctx, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            path, f"refused by the weights-only loader (content that could run code): "
                  f"{_first_line(exc).split(': ', 1)[-1]}"
        ) from exc
    except Exception as exc:  # truncated zip, bad magic, EOF, ...
        raise CheckpointError(
            path, f"corrupt or truncated checkpoint ({_first_line(exc)})"
        ) from exc


def _check_plain(obj: Any, where: str, path: Path) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` could not read back."""
    if obj is None or isinstance(obj, (bool, int, float, str, Tensor, torch.dtype,
                                       torch.device, torch.Size)):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(path, f"{where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}.{k}", path)
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]", path)
        return
    raise CheckpointError(path, f"{where} is a {type(obj).__name__}; store plain values/tensors")


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    """sha256 over every tensor of ``state_dict`` in name order: its name, dtype, shape and raw
    bytes (CPU, contiguous). Stored as ``weights_sha256`` in our checkpoints, checked on load."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside (nested dicts, lists, tuples) moved to the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_checkpoint(
    path: str | Path,
    model: DDHPose,
    *,
    optimizer: torch.optim.Optimizer | dict | None = None,
    train_state: dict | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write ``model`` (+ optimizer state, training state, metadata) atomically to ``path``.

    Every tensor is written from the CPU (:func:`to_cpu`); ``optimizer.load_state_dict`` moves the
    state back to the parameters' device on resume.
    """
    path = Path(path)
    is_opt = isinstance(optimizer, torch.optim.Optimizer)
    opt_state = optimizer.state_dict() if is_opt else optimizer
    content = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": to_cpu(opt_state),
        "train_state": to_cpu(dict(train_state or {})),
        "metadata": to_cpu(dict(metadata or {})),
    }
    content["weights_sha256"] = weights_sha256(content["state_dict"])
    for key in ("optimizer", "train_state", "metadata"):
        _check_plain(content[key], key, path)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:  # a file object: a full disk raises OSError(ENOSPC)
                torch.save(content, fh)
        except RuntimeError as exc:  # torch's zip writer reports a short write its own way
            raise _write_failure(exc, path) from exc
    return path


def _write_failure(exc: RuntimeError, path: Path) -> Exception:
    """An OSError naming ``path`` when the disk is full (torch says ``unexpected pos``)."""
    with contextlib.suppress(OSError):
        if shutil.disk_usage(path.parent).free < 1 << 20:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return CheckpointError(path, f"could not be written ({_first_line(exc)})")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read and validate one of our checkpoints; returns its dict (see module docstring).

    Raises :class:`CheckpointError` for a missing, truncated, corrupt or foreign file.
    """
    # the allow-list only lets an authors' file be recognised (and named) instead of "corrupt"
    ckpt = _torch_load(path, map_location, reference=True)
    return _validate_ours(ckpt, Path(path))


def _validate_ours(ckpt: Any, path: Path) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = (" (an authors' checkpoint: use `ddhpose convert-checkpoint`)"
                if isinstance(ckpt, dict) and "model_pos" in ckpt else "")
        raise CheckpointError(path, f"not a ddhpose checkpoint{hint}")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(path, f"unsupported checkpoint version {ckpt.get('version')!r} "
                                    f"(this ddhpose reads version {VERSION})")
    for key in ("model_config", "state_dict", "optimizer", "train_state", "metadata"):
        if key not in ckpt:
            raise CheckpointError(path, f"checkpoint lacks the '{key}' entry")
    if not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(path, "model_config is not a dict")
    _check_state_dict(ckpt["state_dict"], path)
    stored = ckpt.get("weights_sha256")  # absent in files written before it was introduced
    if stored is not None and stored != weights_sha256(ckpt["state_dict"]):
        raise CheckpointError(path, "the weights do not match their stored sha256 checksum: the "
                                    "file is damaged (a changed byte); use another copy")
    return ckpt


def _check_state_dict(sd: Any, path: Path) -> None:
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(path, "state_dict is not a mapping of names to tensors")
    if _MARKER not in sd:
        raise CheckpointError(path, f"no DDHPose weights in the state_dict (missing '{_MARKER}')")


def _strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _read_reference(path: str | Path, map_location: Any = "cpu") -> tuple[dict, dict]:
    """(state_dict without ``module.``, the rest of the file's dict) of an authors' file."""
    path = Path(path)
    raw = _torch_load(path, map_location, reference=True)
    if not isinstance(raw, dict):
        raise CheckpointError(path, f"expected a dict, found {type(raw).__name__}")
    if raw.get("format") == FORMAT:
        raise CheckpointError(path, "already a ddhpose checkpoint, not an authors' file")
    if "model_pos" in raw:
        sd, rest = raw["model_pos"], {k: v for k, v in raw.items() if k != "model_pos"}
    else:
        sd, rest = raw, {}
    if not isinstance(sd, dict):
        raise CheckpointError(path, "model_pos is not a state_dict")
    sd = _strip_module(sd)
    _check_state_dict(sd, path)
    return sd, rest


def read_reference_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Tensor]:
    """The state_dict of an authors' ``.bin`` (or of a bare reference state_dict file), with the
    ``module.`` prefix removed. Loaded with weights_only=True + :func:`reference_safe_globals`."""
    return _read_reference(path, map_location)[0]


def infer_model_config(
    state_dict: dict[str, Tensor], dataset: str = "h36m", source: str = "<state_dict>"
) -> ModelConfig:
    """Architecture from tensor shapes: width, depth, frames, mlp ratio, qkv bias, timesteps.

    Heads are not recoverable from shapes and stay 8 (the reference hard-codes them).
    """
    pre = "dir_bone_estimator."
    need = [f"{pre}Spatial_pos_embed", f"{pre}Temporal_pos_embed",
            f"{pre}STEblocks_0.0.mlp.fc1.weight"]
    for key in need:
        if key not in state_dict:
            raise CheckpointError(source, f"cannot infer the architecture: missing '{key}'")
    width = int(state_dict[need[0]].shape[-1])
    frames = int(state_dict[need[1]].shape[1])
    hidden = int(state_dict[need[2]].shape[0])
    blocks = {k[len(f"{pre}STEblocks."):].split(".")[0] for k in state_dict
              if k.startswith(f"{pre}STEblocks.")}
    betas = state_dict.get("betas")
    cfg = ModelConfig(
        dataset=dataset, width=width, depth=1 + len(blocks), heads=8,
        mlp_ratio=hidden / width, frames=frames,
        timesteps=int(betas.shape[0]) if betas is not None else 1000,
        scale=1.0, drop_path=0.1, xc_layout="reference",  # the original model's fixed values
        qkv_bias=f"{pre}STEblocks_0.0.attn.qkv.bias" in state_dict,
    )
    try:
        return cfg.validate()
    except ConfigError as exc:
        raise CheckpointError(source, f"inferred an invalid configuration: {exc}") from exc


def _build(cfg: ModelConfig, sd: dict[str, Tensor], path: Path) -> DDHPose:
    """A fresh model with ``sd`` loaded strictly (checked before copying: never half-loaded)."""
    model = DDHPose(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise CheckpointError(path, f"state_dict does not match the model: missing "
                                    f"{missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(path, f"'{k}' has shape {tuple(sd[k].shape)}, the model "
                                        f"expects {tuple(v.shape)}")
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_model(path: str | Path, dataset: str | None = None, map_location: Any = "cpu") -> DDHPose:
    """A :class:`DDHPose` in eval mode from our checkpoint, an authors' ``.bin`` or a bare
    reference state_dict file. ``dataset`` ("h36m"/"3dhp") is needed for reference files of 3DHP
    models (default h36m); for our files it must agree with the stored config if given."""
    path = Path(path)
    raw = _torch_load(path, map_location, reference=True)
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ckpt = _validate_ours(raw, path)
        try:
            cfg = ModelConfig.from_dict(ckpt["model_config"])
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(path, f"bad model_config: {exc}") from exc
        if dataset is not None and dataset != cfg.dataset:
            raise CheckpointError(path, f"holds a '{cfg.dataset}' model, not '{dataset}'")
        return _build(cfg, ckpt["state_dict"], path)
    sd, _ = _read_reference(path, map_location)
    cfg = infer_model_config(sd, dataset or "h36m", source=str(path))
    return _build(cfg, sd, path)


def _plain_random_state(rs: Any) -> dict | None:
    """A NumPy RandomState as plain values: ``get_state()`` as a dict (name, keys (624 ints), pos,
    has_gauss, cached_gaussian) — the layout ``ddhpose.training.state`` uses."""
    if rs is None or not hasattr(rs, "get_state"):
        return None
    name, keys, pos, has_gauss, cached = rs.get_state(legacy=True)
    return {"name": str(name), "keys": [int(k) for k in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def convert_reference_checkpoint(src: str | Path, dst: str | Path, dataset: str = "h36m") -> Path:
    """Convert an authors' checkpoint to our format (weights verified by a strict load).

    ``train_state`` keeps ``epoch``, ``lr`` and the training shuffler's ``numpy_random_state``;
    the AdamW state is kept as ``optimizer`` (its parameter order equals ours).
    """
    src = Path(src)
    sd, rest = _read_reference(src)
    model = _build(infer_model_config(sd, dataset, source=str(src)), sd, src)
    train_state: dict[str, Any] = {}
    if "epoch" in rest:
        train_state["epoch"] = int(rest["epoch"])
    if "lr" in rest:
        train_state["lr"] = float(rest["lr"])
    rs = _plain_random_state(rest.get("random_state"))
    if rs is not None:
        train_state["numpy_random_state"] = rs
    optimizer = rest.get("optimizer") if isinstance(rest.get("optimizer"), dict) else None
    metadata = {"converted_from": str(src), "source": "reference (Andyen512/DDHPose)"}
    return save_checkpoint(dst, model, optimizer=optimizer, train_state=train_state,
                           metadata=metadata)


__all__ = [
    "FORMAT",
    "VERSION",
    "convert_reference_checkpoint",
    "infer_model_config",
    "load_checkpoint",
    "load_model",
    "read_reference_checkpoint",
    "reference_safe_globals",
    "save_checkpoint",
    "to_cpu",
    "weights_sha256",
]
