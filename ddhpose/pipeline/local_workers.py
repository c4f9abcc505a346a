"""Local worker processes of a stage: ``train.processes`` / ``sample.processes`` (dvc repro).

A stage that is asked for N > 1 processes starts N local workers itself with torch's elastic
launcher, exactly as ``torchrun --standalone --nproc_per_node N`` would (the workers see RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT and join a gloo / nccl group), so a plain
``dvc repro`` uses every local GPU, or both halves of a small CPU:

- :func:`local_processes` turns the params value (``N`` or ``auto``) into the count;
- :func:`launch` runs ``python -m <module> --worker <tmp> <project root>`` N times and waits;
  the workers hand results back as files in ``tmp`` (the stage's choice of files);
- :func:`run_worker` is the worker's side: it turns an error into one line in
  ``tmp/rank<r>.err`` and an exit status, which :func:`launch` reports as ONE
  :class:`~ddhpose.errors.DDHPoseError` naming the first rank that failed and why (its own
  error line, else its signal or exit status). A failed worker stops the others (the launcher's
  rule).

While the workers run, ``poll(tmp)`` (if given) is called about twice a second from a helper
thread, and once more after they finished: the train stage tails rank 0's per-epoch metrics
there and logs them to MLflow as they come.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ddhpose.errors import ConfigError, DDHPoseError, one_line, os_error_line


def local_processes(spec: int | str, device_spec: str, key: str) -> int:
    """A ``<section>.processes`` value -> the number of local workers: an int as given;
    ``auto`` -> the visible GPUs when the device is CUDA (``auto`` or ``cuda``), else 1.

    Raises ConfigError naming ``key`` for more workers than visible GPUs on CUDA and for
    several workers on one named GPU (``<section>.device: cuda:N``).
    """
    device_spec = (device_spec or "auto").strip().lower()
    section = key.split(".")[0]
    on_cuda = device_spec.startswith("cuda") or (device_spec == "auto"
                                                 and torch.cuda.is_available())
    if spec == "auto":
        return max(1, torch.cuda.device_count()) if on_cuda else 1
    n = int(spec)
    if n > 1 and device_spec.startswith("cuda:"):
        raise ConfigError(key, f"{n} workers on the one GPU of {section}.device "
                               f"'{device_spec}'; use {section}.device: cuda or auto (worker r "
                               "takes cuda:r; choose GPUs with CUDA_VISIBLE_DEVICES)")
    if n > 1 and on_cuda and torch.cuda.is_available() and n > torch.cuda.device_count():
        raise ConfigError(key, f"{n} workers but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible (one worker per GPU); use auto")
    return n


def launch(n: int, module: str, root: Path, tmp: Path, *, what: str,
           poll: Callable[[Path], None] | None = None) -> None:
    """Run ``n`` workers ``python -m <module> --worker <tmp> <root>`` and wait for all of them.

    ``OMP_NUM_THREADS`` (unless set) shares this machine's CPUs between the workers; gloo talks
    over the loopback. Raises DDHPoseError ``rank r of n failed: <why>; <what>`` when a worker
    fails (``what`` says what that leaves, e.g. "no predictions written").
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "GLOO_SOCKET_IFNAME")}
    if saved["OMP_NUM_THREADS"] is None:  # the CPU's threads shared between the workers
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    if saved["GLOO_SOCKET_IFNAME"] is None and Path("/sys/class/net/lo").exists():
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # local workers talk over the loopback
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its failure report is replaced by our one line
    name = module.rsplit(".", 1)[-1]
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=f"ddhpose-{name}-{os.getpid()}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
        monitor_interval=0.1, start_method="spawn",
    )
    done = threading.Event()
    poller = None
    if poll is not None:
        def tail() -> None:
            while not done.wait(0.5):
                poll(tmp)

        poller = threading.Thread(target=tail, name=f"ddhpose-{name}-poll", daemon=True)
        poller.start()
    try:
        elastic_launch(config, sys.executable)("-m", module, "--worker", str(tmp), str(root))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise DDHPoseError(f"rank {rank} of {n} failed: {_why(failure, tmp, rank)}; "
                           f"{what}") from None
    finally:
        done.set()
        if poller is not None:
            poller.join()
        quiet.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if poll is not None:
        poll(tmp)  # what the last epoch wrote


def _why(failure: Any, tmp: Path, rank: int) -> str:
    """A failed worker's cause: its own error line, else its signal or exit status."""
    note = tmp / f"rank{rank}.err"
    if note.is_file() and note.read_text().strip():
        return note.read_text().strip()
    code = int(getattr(failure, "exitcode", 1))
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_worker(body: Callable[[Path, Path], None], argv: list[str]) -> int:
    """The worker's side of :func:`launch`: ``body(tmp, root)`` with ``argv`` =
    ``[program, --worker, tmp, root]`` (``sys.argv``); an error becomes ``tmp/rank<r>.err``
    (one line) and exit status 2 (1 for a bug, traceback on stderr)."""
    tmp, root = Path(argv[2]), Path(argv[3])
    rank = int(os.environ.get("RANK", "0"))
    try:
        body(tmp, root)
        return 0
    except DDHPoseError as exc:
        line, code = str(exc), 2
    except OSError as exc:
        line, code = os_error_line(exc), 2
    except Exception as exc:  # a bug: keep the traceback
        traceback.print_exc()
        line, code = f"{type(exc).__name__}: {one_line(exc)}", 1
    prefix = f"rank {rank} of "
    (tmp / f"rank{rank}.err").write_text(line.split(": ", 1)[1] if line.startswith(prefix)
                                         else line)
    return code


def is_worker_call(argv: list[str]) -> bool:
    """``python -m <stage module> --worker TMP ROOT``: the module runs as a launched worker."""
    return len(argv) == 4 and argv[1] == "--worker"
