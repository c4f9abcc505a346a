"""What a file given as a checkpoint is, told from its first bytes without unpickling anything:
an empty file, a text file, a plain Python pickle (never a torch.save file), a zip archive without
``data.pkl`` (an ``.npz``). :func:`ddhpose.model.checkpoint.load_checkpoint` names such a file for
what it is before torch would read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddhpose.errors import CheckpointError

_HEAD = 65536  # bytes read to tell what a file is


def _pickle_ops(data: bytes) -> tuple[list[tuple[str, Any]], bool]:
    """The opcodes (name, argument) of the first pickle in ``data``, parsed, never executed, and
    whether its STOP was reached (False: cut off or not a pickle at all)."""
    import io
    import pickletools

    ops: list[tuple[str, Any]] = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            ops.append((op.name, arg))
            if op.name == "STOP":
                return ops, True
    except Exception:  # ValueError and friends: garbage, or the head cut a pickle off
        pass
    return ops, False


def _pickle_protocol(data: bytes) -> int | None:
    """-1 when ``data`` starts like a legacy (non-zip) ``torch.save`` file (its first pickle is
    torch's magic number), the protocol of another pickle it starts with, else None. A pickle of
    protocol 0 or 1 counts only when it ends within ``data``."""
    import pickletools

    import torch

    ops, stopped = _pickle_ops(data)
    body = [(name, arg) for name, arg in ops if name not in ("PROTO", "FRAME", "STOP")]
    if stopped and len(body) == 1 and body[0][0] in ("LONG", "LONG1", "LONG4") \
            and body[0][1] == torch.serialization.MAGIC_NUMBER:
        return -1
    if len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return data[1]
    if stopped:
        proto = {op.name: op.proto for op in pickletools.opcodes}
        return max(proto[name] for name, _ in ops)
    return None


def _text_start(data: bytes) -> str | None:
    """The first line of ``data`` when it is text (UTF-8, printable, no NUL), else None."""
    import codecs

    if b"\x00" in data:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return None
    if not all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:40] if lines else ""


def not_a_checkpoint(path: Path) -> str | None:
    """What ``path`` is when it is plainly not a PyTorch checkpoint (read from its first bytes,
    nothing unpickled), else None (torch.load decides)."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            data = fh.read(_HEAD)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    what = "not a PyTorch checkpoint"
    if not data:
        return f"{what}: an empty file (0 bytes)"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None  # a damaged or cut-off archive: torch.load names the damage
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return None
        npz = names and all(n.endswith(".npy") for n in names)
        return (f"{what}: a zip archive without data.pkl"
                + (" (a NumPy .npz archive)" if npz else f" (it holds {len(names)} file(s))"))
    protocol = _pickle_protocol(data)
    if protocol == -1:
        return None
    if protocol is not None:
        return (f"{what}: a plain Python pickle (protocol {protocol}), not a file written by "
                "torch.save; it is not unpickled (that could run code)")
    start = _text_start(data)
    if start is not None:
        return f"{what}: a text file (it starts {start!r})"
    return None
