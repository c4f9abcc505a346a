"""params.yaml -> typed Params: the default file, strict validation, overrides, flat dict."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import yaml
from demo_config import demo_params

from ddhpose.config import apply as A
from ddhpose.config import schema as P
from ddhpose.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOOD_SHA = "ab" * 32


@pytest.fixture(scope="module")
def base() -> dict:
    """The default params as a nested plain dict (what params.yaml holds)."""
    return demo_params().to_dict()


def _set(d: dict, dotted: str, value) -> dict:
    d = copy.deepcopy(d)
    *parents, last = dotted.split(".")
    node = d
    for k in parents:
        node = node[k]
    node[last] = value
    return d


def _del(d: dict, dotted: str) -> dict:
    d = copy.deepcopy(d)
    *parents, last = dotted.split(".")
    node = d
    for k in parents:
        node = node[k]
    del node[last]
    return d


def test_repo_params_yaml_loads_and_is_complete():
    p = P.load_params(REPO / "params.yaml")
    assert p.data.dataset in P.DATASETS
    assert isinstance(p.train.lr, float) and isinstance(p.train.epochs, int)
    assert isinstance(p.data.subjects_train, tuple)
    # every key of the schema is in the file (nothing silently defaulted)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(P.SECTIONS)
    for name, typ in P.SECTIONS.items():
        assert set(raw[name]) == {f.name for f in P.dataclasses.fields(typ)}


def test_the_demo_defaults_are_the_documented_ones():
    """params.yaml holds the demo of the README (width 64, depth 3, F 27, H 5, K 2, S1 S5-S8 vs
    S9 S11): a change of a default must be a change of the README too."""
    p = demo_params()
    assert (p.model.width, p.model.depth, p.model.heads, p.model.frames) == (64, 3, 8, 27)
    assert (p.sample.hypotheses, p.sample.steps, p.eval.headline) == (5, 2, "j_agg")
    assert p.data.subjects_train == ("S1", "S5", "S6", "S7", "S8")
    assert p.data.subjects_test == ("S9", "S11") and p.data.actions == "*"
    assert p.train.lr == 1e-3 and p.train.checkpoint_every == 5 and p.train.grad_clip == 0.0


def test_rendered_schema_reproduces_params_yaml():
    """One set of defaults: params.yaml is exactly what the schema renders for its values."""
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    assert P.render_yaml(P.load_params(REPO / "params.yaml")) == text


def test_schema_and_library_configs_hold_no_values():
    """No dataclass default competes with params.yaml: every schema field (and the library
    configs' params-backed fields) is required."""
    import dataclasses

    from ddhpose.model import ModelConfig
    from ddhpose.synthetic.config import SyntheticConfig

    for typ in [*P.SECTIONS.values(), P.SyntheticParams]:
        for f in dataclasses.fields(typ):
            assert f.default is dataclasses.MISSING, f"{typ.__name__}.{f.name}"
            assert f.default_factory is dataclasses.MISSING, f"{typ.__name__}.{f.name}"
    model_keys = {f.name for f in dataclasses.fields(P.ModelParams)} | {"dataset"}
    for f in dataclasses.fields(ModelConfig):
        assert (f.default is dataclasses.MISSING) == (f.name in model_keys), f.name
    synthetic_keys = {f.name for f in dataclasses.fields(P.SyntheticParams)}
    for f in dataclasses.fields(SyntheticConfig):
        if f.name in synthetic_keys:
            assert f.default is dataclasses.MISSING, f.name


def test_render_round_trips(tmp_path):
    p = P.Params.from_dict(_set(_set(demo_params().to_dict(), "data.actions", ["Walk", "Sit"]),
                                "data.sha256", {"data_3d_h36m.npz": GOOD_SHA}))
    path = tmp_path / "params.yaml"
    A.write_params(p, path)
    assert P.load_params(path) == p
    text = path.read_text()
    assert "# AdamW initial learning rate" in text  # comments survive
    assert P.Params.from_dict(demo_params().to_dict()) == demo_params()


def test_ints_accepted_for_floats(base):
    p = P.Params.from_dict(_set(base, "train.lr_decay", 1))
    assert p.train.lr_decay == 1.0 and isinstance(p.train.lr_decay, float)


def test_yaml12_exponent_floats_and_ruamel_rewrite(tmp_path):
    """`dvc exp run --set-param train.lr=1e-4` (ruamel) writes `1e-4`: must read as a float."""
    from ruamel.yaml import YAML

    ry = YAML()
    data = ry.load((REPO / "params.yaml").read_text())
    data["train"]["lr"] = ry.load("1e-4")
    data["train"]["epochs"] = ry.load("2")
    buf = io.StringIO()
    ry.dump(data, buf)
    assert "lr: 1e-4" in buf.getvalue()
    path = tmp_path / "params.yaml"
    path.write_text(buf.getvalue())
    p = P.load_params(path)
    assert p.train.lr == pytest.approx(1e-4) and p.train.epochs == 2
    # but a quoted '1e-4' stays a string -> type error
    path.write_text(buf.getvalue().replace("lr: 1e-4", "lr: '1e-4'"))
    with pytest.raises(ConfigError, match=r"'train\.lr': expected a number, got a string"):
        P.load_params(path)


BAD_VALUES = [
    ("sample.hypotheses", 0, "must be >= 1, got 0"),
    ("sample.steps", 0, "must be >= 1"),
    ("sample.steps", 1001, "must be <= model.timesteps"),
    ("sample.dtype", "half", "must be one of auto|float32|float16|bfloat16"),
    ("sample.processes", 0, "must be auto or an integer >= 1, got 0"),
    ("sample.processes", "all", "must be auto or an integer >= 1, got 'all'"),
    ("sample.processes", True, "expected an integer or a word, got a boolean"),
    ("train.processes", 0, "must be auto or an integer >= 1, got 0"),
    ("train.processes", "all", "must be auto or an integer >= 1, got 'all'"),
    ("train.amp", "fp8", "must be one of off|fp16|bf16|auto (or true = auto, false = off)"),
    ("train.amp", "on", "must be one of off|fp16|bf16|auto"),
    ("model.frames", 0, "must be >= 1"),
    ("model.width", 60, "divisible by model.heads"),
    ("model.drop_path", 1.0, "must be in [0, 1)"),
    ("model.xc_layout", "flat", "reference|transpose"),
    ("train.lr", -1e-4, "must be > 0"),
    ("train.lr_decay", 1.5, "must be in (0, 1]"),
    ("train.device", "gpu", "auto|cpu|cuda|cuda:N"),
    ("train.epochs", -1, "must be >= 0"),
    ("train.epochs", 0, "0 (evaluate only) needs model.init"),
    ("model.init", "s3://bucket/x.pt", "must be '', a checkpoint path, models:/"),
    ("data.dataset", "humaneva", "h36m|3dhp"),
    ("data.source", "ftp", "synthetic|local|url"),
    ("data.keypoints", "../x", "non-empty name"),
    ("data.subjects_test", ["S9", "S1"], "must not overlap"),
    ("data.subjects_train", [], "must list >= 1 subject"),
    ("data.subjects_train", ["S1", "S1"], "duplicate"),
    ("data.actions", "Walking", "'*' or a list"),
    ("data.synthetic.outlier_rate", 1.5, "must be in [0, 1]"),
    ("data.synthetic.frames", 1, "must be >= 2"),
    ("data.sha256", {"data_3d_h36m.npz": "xyz"}, "64 hex digits"),
    ("eval.headline", "best", "j_best_oracle|p_best_oracle|p_agg|j_agg"),
    ("eval.headline", "p_best", "now called 'p_best_oracle'"),
    ("eval.render_clips", -1, "must be >= 0"),
    ("tracking.experiment_prefix", "", "non-empty name"),
]

BAD_TYPES = [
    ("train.epochs", True, "expected an integer, got a boolean"),
    ("train.epochs", 2.5, "expected an integer"),
    ("train.epochs", "8", "expected an integer, got a string"),
    ("train.lr", "0.0001", "expected a number, got a string"),
    ("train.lr", True, "expected a number, got a boolean"),
    ("train.lr", float("nan"), "must be finite"),
    ("train.amp", 1, "expected a mode name or true/false"),
    ("train.tf32", "yes", "expected true or false"),
    ("sample.tf32", 0, "expected true or false"),
    ("data.path", None, "expected a string, got null"),
    ("data.subjects_train", "S1,S5", "expected a list of strings"),
    ("data.subjects_train", ["S1", 5], "item 1"),
    ("data.synthetic", 3, "expected a mapping"),
]


@pytest.mark.parametrize(("key", "value", "problem"), BAD_VALUES + BAD_TYPES)
def test_bad_value_names_the_key(base, key, value, problem):
    with pytest.raises(ConfigError) as err:
        P.Params.from_dict(_set(base, key, value))
    msg = str(err.value)
    assert f"params key '{key}" in msg, msg
    assert problem in msg, msg
    assert "\n" not in msg


def test_exact_message_format(base):
    with pytest.raises(ConfigError) as err:
        P.Params.from_dict(_set(base, "sample.hypotheses", 0))
    assert str(err.value) == "params key 'sample.hypotheses': must be >= 1, got 0"
    assert err.value.key == "sample.hypotheses"


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda d: _set(d, "train.epoch", 3), "train.epoch", "unknown key"),
        (lambda d: _set(d, "extra", {}), "extra", "unknown key"),
        (lambda d: _set(d, "data.synthetic.speed", 1), "data.synthetic.speed", "unknown key"),
        (lambda d: _del(d, "eval"), "eval", "missing section"),
        (lambda d: _del(d, "model.depth"), "model.depth", "missing key"),
        (lambda d: _set(_set(d, "data.source", "url"), "data.url", ""), "data.url", "required"),
        (lambda d: _set(_set(d, "data.source", "url"), "data.url", "http://x"), "data.sha256",
         "required"),
        (lambda d: _set(d, "data.source", "local"), "data.path", "required"),
        (lambda d: _set(d, "data.sha256", {"../x.npz": GOOD_SHA}), "data.sha256.../x.npz",
         "relative paths"),
    ],
)
def test_structure_errors(base, mutate, key, problem):
    with pytest.raises(ConfigError) as err:
        P.Params.from_dict(mutate(base))
    assert err.value.key == key and problem in str(err.value)


def test_valid_url_and_local_sources(base):
    d = _set(_set(base, "data.source", "url"), "data.url", "https://example.org/h36m")
    p = P.Params.from_dict(_set(d, "data.sha256", {"data_3d_h36m.npz": GOOD_SHA.upper()}))
    assert p.data.sha256 == {"data_3d_h36m.npz": GOOD_SHA}  # normalised to lower case
    p = P.Params.from_dict(_set(_set(base, "data.source", "local"), "data.path", "/x"))
    assert p.data.path == "/x"


def test_frames_17_is_allowed(base):
    assert P.Params.from_dict(_set(base, "model.frames", 17)).model.frames == 17


def test_malformed_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  dataset: h36m\n   source: x\n")
    with pytest.raises(ConfigError) as err:
        P.load_params(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: malformed YAML at line 3") and "\n" not in msg
    bad.write_text("train:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        P.load_params(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections, got a list"):
        P.load_params(bad)
    with pytest.raises(ConfigError, match="cannot read file"):
        P.load_params(tmp_path / "absent.yaml")


def test_load_error_names_the_file_and_key(tmp_path, base):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_set(base, "sample.steps", 0)))
    with pytest.raises(ConfigError) as err:
        P.load_params(path)
    assert err.value.key == "sample.steps" and str(path) in str(err.value)


def test_flat_dict(base):
    flat = P.Params.from_dict(
        _set(base, "data.sha256", {"data_3d_h36m.npz": GOOD_SHA})).to_flat_dict()
    assert flat["train.lr"] == 1e-3
    assert flat["model.width"] == 64
    assert flat["data.synthetic.jitter_px"] == 3.0
    assert flat["data.subjects_train"] == "S1,S5,S6,S7,S8"
    assert flat["data.sha256.data_3d_h36m.npz"] == GOOD_SHA
    assert flat["tracking.enabled"] is True
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_params_are_frozen():
    p = demo_params()
    with pytest.raises(P.dataclasses.FrozenInstanceError):
        p.train.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("config", "checks"),
    [
        ("paper_h36m_cpn.yaml", {"model.width": 512, "model.depth": 8, "model.frames": 243,
                                 "train.epochs": 400, "train.lr": 1e-4,
                                 "train.batch_clips": 4, "data.source": "local",
                                 "data.keypoints": "cpn_ft_h36m_dbb", "sample.hypotheses": 20,
                                 "sample.steps": 10, "data.dataset": "h36m"}),
        ("paper_3dhp.yaml", {"data.dataset": "3dhp", "model.frames": 243,
                             "sample.hypotheses": 5, "sample.steps": 1,
                             "sample.batch_clips": 2}),
    ],
)
def test_paper_configs_apply(tmp_path, config, checks):
    base_path = tmp_path / "params.yaml"
    base_path.write_text((REPO / "params.yaml").read_text())
    out = tmp_path / "out.yaml"
    p = A.apply_overrides(base_path, REPO / "configs" / config, out)
    flat = P.load_params(out).to_flat_dict()
    assert P.load_params(out) == p
    for key, value in checks.items():
        assert flat[key] == value, key
    # untouched keys keep the base value; the override files hold only overridden keys
    assert flat["train.w_len"] == P.load_params(base_path).train.w_len
    override = yaml.safe_load((REPO / "configs" / config).read_text())
    assert "tracking" not in override


def test_apply_cli_rewrites_in_place_and_refuses_bad_override(tmp_path, capsys):
    base_path = tmp_path / "params.yaml"
    base_path.write_text((REPO / "params.yaml").read_text())
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 2\ndata:\n  synthetic:\n    frames: 50\n")
    original = base_path.read_text()
    assert A.main(["apply", str(good), "--base", str(base_path)]) == 0
    kept = list((tmp_path / ".ddhpose" / "params-previous").iterdir())
    assert len(kept) == 1 and kept[0].read_text() == original  # the replaced file is kept
    assert str(kept[0]) in capsys.readouterr().out
    p = P.load_params(base_path)
    assert p.train.epochs == 2 and p.data.synthetic.frames == 50
    assert p.data.synthetic.seed == demo_params().data.synthetic.seed  # deep merge, not replace
    before = base_path.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample:\n  hypotheses: 0\n")
    assert A.main(["apply", str(bad), "--base", str(base_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'sample.hypotheses': must be >= 1, got 0" in err
    assert base_path.read_text() == before  # untouched on failure
    assert not [f for f in tmp_path.iterdir()
                if f.name.startswith(".") and f.name != ".ddhpose"]  # no temp left
    assert A.main(["check", str(base_path)]) == 0


@pytest.mark.parametrize(("key", "value"), [
    ("train.amp", True), ("train.amp", False), ("train.amp", "auto"), ("train.amp", "bf16"),
    ("train.amp", "fp16"), ("train.amp", "off"), ("train.tf32", False),
    ("sample.dtype", "auto"), ("sample.dtype", "float16"), ("sample.tf32", False),
    ("sample.processes", "auto"), ("sample.processes", 2),
    ("train.processes", "auto"), ("train.processes", 2),
])
def test_precision_options_are_accepted(base, key, value):
    p = P.Params.from_dict(_set(base, key, value))
    section, name = key.split(".")
    assert getattr(getattr(p, section), name) == value


def test_yaml_off_and_on_spellings_of_amp_are_the_booleans(tmp_path):
    """Unquoted ``off``/``on`` are YAML booleans: they mean off and auto."""
    from ddhpose.model.precision import amp_mode
    from ddhpose.training.config import trajectory_changes

    for spelling, mode in (("off", "off"), ("on", "auto"), ("'off'", "off"), ("auto", "auto")):
        text = (REPO / "params.yaml").read_text(encoding="utf-8")
        path = tmp_path / "params.yaml"
        path.write_text(text.replace("  amp: 'off'", f"  amp: {spelling}"), encoding="utf-8")
        assert amp_mode(P.load_params(path).train.amp) == mode
    # a run stored with the old boolean resumes under the equivalent mode name
    assert trajectory_changes({"amp": True, "lr": 1e-3}, {"amp": "auto", "lr": 1e-3}) == []
    assert trajectory_changes({"amp": False}, {"amp": "off"}) == []
    assert trajectory_changes({"amp": False}, {"amp": "bf16"}) == ["amp"]
