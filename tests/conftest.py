"""Shared test fixtures: the location of ../shared (skipped with a reason when absent) and real
small tmpfs mounts (a full disk, a read-only file system; skipped where mounting is refused);
every test under tests/integration/ gets the ``integration`` marker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ddhpose.project import shared_dir

SHARED = shared_dir()

torch.set_num_threads(min(2, torch.get_num_threads()))
# test helpers beside this file (demo_config.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))


_INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"needs {path} (the project's ../shared fixtures); absent in a plain clone",
            allow_module_level=False,
        )
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """../shared/fixtures/reference_parity/small (outputs of the reference code)."""
    return _need(SHARED / "fixtures" / "reference_parity" / "small")


@pytest.fixture(scope="session")
def mpi3dhp_fixture_dir() -> Path:
    """../shared/fixtures/mpi_inf_3dhp (real TS5 annotations and official evaluator tables)."""
    return _need(SHARED / "fixtures" / "mpi_inf_3dhp")


@pytest.fixture
def tmpfs(tmp_path: Path):
    """``mount(name, size="1m", read_only=False) -> Path``: a real small tmpfs under tmp_path
    (a full disk or a read-only file system for the tests); unmounted afterwards. Skips with a
    reason where mounting is not permitted (not root, no mount namespace)."""
    import subprocess

    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", read_only: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir(exist_ok=True)
        opts = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
