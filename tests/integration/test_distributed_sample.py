"""The sample stage on several processes writes the predictions of one process, bit for bit
(CPU, gloo): under ``torchrun --nproc_per_node 2 stages/sample.py`` and from ``dvc repro`` with
``sample.processes: 2``; a worker killed mid-run stops the stage with one line naming its rank
and leaves no predictions. One tiny project (tests/tiny_project.py), tests in file order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_project import BIN, copy_project, project_env
from tiny_project import run as _run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PRED = Path("reports/predictions")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root = tmp_path_factory.mktemp("sample_project")
    copy_project(root)
    env = project_env(root)  # no GLOO_SOCKET_IFNAME: the stage's launcher picks the loopback
    _run([str(BIN / "dvc"), "repro", "sample"], root, env)
    shutil.copytree(root / PRED, root / "single")
    return root, env


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _same_as_single(root: Path) -> None:
    a, b = _arrays(root / "single/predictions.npz"), _arrays(root / PRED / "predictions.npz")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    assert sorted(p.name for p in (root / PRED).iterdir()) == ["meta.json", "predictions.npz"]


def _sequences(root: Path) -> int:
    return int(json.loads((root / "single/meta.json").read_text())["sequences"])


def test_torchrun_two_ranks_write_the_single_process_predictions(project):
    root, env = project
    assert _sequences(root) >= 3  # shares of more than one sequence, uneven by frames
    shutil.rmtree(root / PRED)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "stages/sample.py"], root, dict(env, PYTHONPATH=str(root), GLOO_SOCKET_IFNAME="lo"))
    _same_as_single(root)
    assert json.loads((root / PRED / "meta.json").read_text())["processes"] == 2


def _set_processes(root: Path, n: int, **sample: int) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"].update(processes=n, **sample)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_repro_with_two_processes_writes_the_single_process_predictions(project):
    root, env = project
    _set_processes(root, 2)
    out = _run([str(BIN / "dvc"), "repro", "sample"], root, env)
    assert "on 2 process(es)" in out, out
    _same_as_single(root)


def test_a_worker_error_is_one_line_naming_the_rank_and_the_file(project):
    root, env = project
    _set_processes(root, 2)
    best = root / "models/best.pt"
    best.rename(root / "best.pt.away")
    try:
        done = subprocess.run(["sh", "stages/python", "stages/sample.py"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        (root / "best.pt.away").rename(best)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("sample: error: rank "), lines[0]
    assert "of 2 failed: " in lines[0] and "models/best.pt" in lines[0], lines[0]
    assert lines[0].endswith("; no predictions written"), lines[0]


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the worker of rank ``rank`` among the descendants of ``parent``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            pid = int(proc.name)
            p = pid
            while p > 1:  # walk up to parent
                p = int((Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if p == parent:
                    break
            else:
                continue
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in environ:  # one entry of the worker's environment
            return pid
    return None


def test_a_killed_rank_fails_the_stage_in_one_line_and_writes_nothing(project):
    root, env = project
    _set_processes(root, 2, hypotheses=200)  # ~10 s of sampling: the kill lands in it
    shutil.rmtree(root / PRED)
    (root / PRED).mkdir(parents=True)
    proc = subprocess.Popen(["sh", "stages/python", "stages/sample.py"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid, deadline = None, time.monotonic() + 120
    while pid is None and proc.poll() is None and time.monotonic() < deadline:
        pid = _rank_pid(proc.pid, 1)
        time.sleep(0.2)
    assert pid is not None, "rank 1 never started"
    time.sleep(4.0)  # past torch's import and the rendezvous
    os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if "error" in ln.lower()]
    assert errors == ["sample: error: rank 1 of 2 failed: killed by SIGKILL; no predictions "
                      "written"], stderr[-3000:]
    assert list((root / PRED).iterdir()) == []  # no predictions, no meta, no temporary file
    assert _rank_pid(proc.pid, 0) is None


def test_process_counts_that_cannot_work_are_refused_naming_the_key():
    from ddhpose.errors import ConfigError
    from ddhpose.pipeline.sample import local_processes

    assert local_processes("auto", "cpu") == 1
    assert local_processes(3, "cpu") == 3
    with pytest.raises(ConfigError, match=r"sample\.processes.*2 workers on the one GPU"):
        local_processes(2, "cuda:0")
