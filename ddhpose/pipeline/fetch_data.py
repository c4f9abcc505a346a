"""Stage ``fetch_data``: put the dataset's own files into ``data/raw`` (params ``data.*``).

Sources:

- ``synthetic``: generate a small H36M- or 3DHP-shaped dataset (``ddhpose.synthetic.h36m``);
- ``local``: copy (hardlink when the file system allows) the files from ``data.path``;
- ``url``: download ``<data.url>/<file name>``; every file needs a ``data.sha256`` entry.

Files, by dataset: h36m ``data_3d_h36m.npz`` + ``data_2d_h36m_<keypoints>.npz``; 3dhp
``data_train_3dhp_ori.npz`` + either ``data_test_3dhp_ori.npz`` or the official
``TS*/annot_data.mat`` files (any subset of TS1..TS6, stored as
``mpi_inf_3dhp_test_set/TS*/annot_data.mat``). With ``train.epochs: 0`` (evaluate ``model.init``
only) the 3DHP training file is not needed.

Real data asked for is never replaced by synthetic data. The output is built in a temporary
directory beside ``out_dir`` and swapped in only when complete and verified, so a failure leaves
nothing new behind and a success leaves no stale file of another dataset or source.
``out_dir/SOURCE.json`` records what was fetched (deterministic: no timestamps, so an unchanged
input gives an unchanged DVC output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ddhpose.config.schema import DataParams
from ddhpose.errors import ConfigError, DataError
from ddhpose.io import file_sha256, write_json

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker

H36M_3D = "data_3d_h36m.npz"
MPI_TRAIN = "data_train_3dhp_ori.npz"
MPI_TEST = "data_test_3dhp_ori.npz"
MPI_TEST_DIR = "mpi_inf_3dhp_test_set"
SOURCE_FILE = "SOURCE.json"
_TS_ANNOT = re.compile(rf"^{MPI_TEST_DIR}/TS[1-6]/annot_data\.mat$")
_CHUNK = 1 << 20
_HINTS = {
    H36M_3D: "create it with VideoPose3D's prepare_data_h36m.py as described in its DATASETS.md",
    MPI_TRAIN: "create it with D3DP's MPI-INF-3DHP preprocessing",
    MPI_TEST: "create it with D3DP's MPI-INF-3DHP preprocessing (or provide the official "
              "test set's TS1..TS6/annot_data.mat files instead)",
}


def h36m_2d_name(keypoints: str) -> str:
    return f"data_2d_h36m_{keypoints}.npz"


def _hint(name: str) -> str:
    if name.startswith("data_2d_h36m_"):
        return "create it as described in VideoPose3D's DATASETS.md"
    return _HINTS.get(name, "get it from the official MPI-INF-3DHP test set")


# --- entry points ---------------------------------------------------------------------------------


def fetch_data(cfg: DataParams, out_dir: Path, *, test_only: bool = False) -> dict[str, Path]:
    """Fetch the files ``cfg`` asks for into ``out_dir``; return ``{relative name: path}``.

    ``test_only`` (``train.epochs: 0``, evaluation only): MPI-INF-3DHP's training file is neither
    needed nor fetched; Human3.6M's two files are still needed (they may hold test subjects only).

    Raises DataError (missing/corrupt/unreachable file, naming it) or ConfigError (params).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        if cfg.source == "synthetic":
            origin = _synthetic(cfg, staging)
        elif cfg.source == "local":
            origin = _local(cfg, staging, test_only)
        elif cfg.source == "url":
            origin = _download(cfg, staging, test_only)
        else:
            raise ConfigError("data.source", f"must be synthetic|local|url, got {cfg.source!r}")
        names = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        files = {n: {"sha256": file_sha256(staging / n), "bytes": (staging / n).stat().st_size}
                 for n in names}
        write_json(staging / SOURCE_FILE, {
            "dataset": cfg.dataset, "source": cfg.source, "origin": origin,
            "keypoints": cfg.keypoints if cfg.dataset == "h36m" else None,
            "synthetic": dataclasses.asdict(cfg.synthetic) if cfg.source == "synthetic" else None,
            "test_only": test_only,
            "files": files,
        })
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {n: out_dir / n for n in names}


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove the staging folders a killed fetch left beside ``out_dir`` (``.raw.*.tmp``: a
    partial, unverified download or generation; ``.raw.old.*``: the previous ``data/raw``,
    which DVC has cached). DVC's lock keeps two runs from fetching at once. Returns them."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(.+\.tmp|old\..+)$")
    found = sorted(p for p in out_dir.parent.iterdir() if pattern.match(p.name))
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if found:
        print(f"fetch_data: removed {len(found)} staging folder(s) left by an interrupted run: "
              f"{', '.join(str(p) for p in found)}", file=sys.stderr)
    return found


def run(params: Params, root: Path, tracker: Tracker) -> None:
    """DVC stage body (``stages/fetch_data.py``): fetch into ``<root>/data/raw`` and log it."""
    cfg = params.data
    if cfg.source == "local" and not Path(cfg.path).expanduser().is_absolute():
        cfg = dataclasses.replace(cfg, path=str(Path(root) / cfg.path))
    out_dir = Path(root) / "data" / "raw"
    files = fetch_data(cfg, out_dir, test_only=params.train.epochs == 0)
    total = sum(p.stat().st_size for p in files.values())
    tracker.log_metrics({"fetch.files": len(files), "fetch.megabytes": total / 1e6})
    tracker.log_artifact(out_dir / SOURCE_FILE)
    print(f"fetch_data: {cfg.dataset} ({cfg.source}): {len(files)} files, {total / 1e6:.1f} MB "
          f"in {out_dir}")


# --- sources --------------------------------------------------------------------------------------


def _synthetic(cfg: DataParams, out_dir: Path) -> str:
    from ddhpose.synthetic.config import SyntheticConfig
    from ddhpose.synthetic.h36m import write_synthetic_h36m
    from ddhpose.synthetic.mpi3dhp import write_synthetic_3dhp

    syn_cfg = SyntheticConfig.from_params(cfg)
    if cfg.dataset == "h36m":
        write_synthetic_h36m(out_dir, syn_cfg)
        if not (out_dir / h36m_2d_name(cfg.keypoints)).is_file():
            made = sorted(p.name for p in out_dir.glob("data_2d_h36m_*.npz"))
            raise ConfigError("data.keypoints", f"synthetic data has no {cfg.keypoints!r} "
                                                f"keypoints (it writes {', '.join(made)})")
    else:
        write_synthetic_3dhp(out_dir, syn_cfg)
    return "synthetic"


def _local_plan(cfg: DataParams, src: Path, test_only: bool = False) -> dict[str, Path]:
    """``{name in out_dir: source file}``; raises one DataError naming every missing file."""
    if not src.is_dir():
        raise DataError(f"data.path={src}", "directory does not exist (data.source is 'local')")
    if cfg.dataset == "h36m":
        names = [H36M_3D, h36m_2d_name(cfg.keypoints)]
        plan = {n: src / n for n in names}
    else:
        plan = {} if test_only else {MPI_TRAIN: src / MPI_TRAIN}
        if (src / MPI_TEST).is_file():
            plan[MPI_TEST] = src / MPI_TEST
        else:
            annots = sorted(src.glob("TS[1-6]/annot_data.mat")) or sorted(
                src.glob(f"{MPI_TEST_DIR}/TS[1-6]/annot_data.mat"))
            if not annots:
                plan[MPI_TEST] = src / MPI_TEST  # reported as missing below
            for a in annots:
                plan[f"{MPI_TEST_DIR}/{a.parent.name}/annot_data.mat"] = a
    missing = [n for n, p in plan.items() if not p.is_file()]
    if missing:
        what = "; ".join(f"missing {n} — {_hint(n)} and put it in {src}" for n in missing)
        raise DataError(f"data.path={src}", what)
    return plan


def _local(cfg: DataParams, out_dir: Path, test_only: bool = False) -> str:
    src = Path(cfg.path).expanduser().resolve()
    for name, path in _local_plan(cfg, src, test_only).items():
        expected = cfg.sha256.get(name)
        if expected is not None:
            actual = file_sha256(path)
            if actual != expected:
                raise DataError(path, f"sha256 mismatch: expected {expected} "
                                      f"(data.sha256), got {actual}")
        dst = out_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dst)
        except OSError:
            shutil.copy2(path, dst)
    return str(src)


def _url_names(cfg: DataParams, test_only: bool = False) -> list[str]:
    if cfg.dataset == "h36m":
        return [H36M_3D, h36m_2d_name(cfg.keypoints)]
    train = [] if test_only else [MPI_TRAIN]
    annots = sorted(n for n in cfg.sha256 if _TS_ANNOT.match(n))
    if MPI_TEST in cfg.sha256 or not annots:
        return [*train, MPI_TEST]
    return [*train, *annots]


def _download(cfg: DataParams, out_dir: Path, test_only: bool = False) -> str:
    names = _url_names(cfg, test_only)
    for name in names:
        if name not in cfg.sha256:
            raise ConfigError("data.sha256", f"no digest for {name} (every file downloaded with "
                                             "data.source 'url' needs one)")
    base = cfg.url.rstrip("/")
    for name in names:
        url = f"{base}/{urllib.parse.quote(name)}"
        dst = out_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(dst.name + ".part")
        actual = _download_one(url, part)
        expected = cfg.sha256[name]
        if actual != expected:
            part.unlink()
            raise DataError(url, f"sha256 mismatch for {name}: expected {expected} "
                                 f"(data.sha256), got {actual}")
        os.replace(part, dst)
    return cfg.url


def _download_one(url: str, dst: Path, timeout_s: float = 60.0) -> str:
    """Stream ``url`` into ``dst``; return its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dst, "wb") as fh:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(block)
                fh.write(block)
    except urllib.error.HTTPError as exc:
        raise DataError(url, f"download failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(url, f"download failed: {reason}") from exc
    return digest.hexdigest()


# --- output ---------------------------------------------------------------------------------------


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``staging`` (two renames; the old content is removed afterwards)."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.rmdir(old)
        os.replace(out_dir, old)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old, out_dir)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
