"""The one npz reader (ddhpose.io.read_npz) and its restricted unpickler."""

from __future__ import annotations

import numpy as np
import pytest

from ddhpose.data.h36m import load_positions_3d
from ddhpose.data.mpi3dhp import load_3dhp_test
from ddhpose.errors import DataError
from ddhpose.io import read_npz


class _CreatesFile:
    """Unpickling this object calls ``open(target, "w")``: it creates a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _crafted_npz(path, key, target) -> None:
    obj = np.empty((), dtype=object)
    obj[()] = {"S1": {"Walking": _CreatesFile(str(target))}}
    np.savez_compressed(path, **{key: obj})


def test_crafted_file_really_runs_code_under_plain_np_load(tmp_path):
    """The fixture is dangerous: numpy's own unpickler creates the file."""
    target = tmp_path / "pwned"
    _crafted_npz(tmp_path / "evil.npz", "positions_3d", target)
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as z:
        z["positions_3d"]
    assert target.exists()


@pytest.mark.parametrize(("key", "reader"), [("positions_3d", load_positions_3d),
                                             ("data", load_3dhp_test)])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, key, reader):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"
    _crafted_npz(evil, key, target)
    with pytest.raises(DataError) as info:
        reader(evil)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(evil) in msg and f"'{key}'" in msg
    assert "io.open" in msg and "refused" in msg
    assert not target.exists()


def test_allowed_objects_round_trip(tmp_path):
    obj = np.empty((), dtype=object)
    value = {"a": [np.arange(3, dtype=np.float32), ("x", 2, 3.5, np.int64(7))],
             "dt": np.dtype("<f4"), "nested": {"b": np.zeros((2, 2))}}
    obj[()] = value
    np.savez_compressed(tmp_path / "ok.npz", d=obj, plain=np.ones(4))
    out = read_npz(tmp_path / "ok.npz", objects=True)
    np.testing.assert_array_equal(out["d"]["a"][0], value["a"][0])
    assert out["d"]["a"][1] == value["a"][1]
    assert out["d"]["dt"] == np.dtype("<f4")
    np.testing.assert_array_equal(out["plain"], np.ones(4))


def test_objects_off_refuses_any_pickle(tmp_path):
    obj = np.empty((), dtype=object)
    obj[()] = {"a": 1}
    np.savez(tmp_path / "p.npz", p=obj)
    with pytest.raises(DataError, match="'p' holds pickled Python objects"):
        read_npz(tmp_path / "p.npz")


def test_errors_name_the_file_and_cause(tmp_path):
    with pytest.raises(DataError, match=r"missing\.npz: file not found"):
        read_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "k.npz", a=np.ones(2))
    with pytest.raises(DataError, match=r"k.npz: missing key 'b' .*\(keys: a\)"):
        read_npz(tmp_path / "k.npz", ("a", "b"))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "k.npz").read_bytes()[:60])
    with pytest.raises(DataError, match=r"cut\.npz: not a readable npz file"):
        read_npz(tmp_path / "cut.npz")
