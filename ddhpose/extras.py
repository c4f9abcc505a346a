"""Optional extras of the package (``pyproject.toml`` ``[project.optional-dependencies]``),
installed by the command that needs one: ``ddhpose server`` the ``team`` extra, ``ddhpose export
onnx`` and ``ddhpose infer --runtime onnx`` the ``onnx`` extra."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ddhpose.errors import DDHPoseError


def extra_requirements(extra: str) -> list[str]:
    """The pinned requirements of ``ddhpose[extra]``: from the installed package's metadata, else
    (installed before the extra existed) from the ``pyproject.toml`` beside the package."""
    try:
        reqs = importlib.metadata.requires("ddhpose") or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    found = [r.split(";")[0].strip() for r in reqs if marker.search(r)]
    if found:
        return found
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib

        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (ImportError, OSError, ValueError):
        return []
    return list(data.get("project", {}).get("optional-dependencies", {}).get(extra, []))


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The names of ``modules`` that this interpreter cannot import (not installed, or marked
    unimportable with ``sys.modules[name] = None``)."""
    missing = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ValueError, ImportError):  # sys.modules[m] is None, or a broken parent
            found = False
        if not found:
            missing.append(m)
    return missing


def ensure_extra(log: Callable[[str], None], extra: str, modules: tuple[str, ...],
                 error: type[DDHPoseError] = DDHPoseError) -> None:
    """Install the ``extra``'s pins into this interpreter if one of ``modules`` is missing
    (``log`` gets one line first); a failure raises ``error`` with one line."""
    missing = missing_modules(modules)
    if not missing:
        return
    reqs = extra_requirements(extra)
    if not reqs:
        raise error(f"missing {', '.join(missing)} and ddhpose's [{extra}] extra is unknown "
                    f"to this interpreter ({sys.executable}); install it: pip install -e "
                    f"'.[{extra}]'")
    log(f"installing the [{extra}] extra: {' '.join(reqs)}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *reqs],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise error(f"pip install {' '.join(reqs)} failed: {last}")
    importlib.invalidate_caches()


__all__ = ["ensure_extra", "extra_requirements", "missing_modules"]
