"""Process-group setup for data-parallel training (torch DDP), single process when not launched.

Launch with torchrun; every rank runs the same training call and takes its share of every
*global* batch (``train.batch_clips`` clips), so the result does not depend on the number of ranks.

One machine, N processes (CPU -> gloo, CUDA -> nccl, one GPU per process)::

    torchrun --standalone --nproc_per_node N stages/train.py

Several machines: the same command on every node, with the node's rank and a reachable master::

    torchrun --nnodes M --nproc_per_node N --node_rank R \\
             --master_addr HOST0 --master_port 29500 stages/train.py

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_distributed`
reads them. Without WORLD_SIZE (or with WORLD_SIZE=1) training runs in this process alone and no
process group is created. On CUDA, rank r of a node uses ``cuda:LOCAL_RANK`` (``train.device`` is
then ``auto`` or ``cuda``; ``cuda:N`` and more processes than visible GPUs are refused, since two
ranks on one GPU make NCCL fail); the gloo backend is used on CPU. Only rank 0 writes files and
reports progress. From ``dvc repro`` the train stage starts N local workers itself with
``train.processes: N | auto`` (:mod:`ddhpose.pipeline.local_workers`); after a multi-node
torchrun run, record its outputs with ``dvc commit train``.

The sample stage uses the same setup (``torchrun ... stages/sample.py``, or ``sample.processes``
from ``dvc repro``), with :func:`gather_to_main` to collect the ranks' shares on rank 0.
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


def cuda_index(spec: str, local_rank: int, world_size: int, device_count: int) -> int | None:
    """The CUDA device index for ``spec`` (``cuda`` or ``cuda:N``) of this process.

    ``cuda`` -> ``LOCAL_RANK`` (0 in a single process); ``cuda:N`` -> N in a single process.
    Raises ConfigError (key ``train.device``) for ``cuda:N`` under a multi-process job (every rank
    would share GPU N), for ``LOCAL_RANK >= device_count`` (more processes on this node than
    visible GPUs: NCCL fails with "Duplicate GPU detected") and for an index that does not exist.
    Returns None for ``cuda`` in a single process (the current device).
    """
    if spec.startswith("cuda:"):
        if world_size > 1:
            raise ConfigError("train.device", f"'{spec}' under torchrun (WORLD_SIZE={world_size}) "
                              "would put every rank on one GPU; use 'cuda' or 'auto' (rank r "
                              "takes cuda:LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES)")
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError as exc:
            raise ConfigError("train.device", f"not a device: '{spec}'") from exc
        if not 0 <= index < device_count:
            raise ConfigError("train.device", f"'{spec}' requested but only {device_count} "
                              "CUDA device(s) are visible")
        return index
    if world_size > 1:
        if local_rank >= device_count:
            raise ConfigError("train.device", f"LOCAL_RANK {local_rank} but only {device_count} "
                              "CUDA device(s) are visible: launch at most that many processes per "
                              "node (torchrun --nproc_per_node), or train.device: cpu")
        return local_rank
    return None


def resolve_device(spec: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto | cpu | cuda | cuda:N`` -> a device; ``cuda`` under DDP -> ``cuda:LOCAL_RANK``.

    Raises ConfigError (key ``train.device``) for an unknown spec, CUDA requested but absent, or a
    CUDA choice that would put two ranks on one GPU (:func:`cuda_index`).
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if spec.startswith("cuda:") and world_size > 1:  # a user error, whatever the machine
            cuda_index(spec, local_rank, world_size, 0)
        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"'{spec}' requested but CUDA is not available")
        index = cuda_index(spec, local_rank, world_size, torch.cuda.device_count())
        if index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cuda", index)
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
        world_size = dist.get_world_size()
        device = _use(resolve_device(device_spec, local_rank, world_size))
        return DistInfo(dist.get_rank(), world_size, local_rank, device, False)
    if world_size <= 1:
        return DistInfo(0, 1, 0, _use(resolve_device(device_spec, 0)), False)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(key):
            raise ConfigError(f"env {key}", "unset while WORLD_SIZE > 1 (launch with torchrun)")
    device = _use(resolve_device(device_spec, local_rank, world_size))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(minutes=timeout_minutes),
    )
    return DistInfo(rank, world_size, local_rank, device, True)


def _use(device: torch.device) -> torch.device:
    """Make a CUDA ``device`` the current one (so that NCCL collectives and new CUDA contexts of
    this process use it, not cuda:0); returns it."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


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


def static_unused_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters that never take part in the forward pass: the ``attn.qkv_xc`` layers of the
    spatial hierarchical (HRST) blocks, kept only for the reference's state_dict layout."""
    from ddhpose.model.denoiser import HierarchicalAttention

    out: list[torch.nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, HierarchicalAttention) and module.spatial:
            out.extend(module.qkv_xc.parameters())
    return out


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel when distributed (else return it unchanged).

    The unused set is static (:func:`static_unused_parameters`: the 7 spatial ``attn.qkv_xc``
    layers of the reference model never take part in the forward pass, docs/model.md "Quirks:
    unused spatial qkv_xc"), so those parameters are frozen (``requires_grad_(False)``) and DDP
    runs with ``find_unused_parameters=False`` (no graph walk, no used-parameter all-reduce per
    step). Their gradients stay ``None`` as in a single process, so AdamW skips them in both cases;
    the optimizer's parameter list and state_dict are unchanged.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    for p in static_unused_parameters(model):
        p.requires_grad_(False)
    device_ids = [info.device.index or 0] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=False, broadcast_buffers=False
    )


def gather_to_main(obj: object, info: DistInfo) -> list[object] | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None on the other ranks.

    The objects travel over a gloo group on the CPU whatever the backend, so large NumPy results
    never occupy GPU memory (NCCL would stage pickles on the device). ``[obj]`` in a single
    process. Every rank must call it.
    """
    if not info.distributed:
        return [obj]
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    out: list[object] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0, group=group)
    if group is not None:
        dist.destroy_process_group(group)
    return out
