"""``stages/python`` with a virtual environment OUTSIDE the project (issue #26, bug 6): ``dvc``
started from that environment, not activated (``/elsewhere/venv/bin/dvc repro``), runs every
stage under the interpreter that runs ``dvc``; with no usable interpreter at all the wrapper says
so in one line (exit 2) instead of a ``ModuleNotFoundError: numpy`` traceback.

Real parts: the tests' own virtual environment plays the one "elsewhere" (the project copy in a
temporary folder has no ``.venv`` in it or above it), a real bare virtual environment (no numpy)
plays the ``python`` on PATH, and a real ``dvc repro`` runs the stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROBE = "import sys\nimport numpy\nopen('out.txt', 'w').write(sys.prefix)\n"


def _has_venv_above(path: Path) -> bool:
    return any((p / ".venv" / "bin" / "python").exists() for p in [path, *path.parents])


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """A real virtual environment without numpy: its ``bin`` goes first on PATH."""
    if sys.prefix == sys.base_prefix or not (BIN / "dvc").exists():
        pytest.skip("needs the tests to run in a virtual environment that has dvc")
    where = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120, env={k: v for k, v in os.environ.items()
                                     if k != "VIRTUAL_ENV"})
    return where


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "stages").mkdir(parents=True)
    if _has_venv_above(root):
        pytest.skip(f"{root} has a .venv in a folder above it")
    (root / "stages" / "python").write_bytes((REPO / "stages" / "python").read_bytes())
    (root / "stages" / "probe.py").write_text(PROBE)
    (root / "dvc.yaml").write_text(
        "stages:\n  probe:\n    cmd: sh stages/python stages/probe.py\n    outs:\n"
        "      - out.txt\n")
    return root


def _env(bare: Path) -> dict[str, str]:
    """PATH with the bare environment's python first and no ddhpose environment on it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DVC_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bare / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return env


def test_dvc_of_a_venv_elsewhere_runs_stages_with_its_interpreter(tmp_path, bare):
    root = _project(tmp_path)
    env = _env(bare)
    dvc = str(BIN / "dvc")  # /elsewhere/venv/bin/dvc, the venv not activated
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=300)
    proc = subprocess.run([dvc, "repro", "probe"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "No module named" not in proc.stdout + proc.stderr
    assert Path((root / "out.txt").read_text()).resolve() == Path(sys.prefix).resolve()


def test_no_usable_interpreter_is_one_line_naming_what_was_tried(tmp_path, bare):
    root = _project(tmp_path)
    proc = subprocess.run(["sh", "stages/python", "stages/probe.py"], cwd=root, env=_env(bare),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith("stages/python: error: "), line
    assert str(bare / "bin" / "python") in line and "numpy" in line, line
    assert ".venv" in line and "activate" in line, line
    assert not (root / "out.txt").exists()
