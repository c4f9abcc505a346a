"""ddhpose/project.py: the project's paths, the shared fixtures folder, moving results aside."""

from __future__ import annotations

import subprocess
import sys

from ddhpose.project import REPO, move_aside, shared_dir


def test_shared_dir_is_beside_the_checkout(monkeypatch):
    """One helper for the tests and ``ddhpose bench``: ``../shared`` beside the repository."""
    monkeypatch.delenv("DDHPOSE_SHARED", raising=False)
    assert (REPO / "pyproject.toml").is_file() and (REPO / "ddhpose").is_dir()
    assert shared_dir() == REPO.parent / "shared"
    monkeypatch.setenv("DDHPOSE_SHARED", "/some/where")
    assert str(shared_dir()) == "/some/where"


def test_bench_says_when_it_skips_the_parity_rows(tmp_path):
    code = ("import torch; from ddhpose.bench.accuracy import bf16_accuracy; "
            "print(sorted(bf16_accuracy(None, torch.device('cpu'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"DDHPOSE_SHARED": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert f"parity rows skipped: no {tmp_path}/fixtures" in done.stderr


def test_move_aside_keeps_every_file(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.csv"
    a.write_bytes(b"weights")
    b.write_text("log")
    dest = move_aside([a, b, tmp_path / "missing"], tmp_path / "stale")
    assert dest is not None and dest.parent == tmp_path / "stale"
    assert (dest / "a.pt").read_bytes() == b"weights" and (dest / "b.csv").read_text() == "log"
    assert not a.exists() and not b.exists()
    assert move_aside([a], tmp_path / "stale") is None
