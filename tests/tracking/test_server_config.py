"""``ddhpose server`` checks its arguments before starting anything (one line, exit 2), and knows
the pins of the ``team`` extra it installs when missing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ddhpose.cli import main
from ddhpose.extras import extra_requirements
from ddhpose.tracking.server import ServerConfig, mlflow_server_command

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "0"], "--port must be in 1..65535, got 0"),
    (["--workers", "0"], "--workers must be in 1..64, got 0"),
    (["--backend-store-uri", "sqlite:///x.db"], "--backend-store-uri must be a postgresql://"),
])
def test_bad_arguments_are_one_line(args, message, capsys):
    assert main(["server", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ddhpose server: error: ") and message in err[0]


def test_port_in_use_is_refused_before_postgres_starts(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["server", "--port", str(port), "--data-dir", str(tmp_path / "srv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already in use" in err[0]
    assert not (tmp_path / "srv" / "postgres").exists()


def test_extra_pins_match_pyproject():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert extra_requirements("team") == data["project"]["optional-dependencies"]["team"]


def test_server_command_proxies_artifacts(tmp_path):
    cmd = mlflow_server_command(ServerConfig(data_dir=tmp_path, port=5123), "postgresql+psycopg://x")
    assert "--serve-artifacts" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert cmd[cmd.index("--workers") + 1] == "1"
