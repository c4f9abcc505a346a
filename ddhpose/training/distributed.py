"""Process-group setup for data-parallel training (torch DDP), single process when not launched.

Launch with torchrun; every rank runs the same training call and takes its share of every
*global* batch (``train.batch_clips`` clips), so the result does not depend on the number of ranks.

One machine, N processes (CPU -> gloo, CUDA -> nccl, one GPU per process)::

    torchrun --standalone --nproc_per_node N stages/train_ddp_entry.py

Several machines: the same command on every node, with the node's rank and a reachable master::

    torchrun --nnodes M --nproc_per_node N --node_rank R \\
             --master_addr HOST0 --master_port 29500 stages/train_ddp_entry.py

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_distributed`
reads them. Without WORLD_SIZE (or with WORLD_SIZE=1) training runs in this process alone and no
process group is created. On CUDA, rank r of a node uses ``cuda:LOCAL_RANK``; the gloo backend is
used on CPU. Only rank 0 writes files and reports progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ddhpose.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes (1 in a single process).
        local_rank: rank on this node (selects the GPU).
        device: the torch device this process computes on.
        owns_group: True if :func:`init_distributed` created the process group (and so must
            destroy it in :func:`shutdown_distributed`).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto | cpu | cuda | cuda:N`` -> a device; ``cuda`` under DDP -> ``cuda:LOCAL_RANK``.

    Raises ConfigError (key ``train.device``) for an unknown spec or CUDA requested but absent.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"'{spec}' requested but CUDA is not available")
        if spec == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        try:
            return torch.device(spec)
        except RuntimeError as exc:
            raise ConfigError("train.device", f"not a device: '{spec}'") from exc
    raise ConfigError("train.device", f"expected auto|cpu|cuda|cuda:N, got '{spec}'")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"env {name}", f"not an integer: '{raw}'") from exc


def init_distributed(device_spec: str = "auto", timeout_minutes: float = 60.0) -> DistInfo:
    """Join the torchrun job described by the environment, or describe a single process.

    Reuses an already initialised default process group (then it is not destroyed here).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        device = resolve_device(device_spec, local_rank)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device, False)
    if world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device_spec, 0), False)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(key):
            raise ConfigError(f"env {key}", "unset while WORLD_SIZE > 1 (launch with torchrun)")
    device = resolve_device(device_spec, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(minutes=timeout_minutes),
    )
    return DistInfo(rank, world_size, local_rank, device, True)


def shutdown_distributed(info: DistInfo) -> None:
    """Barrier, then destroy the process group if :func:`init_distributed` created it."""
    if info.distributed and dist.is_initialized():
        barrier(info)
        if info.owns_group:
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index or 0])
        else:
            dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place and return it (unchanged in a single process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object, info: DistInfo, src: int = 0) -> object:
    """``obj`` of rank ``src`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel when distributed (else return it unchanged).

    ``find_unused_parameters=True``: the 7 spatial ``attn.qkv_xc`` layers of the reference model
    never take part in the forward pass (docs/model.md "Quirks: unused spatial qkv_xc"). Their
    gradients stay ``None`` under DDP as in a single process, so AdamW skips them in both cases and
    the weights stay identical.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index or 0] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=True, broadcast_buffers=False
    )
