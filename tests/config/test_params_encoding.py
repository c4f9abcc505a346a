"""A byte that is not UTF-8 in ``params.yaml`` or in a ``params apply`` override file is one line
naming the file, the line and the byte, exit 2, in every stage and command that reads it (issue
#26, bug 5; before: an 18-line ``UnicodeDecodeError`` traceback). Real files, real stage and
command subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddhpose.config.yamlfile import ParamsFileError, read_yaml

REPO = Path(__file__).resolve().parents[2]


def _latin1_params(path: Path) -> tuple[Path, int]:
    """The repository's params.yaml with a Latin-1 'é' (byte 0xe9) in a comment of line 2;
    returns the path and the byte offset of that byte."""
    lines = (REPO / "params.yaml").read_bytes().splitlines(keepends=True)
    bad = b"# r\xe9sum\xe9 of the run\n"
    data = lines[0] + bad + b"".join(lines[1:])
    path.write_bytes(data)
    return path, data.index(b"\xe9")


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    env.pop("DDHPOSE_ROOT", None)
    return env


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_read_yaml_names_the_file_line_and_byte(tmp_path):
    path, offset = _latin1_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsFileError) as info:
        read_yaml(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "not UTF-8" in msg and "0xe9" in msg and "line 2" in msg, msg
    assert f"byte offset {offset}" in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("stage", ["fetch_data", "init_model"])
def test_stage_with_a_latin1_params_yaml_says_one_line(tmp_path, stage):
    path, _ = _latin1_params(tmp_path / "params.yaml")
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    line = _one_line(proc)
    assert line.startswith(f"{stage}: error: {path}: "), line
    assert "not UTF-8" in line and "line 2" in line, line
    assert path.read_bytes() == before


def test_params_apply_with_a_latin1_override_says_one_line_and_changes_nothing(tmp_path):
    base = tmp_path / "params.yaml"
    base.write_bytes((REPO / "params.yaml").read_bytes())
    before = base.read_bytes()
    override = tmp_path / "mine.yaml"
    override.write_bytes(b"train:\n  epochs: 3\n# caf\xe9\n")
    proc = subprocess.run([sys.executable, "-m", "ddhpose.cli", "params", "apply", str(override),
                           "--base", str(base)], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    line = _one_line(proc)
    assert line.startswith(f"ddhpose params: error: {override}: "), line
    assert "not UTF-8" in line and "line 3" in line, line
    assert base.read_bytes() == before
    assert not (tmp_path / ".ddhpose").exists()


def test_params_check_with_a_latin1_file_says_one_line(tmp_path):
    path, _ = _latin1_params(tmp_path / "p.yaml")
    proc = subprocess.run([sys.executable, "-m", "ddhpose.cli", "params", "check", str(path)],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert _one_line(proc).startswith(f"ddhpose params: error: {path}: "), proc.stderr
