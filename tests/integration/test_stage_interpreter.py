"""The stage commands find the project's interpreter: ``.venv/bin/dvc repro`` works with a PATH
that holds no Python with ddhpose (the README's commands, run as written)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny_project import BIN, REPO, copy_project, project_env, run


def _venv() -> Path:
    if sys.prefix == sys.base_prefix or not (BIN / "dvc").exists():
        pytest.skip("needs the tests to run in a virtual environment that has dvc")
    return Path(sys.prefix)


def test_dvc_from_venv_without_venv_on_path(tmp_path: Path) -> None:
    venv = _venv()
    root = tmp_path / "project"
    root.mkdir()
    copy_project(root)
    (root / ".venv").symlink_to(venv, target_is_directory=True)
    # PATH without the venv: a `python` found there (if any) cannot import ddhpose.
    env = project_env(root, PATH="/usr/bin:/bin")
    env.pop("PYTHONPATH", None)
    out = run([str(root / ".venv" / "bin" / "dvc"), "repro", "fetch_data"], root, env)
    assert "No module named" not in out
    assert (root / "data" / "raw" / "data_3d_h36m.npz").is_file()


def test_stage_imports_the_code_of_the_copy_it_runs_in(tmp_path: Path) -> None:
    """A queued experiment runs in a copy: the wrapper puts that copy first on PYTHONPATH."""
    _venv()
    root = tmp_path / "project"
    (root / "stages").mkdir(parents=True)
    (root / "stages" / "python").write_bytes((REPO / "stages" / "python").read_bytes())
    (root / "ddhpose").mkdir()
    (root / "ddhpose" / "__init__.py").write_text("WHERE = 'copy'\n")
    (root / "stages" / "probe.py").write_text("import ddhpose\nprint(ddhpose.WHERE)\n")
    env = project_env(root)
    out = run(["sh", "stages/python", "stages/probe.py"], root, env)
    assert out.strip() == "copy"
