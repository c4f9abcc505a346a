"""MLflow tracking against a real SQLite store: parent/child runs, the rank rule, outages."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ddhpose.config.schema import Params
from ddhpose.tracking import run_state as R
from ddhpose.tracking import tracker as T
from ddhpose.tracking.runs import stage_run

mlflow = pytest.importorskip("mlflow")
from demo_config import demo_params  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its schema takes seconds)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{db}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def env(monkeypatch, store):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.delenv("RANK", raising=False)
    return MlflowClient(tracking_uri=store)


def _params(**tracking) -> Params:
    p = demo_params()
    return dataclasses.replace(p, tracking=dataclasses.replace(p.tracking, **tracking))


def _run(stage: str, root: Path, params: Params | None = None) -> T.Tracker:
    with stage_run(stage, params or demo_params(), root) as tr:
        tr.log_metrics({"stage_rank": R.STAGE_RANKS[stage]})
    return tr


def _state(root: Path) -> dict:
    return json.loads((root / R.STATE_FILE).read_text())


def test_parent_child_params_metrics_artifacts(env, tmp_path, store):
    client = env
    art = tmp_path / "report.txt"
    art.write_text("hello")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a")
    params = demo_params()
    with stage_run("fetch_data", params, tmp_path) as tr:
        assert tr.mode == "mlflow"
        tr.log_params({"fetch.files": 2, "train.lr": 1e-3})  # same value as the flat param: ok
        tr.log_metrics({"loss": 0.5}, step=1)
        tr.log_metrics({"loss": 0.25}, step=2, also_parent=True)
        tr.set_tags({"note": "x"})
        tr.log_artifact(art)
        tr.log_artifacts(tmp_path / "plots", artifact_path="plots")
        with pytest.raises(ValueError, match="already logged"):
            tr.log_params({"fetch.files": 3})
        child_id, parent_id = tr.run_id, tr.parent_run_id
    child, parent = client.get_run(child_id), client.get_run(parent_id)
    flat = {k: str(v) for k, v in params.to_flat_dict().items()}
    assert parent.data.params == flat
    assert child.data.params == {**flat, "fetch.files": "2"}
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["mlflow.runName"] == "fetch_data"
    assert child.data.tags["note"] == "x" and parent.data.tags["dataset"] == "h36m"
    assert child.info.status == "FINISHED" and parent.info.status == "FINISHED"
    history = client.get_metric_history(child_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert parent.data.metrics == {"loss": 0.25}
    assert {a.path for a in client.list_artifacts(child_id)} == {"report.txt", "plots"}
    exp = client.get_experiment(child.info.experiment_id)
    assert exp.name == "ddhpose-h36m"
    db_dir = Path(store[len("sqlite:///"):]).parent
    assert exp.artifact_location == (db_dir / "mlartifacts" / "ddhpose-h36m").as_uri()
    assert (db_dir / "mlartifacts" / "ddhpose-h36m" / child_id / "artifacts" / "report.txt"
            ).read_text() == "hello"
    state = _state(tmp_path)
    assert state["parent_run_id"] == parent_id and state["last_rank"] == 0
    assert state["tracking_uri"] == store


def test_rank_rule_over_a_pipeline(env, tmp_path):
    client = env
    stages = list(R.STAGE_RANKS)
    runs = [_run(s, tmp_path) for s in stages]
    parent = runs[0].parent_run_id
    assert {r.parent_run_id for r in runs} == {parent}
    assert len({r.run_id for r in runs}) == len(stages)
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == sorted(stages)

    assert _run("evaluate", tmp_path).parent_run_id == parent  # evaluate alone joins
    assert _run("export_mat", tmp_path).parent_run_id == parent
    again = _run("train", tmp_path)  # re-executed from upstream: new parent
    assert again.parent_run_id != parent
    assert _run("sample", tmp_path).parent_run_id == again.parent_run_id
    assert _run("evaluate", tmp_path).parent_run_id == again.parent_run_id
    third = _run("preprocess", tmp_path)
    assert third.parent_run_id not in (parent, again.parent_run_id)
    assert _run("train", tmp_path).parent_run_id == third.parent_run_id  # 1 < 2: joins
    assert _state(tmp_path)["last_rank"] == 2


def test_failed_stage_and_deleted_parent(env, tmp_path):
    client = env
    with pytest.raises(RuntimeError, match="boom"), \
            stage_run("train", demo_params(), tmp_path) as tr:
        raise RuntimeError("boom")
    assert client.get_run(tr.run_id).info.status == "FAILED"
    assert client.get_run(tr.parent_run_id).info.status == "FAILED"
    assert "boom" in client.get_run(tr.run_id).data.tags["ddhpose.error"]
    nxt = _run("sample", tmp_path)
    assert nxt.parent_run_id == tr.parent_run_id
    assert client.get_run(nxt.parent_run_id).info.status == "FINISHED"
    client.delete_run(tr.parent_run_id)
    fresh = _run("evaluate", tmp_path)  # rank >= 3 with a deleted parent: creates one
    assert fresh.parent_run_id != tr.parent_run_id
    assert client.get_run(fresh.parent_run_id).info.lifecycle_stage == "active"


def test_changed_params_go_on_the_child(env, tmp_path):
    client = env
    first = _run("train", tmp_path)
    p = demo_params()
    changed = dataclasses.replace(p, eval=dataclasses.replace(p.eval, headline="p_agg"))
    tr = _run("evaluate", tmp_path, changed)
    assert tr.parent_run_id == first.parent_run_id
    assert client.get_run(tr.parent_run_id).data.params["eval.headline"] == "j_agg"
    child = client.get_run(tr.run_id)
    assert child.data.params["eval.headline"] == "p_agg"
    assert child.data.tags["ddhpose.params_changed"] == "eval.headline"


def test_experiment_per_dataset(env, tmp_path):
    client = env
    p = demo_params()
    p3 = dataclasses.replace(p, data=dataclasses.replace(p.data, dataset="3dhp"))
    a = _run("train", tmp_path, p)
    b = _run("sample", tmp_path, p3)  # other experiment: the stored parent is not usable
    assert b.parent_run_id != a.parent_run_id
    assert client.get_experiment(client.get_run(b.run_id).info.experiment_id).name == \
        "ddhpose-3dhp"


def test_dvc_lock_and_git_tags(env, tmp_path):
    client = env
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    (tmp_path / "f.txt").write_text("1")
    for cmd in (["init", "-q"], ["add", "f.txt"], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + cmd, cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  fetch_data:\n    cmd: a\n  preprocess:\n    cmd: b\n"
        "  train:\n    cmd: c\n")
    tr = _run("train", tmp_path)
    tags = client.get_run(tr.parent_run_id).data.tags
    assert tags["git.commit"] == head and tags["git.dirty"] == "false"
    assert set(k for k in tags if k.startswith("dvc.lock.")) == {"dvc.lock.fetch_data",
                                                                  "dvc.lock.preprocess"}
    assert len(tags["dvc.lock.fetch_data"]) == 12
    (tmp_path / "f.txt").write_text("2")
    tr2 = _run("train", tmp_path)
    assert client.get_run(tr2.parent_run_id).data.tags["git.dirty"] == "true"
    assert client.get_run(tr2.run_id).data.tags["git.commit"] == head


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_goes_offline_with_one_warning(monkeypatch, tmp_path, capfd):
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key in T.HTTP_ENV_DEFAULTS:  # recorded by monkeypatch, so restored after the test
        monkeypatch.setenv(key, "1")
        monkeypatch.delenv(key)
    monkeypatch.delenv("RANK", raising=False)
    with stage_run("train", demo_params(), tmp_path) as tr:
        for step in range(3):
            tr.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        tr.log_params({"extra": "x"})
        tr.set_tags({"t": "v"})
        (tmp_path / "a.txt").write_text("a")
        tr.log_artifact(tmp_path / "a.txt")
    assert tr.mode == "offline" and tr.run_id is None
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    ours = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ddhpose tracking")]
    assert len(ours) == 1 and uri in ours[0] and "warning" in ours[0]
    assert "Connection refused" in ours[0]
    lines = (tmp_path / "reports" / "tracking_offline" / "train.jsonl").read_text().splitlines()
    records = [json.loads(ln) for ln in lines]
    metrics = [(r["step"], r["data"]["loss"]) for r in records if r["event"] == "metrics"]
    assert metrics == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    events = [r["event"] for r in records]
    assert events[0] == "offline" and events[-1] == "end" and "artifact" in events
    assert any(r["event"] == "params" and r["data"].get("train.lr") == "0.001" for r in records)
    assert any(r["event"] == "tags" and r["data"] == {"t": "v"} for r in records)
    assert records[-1]["status"] == "FINISHED"


def test_bad_uri_and_failure_inside_offline_stage(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with pytest.raises(KeyError), stage_run("evaluate", demo_params(), tmp_path) as tr:
        tr.log_metrics({"a": 1})
        raise KeyError("x")
    err = capfd.readouterr().err
    assert err.count("ddhpose tracking: warning") == 1 and "nosuchscheme://nowhere" in err
    records = [json.loads(x) for x in
               (tmp_path / "reports/tracking_offline/evaluate.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "end" and records[-1]["status"] == "FAILED"


def test_disabled_tracking_is_offline_without_warning(monkeypatch, tmp_path, capfd, store):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    with stage_run("train", _params(enabled=False), tmp_path) as tr:
        tr.log_metrics({"loss": 1.0}, step=0)
    assert tr.mode == "offline"
    assert "warning" not in capfd.readouterr().err
    assert (tmp_path / "reports/tracking_offline/train.jsonl").is_file()
    assert not (tmp_path / R.STATE_FILE).exists()


def test_nonzero_ddp_rank_is_a_noop(monkeypatch, tmp_path, store):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("RANK", "1")
    with stage_run("train", demo_params(), tmp_path) as tr:
        tr.log_metrics({"loss": 1.0})
        tr.log_params({"a": 1})
        tr.log_artifact(tmp_path / "does-not-matter.txt")
    assert tr.mode == "noop" and tr.run_id is None
    assert list(tmp_path.iterdir()) == []


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'fit'"), \
            stage_run("fit", demo_params(), tmp_path):
        pass


@pytest.mark.parametrize(
    ("state", "rank", "alive", "new"),
    [
        (None, 3, False, True),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "1", "last_rank": 1},
         2, True, False),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "1", "last_rank": 2},
         2, True, True),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "1", "last_rank": 5},
         0, True, True),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "1", "last_rank": 5},
         4, True, False),
        ({"parent_run_id": "p", "tracking_uri": "other", "experiment_id": "1", "last_rank": 0},
         1, True, True),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "2", "last_rank": 0},
         1, True, True),
        ({"parent_run_id": "p", "tracking_uri": "u", "experiment_id": "1", "last_rank": 0},
         1, False, True),
        ({"parent_run_id": None, "tracking_uri": "u", "experiment_id": "1", "last_rank": 0},
         4, True, True),
    ],
)
def test_needs_new_parent_rule(state, rank, alive, new):
    assert R.needs_new_parent(state, "u", "1", rank, alive) is new


def test_default_uri_is_absolute_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert R.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert R.artifact_location(R.tracking_uri(tmp_path), "e") == \
        (tmp_path.resolve() / "mlartifacts" / "e").as_uri()
    assert R.artifact_location("http://127.0.0.1:5000", "e") is None
