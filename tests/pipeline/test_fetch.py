"""fetch_data: local copies, url downloads from a loopback HTTP server, checksums, messages."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from demo_config import demo_params

from ddhpose.config.schema import DataParams
from ddhpose.errors import ConfigError, DataError
from ddhpose.pipeline import fetch_data as F

CPN = "data_2d_h36m_cpn_ft_h36m_dbb.npz"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cfg(**kw) -> DataParams:
    return dataclasses.replace(demo_params().data, **kw)


@pytest.fixture
def h36m_src(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / F.H36M_3D).write_bytes(b"3d-positions")
    (src / CPN).write_bytes(b"2d-detections")
    return src


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_local_h36m_copies_and_describes(tmp_path, h36m_src):
    out = tmp_path / "data" / "raw"
    out.mkdir(parents=True)
    (out / F.MPI_TRAIN).write_bytes(b"stale file of another dataset")
    cfg = _cfg(source="local", path=str(h36m_src), keypoints="cpn_ft_h36m_dbb",
               sha256={F.H36M_3D: _sha(b"3d-positions")})
    files = F.fetch_data(cfg, out)
    assert set(files) == {F.H36M_3D, CPN}
    assert sorted(p.name for p in out.iterdir()) == sorted([F.H36M_3D, CPN, F.SOURCE_FILE])
    assert (out / CPN).read_bytes() == b"2d-detections"
    src_stat, out_stat = (h36m_src / CPN).stat(), (out / CPN).stat()
    assert (src_stat.st_dev, src_stat.st_ino) == (out_stat.st_dev, out_stat.st_ino)  # hardlink
    source = json.loads((out / F.SOURCE_FILE).read_text())
    assert source["source"] == "local" and source["dataset"] == "h36m"
    assert source["origin"] == str(h36m_src.resolve())
    assert source["files"][CPN]["sha256"] == _sha(b"2d-detections")
    assert _leftovers(out.parent) == []
    # SOURCE.json is deterministic: a second fetch gives identical bytes
    before = (out / F.SOURCE_FILE).read_bytes()
    F.fetch_data(cfg, out)
    assert (out / F.SOURCE_FILE).read_bytes() == before


def test_local_missing_file_message(tmp_path, h36m_src):
    (h36m_src / CPN).unlink()
    out = tmp_path / "raw"
    with pytest.raises(DataError) as err:
        F.fetch_data(_cfg(source="local", path=str(h36m_src), keypoints="cpn_ft_h36m_dbb"), out)
    src = h36m_src.resolve()
    assert str(err.value) == (
        f"data.path={src}: missing {CPN} — create it as described in VideoPose3D's "
        f"DATASETS.md and put it in {src}")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_local_missing_directory(tmp_path):
    with pytest.raises(DataError, match="directory does not exist"):
        F.fetch_data(_cfg(source="local", path=str(tmp_path / "nope")), tmp_path / "raw")


def test_local_sha_mismatch_keeps_old_output(tmp_path, h36m_src):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "old.txt").write_text("previous fetch")
    bad = "0" * 64
    cfg = _cfg(source="local", path=str(h36m_src), keypoints="cpn_ft_h36m_dbb",
               sha256={CPN: bad})
    with pytest.raises(DataError) as err:
        F.fetch_data(cfg, out)
    msg = str(err.value)
    assert CPN in msg and bad in msg and _sha(b"2d-detections") in msg
    assert [p.name for p in out.iterdir()] == ["old.txt"] and _leftovers(tmp_path) == []


def test_local_3dhp_official_test_annotations(tmp_path):
    src = tmp_path / "src"
    for ts in ("TS1", "TS5"):
        (src / ts).mkdir(parents=True)
        (src / ts / "annot_data.mat").write_bytes(ts.encode())
    out = tmp_path / "raw"
    with pytest.raises(DataError, match=f"missing {F.MPI_TRAIN}"):
        F.fetch_data(_cfg(dataset="3dhp", source="local", path=str(src)), out)
    (src / F.MPI_TRAIN).write_bytes(b"train")
    files = F.fetch_data(_cfg(dataset="3dhp", source="local", path=str(src)), out)
    assert set(files) == {F.MPI_TRAIN, f"{F.MPI_TEST_DIR}/TS1/annot_data.mat",
                          f"{F.MPI_TEST_DIR}/TS5/annot_data.mat"}
    assert (out / F.MPI_TEST_DIR / "TS5" / "annot_data.mat").read_bytes() == b"TS5"
    (src / F.MPI_TEST).write_bytes(b"test")  # the npz takes precedence
    files = F.fetch_data(_cfg(dataset="3dhp", source="local", path=str(src)), out)
    assert set(files) == {F.MPI_TRAIN, F.MPI_TEST}
    assert not (out / F.MPI_TEST_DIR).exists()  # stale annotations removed


def test_local_3dhp_without_any_test_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / F.MPI_TRAIN).write_bytes(b"train")
    with pytest.raises(DataError, match=f"missing {F.MPI_TEST} .*annot_data.mat"):
        F.fetch_data(_cfg(dataset="3dhp", source="local", path=str(src)), tmp_path / "raw")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path):
    """(directory served, base URL) from an HTTP server on 127.0.0.1 in a thread."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/files"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _serve(served: Path, files: dict[str, bytes]) -> dict[str, str]:
    (served / "files").mkdir(exist_ok=True)
    for name, data in files.items():
        (served / "files" / name).parent.mkdir(parents=True, exist_ok=True)
        (served / "files" / name).write_bytes(data)
    return {name: _sha(data) for name, data in files.items()}


def test_url_download_verified(tmp_path, http_dir):
    served, url = http_dir
    digests = _serve(served, {F.H36M_3D: b"x" * 3_000_000, "data_2d_h36m_gt.npz": b"gt"})
    out = tmp_path / "raw"
    files = F.fetch_data(_cfg(source="url", url=url + "/", keypoints="gt", sha256=digests), out)
    assert set(files) == set(digests)
    assert F.file_sha256(out / F.H36M_3D) == digests[F.H36M_3D]
    source = json.loads((out / F.SOURCE_FILE).read_text())
    assert source["origin"] == url + "/" and source["files"][F.H36M_3D]["bytes"] == 3_000_000
    assert _leftovers(tmp_path) == []


def test_url_sha_mismatch_leaves_nothing(tmp_path, http_dir):
    served, url = http_dir
    digests = _serve(served, {F.H36M_3D: b"3d", "data_2d_h36m_gt.npz": b"tampered"})
    expected = _sha(b"original")
    digests["data_2d_h36m_gt.npz"] = expected
    out = tmp_path / "raw"
    with pytest.raises(DataError) as err:
        F.fetch_data(_cfg(source="url", url=url, keypoints="gt", sha256=digests), out)
    msg = str(err.value)
    assert "data_2d_h36m_gt.npz" in msg and expected in msg and _sha(b"tampered") in msg
    assert not out.exists() and _leftovers(tmp_path) == []


def test_url_errors(tmp_path, http_dir):
    served, url = http_dir
    digests = _serve(served, {F.H36M_3D: b"3d"})
    cfg = _cfg(source="url", url=url, keypoints="gt", sha256=digests)
    with pytest.raises(ConfigError, match=r"'data\.sha256': no digest for data_2d_h36m_gt\.npz"):
        F.fetch_data(cfg, tmp_path / "raw")
    digests["data_2d_h36m_gt.npz"] = "1" * 64  # digest given, file absent on the server
    with pytest.raises(DataError, match=r"data_2d_h36m_gt\.npz: download failed: HTTP 404"):
        F.fetch_data(dataclasses.replace(cfg, sha256=digests), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and _leftovers(tmp_path) == []


def test_url_3dhp_test_annotations(tmp_path, http_dir):
    served, url = http_dir
    ts = f"{F.MPI_TEST_DIR}/TS2/annot_data.mat"
    digests = _serve(served, {F.MPI_TRAIN: b"train", ts: b"ts2"})
    files = F.fetch_data(_cfg(dataset="3dhp", source="url", url=url, sha256=digests),
                         tmp_path / "raw")
    assert set(files) == {F.MPI_TRAIN, ts}


def test_stage_run_resolves_relative_path(tmp_path, h36m_src, monkeypatch, capsys):
    from ddhpose.tracking.runs import stage_run

    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    h36m_src.rename(root / "data" / "external")
    p = demo_params()
    p = dataclasses.replace(
        p, data=dataclasses.replace(p.data, source="local", path="data/external",
                                    keypoints="cpn_ft_h36m_dbb"),
        tracking=dataclasses.replace(p.tracking, enabled=False))
    monkeypatch.chdir(tmp_path)  # the relative path is resolved against root, not the cwd
    with stage_run("fetch_data", p, root) as tracker:
        F.run(p, root, tracker)
    assert (root / "data" / "raw" / CPN).is_file()
    assert "fetch_data: h36m (local): 2 files" in capsys.readouterr().out
    log = (root / "reports" / "tracking_offline" / "fetch_data.jsonl").read_text()
    assert '"fetch.files": 2.0' in log


@pytest.fixture
def synthetic_data() -> DataParams:
    pytest.importorskip("ddhpose.synthetic.h36m", reason="synthetic generator not built yet")
    d = demo_params().data
    return dataclasses.replace(d, synthetic=dataclasses.replace(d.synthetic, frames=40),
                               subjects_train=("S1",), subjects_test=("S9",), actions=("Walk",))


def test_synthetic_h36m(tmp_path, synthetic_data):
    out = tmp_path / "raw"
    (out / "stale").mkdir(parents=True)
    files = F.fetch_data(synthetic_data, out)
    assert {F.H36M_3D, "data_2d_h36m_detections.npz"} <= set(files)
    assert all(f.is_file() for f in files.values())
    assert not (out / "stale").exists()
    source = json.loads((out / F.SOURCE_FILE).read_text())
    assert source["source"] == "synthetic" and source["synthetic"]["frames"] == 40
    assert set(source["files"]) == set(files)


def test_synthetic_3dhp(tmp_path, synthetic_data):
    files = F.fetch_data(dataclasses.replace(synthetic_data, dataset="3dhp"), tmp_path / "raw")
    assert {F.MPI_TRAIN, F.MPI_TEST} <= set(files)


def test_synthetic_bad_settings_name_params_keys(tmp_path, synthetic_data):
    with pytest.raises(ConfigError, match=r"'data\.keypoints': synthetic data has no"):
        F.fetch_data(dataclasses.replace(synthetic_data, keypoints="cpn_ft_h36m_dbb"),
                     tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"'data\.subjects_test': unknown subjects"):
        F.fetch_data(dataclasses.replace(synthetic_data, subjects_test=("S99",)),
                     tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"'data\.actions'"):
        F.fetch_data(dataclasses.replace(synthetic_data, actions=("Juggling",)), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and _leftovers(tmp_path) == []
