"""A fetch killed with SIGKILL mid-download leaves ``data/.raw.*.tmp``; the next fetch removes it
(a real subprocess, a loopback HTTP server that stalls half-way through a file)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from demo_config import demo_params

from ddhpose.pipeline import fetch_data as F

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = b"x" * 300_000
CPN = "data_2d_h36m_cpn_ft_h36m_dbb.npz"


@pytest.fixture
def stalling_server():
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:100_000])
            self.wfile.flush()
            release.wait(60)  # half a file, then nothing until the test ends

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()


def test_staging_left_by_sigkill_is_removed_next_run(tmp_path, stalling_server):
    data = tmp_path / "data"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    code = (
        "import dataclasses, sys; from pathlib import Path\n"
        "from ddhpose.pipeline import fetch_data as F\n"
        "from ddhpose.config.schema import load_params\n"
        f"data = load_params(Path({str(REPO / 'params.yaml')!r})).data\n"
        f"cfg = dataclasses.replace(data, source='url', url={stalling_server!r}, "
        f"keypoints='cpn_ft_h36m_dbb', sha256={{{F.H36M_3D!r}: {sha!r}, {CPN!r}: {sha!r}}})\n"
        f"F.fetch_data(cfg, Path({str(data / 'raw')!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ,
                            PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 120
        while not list(data.glob(".raw.*.tmp/*.part")):  # the download is under way
            assert proc.poll() is None and time.monotonic() < deadline, "fetch did not start"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = list(data.glob(".raw.*.tmp"))
    assert len(left) == 1

    src = tmp_path / "src"
    src.mkdir()
    (src / F.H36M_3D).write_bytes(b"3d")
    (src / CPN).write_bytes(b"2d")
    cfg = dataclasses.replace(demo_params().data, source="local", path=str(src),
                              keypoints="cpn_ft_h36m_dbb")
    F.fetch_data(cfg, data / "raw")
    assert sorted(p.name for p in data.iterdir()) == ["raw"]
    assert (data / "raw" / F.H36M_3D).read_bytes() == b"3d"
