"""Atomic file writing: a crash never leaves a half-written output or checkpoint behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise _naming(exc, path) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _naming(exc: OSError, path: str | Path) -> OSError:
    """``exc`` itself when it names a file, else the same error naming ``path`` (a write that
    failed on a full disk reports no file name of its own)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Write several files as one set: yield a temporary path beside each of ``paths``; only when
    the block succeeds (every file written and fsynced) are they renamed over ``paths``.

    On an exception (disk full on the second file, ...) every temporary file is removed and
    every one of ``paths`` keeps its old content: never a new file beside an old one.
    """
    with contextlib.ExitStack() as stack:
        temps: list[Path] = []
        stack.callback(_remove_all, temps)  # after the renames there is nothing left to remove
        for p in paths:
            temps.append(_new_temp(Path(p)))
        try:
            yield temps
        except OSError as exc:
            raise _naming(exc, " and ".join(map(str, paths))) from exc
        for tmp, path in zip(temps, map(Path, paths), strict=True):
            try:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise _naming(exc, path) from exc
        for tmp, path in zip(temps, map(Path, paths), strict=True):
            os.replace(tmp, path)
        for parent in {Path(p).parent for p in paths}:
            _fsync_dir(parent)


def _new_temp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def _remove_all(temps: list[Path]) -> None:
    for tmp in temps:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON text (arrays as lists, paths as strings), newline-terminated."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(json_text(obj))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: str | Path, default: Any = None) -> Any:
    """Parse a JSON file; ``default`` when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return {} if default is None else default
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def probe_writable(directory: str | Path) -> Path:
    """Create ``directory`` if needed and check a file can be written there (a temporary file is
    created and removed). Raises the OSError (read-only file system, permission denied, disk
    full) before any expensive work is done."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=directory)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:  # name the folder, not the probe file
        raise type(exc)(exc.errno, exc.strerror, str(directory)) from exc
    return directory


def check_outputs(
    outputs: Iterable[str | Path], *, inputs: Iterable[str | Path] = (), force: bool = False,
) -> None:
    """Refuse to write ``outputs`` over one of ``inputs`` (never allowed), over a folder, or over
    an existing file unless ``force`` (the ``--force`` flag of a command); then check that their
    folders are writable (:func:`probe_writable`). Raises :class:`ddhpose.errors.DataError`
    naming the file, or the OSError of the folder."""
    from ddhpose.errors import DataError

    outputs, inputs = [Path(o) for o in outputs], [Path(i) for i in inputs]
    for out in outputs:
        for inp in inputs:
            if out.resolve() == inp.resolve() or (out.exists() and inp.exists()
                                                  and os.path.samefile(out, inp)):
                same = "an input file" if out == inp else f"the input file {inp}"
                raise DataError(out, f"is {same}; the output needs another name")
        if out.is_dir():
            raise DataError(out, "is a folder; the output needs a file name")
        if out.exists() and not force:
            raise DataError(out, "exists; pass --force to replace it, or choose another name")
    for folder in {out.parent for out in outputs}:
        probe_writable(folder)
