"""File I/O shared by every layer: atomic writes (a crash never leaves a half-written output or
checkpoint behind), JSON, and the one ``.npz`` reader with its restricted unpickler."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


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


# --- npz archives ---------------------------------------------------------------------------------

#: The only globals a pickled object array in a data file may name: numpy's array and scalar
#: reconstructors and dtypes. Containers (dict, list, tuple), str and numbers are pickle opcodes.
_SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
})


class RefusedPickle(pickle.UnpicklingError):
    """A pickle names a global outside :data:`_SAFE_GLOBALS` (it could run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and dtypes, dict, list, tuple, str and numbers; refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise RefusedPickle(f"{module}.{name}")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only numpy arrays/dtypes, dict, list, tuple, str and numbers.

    Anything else (``builtins.eval``, ``os.system``, any class) raises :class:`RefusedPickle`
    before it is called, so a crafted pickle runs nothing.
    """
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def _read_npy_member(fh: IO[bytes], objects: bool) -> np.ndarray | None:
    """One ``.npy`` member: the array, or None when it pickles objects and ``objects`` is False."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(fh)
    else:  # 3.0: utf-8 field names; numpy has no public reader for its header
        header = np.lib.format._read_array_header(fh, version)
    dtype = header[2]
    if not dtype.hasobject:
        fh.seek(0)
        return np.lib.format.read_array(fh, allow_pickle=False)
    if not objects:
        return None
    value = _RestrictedUnpickler(fh).load()
    if not isinstance(value, np.ndarray):
        raise pickle.UnpicklingError(f"pickled {type(value).__name__}, not an array")
    return value


def read_npz(
    path: str | Path,
    keys: tuple[str, ...] | None = None,
    *,
    objects: bool = False,
    what: str = "npz archive",
) -> dict[str, Any]:
    """Read an ``.npz`` archive into ``{name: array}``: the one npz reader of the package.

    ``keys``: the arrays to read (all when None); a missing one is an error listing the archive's
    keys. ``objects``: allow pickled object arrays (VideoPose3D and 3DHP data files store dicts
    this way); they go through :func:`restricted_loads`'s allow-list, and a 0-d object array is
    returned as the object it holds. Without ``objects`` a pickled array is an error. Every problem
    (missing, truncated, corrupt, refused pickle) raises :class:`ddhpose.errors.DataError` naming
    the file and the cause, in one line.
    """
    from ddhpose.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            wanted = tuple(members) if keys is None else keys
            missing = [k for k in wanted if k not in members]
            if missing:
                raise DataError(path, f"missing key{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(repr(k) for k in missing)} in this {what} "
                                      f"(keys: {', '.join(sorted(members)) or 'none'})")
            for key in wanted:
                with zf.open(members[key]) as fh:
                    try:
                        arr = _read_npy_member(fh, objects)
                    except RefusedPickle as exc:
                        raise DataError(
                            path, f"'{key}' holds a pickle that calls {exc}: refused (only numpy "
                                  "arrays, dtypes, dict, list, tuple, str and numbers are "
                                  "unpickled; a crafted or foreign file?)") from None
                if arr is None:
                    raise DataError(path, f"'{key}' holds pickled Python objects; a {what} "
                                          "stores plain arrays only")
                out[key] = arr.item() if arr.dtype == object and arr.shape == () else arr
    except DataError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, UnpicklingError, bad header...
        kind = type(exc).__name__
        raise DataError(path, f"not a readable npz file (truncated or corrupt?): {kind}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
