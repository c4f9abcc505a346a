"""Start and stop a real ``ddhpose server`` (embedded PostgreSQL + ``mlflow server``) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ddhpose

CODE = Path(ddhpose.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m ddhpose.cli server`` in the background; ``uri`` once it printed its export."""

    def __init__(self, data_dir: Path, port: int, cwd: Path) -> None:
        self.data_dir, self.port, self.cwd = data_dir, port, cwd
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.uri = ""

    def start(self, timeout_s: float = 300) -> str:
        env = dict(os.environ, OMP_NUM_THREADS="1",
                   PYTHONPATH=f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ddhpose.cli", "server", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("export MLFLOW_TRACKING_URI="):
                    self.uri = line.strip().split("=", 1)[1]
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not ready.wait(1) and time.monotonic() < deadline:
            pass
        if not self.uri:
            self.stop()
            pytest.fail("ddhpose server did not start:\n" + "\n".join(self.lines[-40:]))
        return self.uri

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
