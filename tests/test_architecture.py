"""The package's architecture, derived from the code itself (no torch import needed):

- every DVC stage's code ``deps`` in dvc.yaml are exactly its import closure, up to the
  bookkeeping packages (:mod:`ddhpose.pipeline.deps`, which ``--write`` regenerates them):
  nothing missing, nothing listed that is no longer imported;
- every ``params`` key a stage's pipeline module reads is listed in the stage's ``params``;
- layers: no module imports from a higher layer (:data:`LAYERS`); the core (model, data,
  synthetic, evaluation, training, inference) imports none of config, pipeline, tracking,
  registry; mlflow is imported only under tracking/ and registry/; the bookkeeping package
  tracking/ imports only config, io, errors and project, and no stage reaches it except through
  the runner (and the registry);
- no import cycle inside the package (imports under ``if TYPE_CHECKING:`` excepted);
- the package root holds only the shared foundations (at most 8 modules).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from ddhpose.pipeline.deps import (
    closure,
    code_deps,
    differences,
    edges,
    imported_names,
    is_bookkeeping,
    modules,
    stage_script,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ddhpose"


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


STAGES = sorted(_dvc()["stages"])


def _dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_are_its_import_closure(name):
    stage = _dvc()["stages"][name]
    script = stage_script(stage["cmd"])
    assert script, f"stage {name}: cmd does not run a stages/*.py script"
    deps = _dep_paths(stage)
    missing = [d for d in code_deps(script) if not _covered(REPO / d, deps)]
    assert not missing, (f"stage {name}: deps in dvc.yaml miss {', '.join(missing)} "
                         "(python -m ddhpose.pipeline.deps --write)")
    extra = differences().get(name, ([], []))[1]
    assert not extra, (f"stage {name}: dvc.yaml lists {', '.join(extra)}, which it no longer "
                       "imports (python -m ddhpose.pipeline.deps --write)")


def test_deps_generator_restores_a_missing_and_drops_an_extra_dep(tmp_path):
    from ddhpose.pipeline.deps import rewrite

    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    broken = text.replace("      - ddhpose/pipeline/sample.py\n", "", 1)
    broken = broken.replace("      - ddhpose/pipeline/export_mat.py\n",
                            "      - ddhpose/pipeline/export_mat.py\n      - ddhpose/cli.py\n", 1)
    assert broken != text
    assert rewrite(broken) == text


def _params_read(module: str) -> set[str]:
    """Params keys a pipeline module reads: ``params.<section>.<key>`` (also through an alias
    ``x = params.<section>``) -> the key; a section used whole (passed on, ``vars()``) -> the
    section, which then needs every one of its keys."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    alias: dict[str, str] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "params"):
            alias[node.targets[0].id] = node.value.attr
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "params":
                section, up = node.attr, parent.get(node)
            elif node.value.id in alias:
                keys.add(f"{alias[node.value.id]}.{node.attr}")
                continue
            else:
                continue
            if section in {"to_dict", "to_flat_dict"}:
                continue
            if isinstance(up, ast.Attribute) and up.value is node:
                keys.add(f"{section}.{up.attr}")
            elif not (isinstance(up, ast.Assign) and isinstance(up.targets[0], ast.Name)
                      and up.targets[0].id in alias):
                keys.add(section)
        elif (isinstance(node, ast.Name) and node.id in alias and isinstance(node.ctx, ast.Load)
              and not isinstance(parent.get(node), ast.Attribute)):
            keys.add(alias[node.id])
    return keys


def _section_keys() -> dict[str, set[str]]:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return {name: {f"{name}.{k}" for k in section} for name, section in raw.items()}


def _stage_params(stage: dict) -> set[str]:
    out = set()
    for p in stage.get("params", []):
        out.update([p] if isinstance(p, str) else (k for v in p.values() for k in v))
    return out


@pytest.mark.parametrize("name", STAGES)
def test_stage_params_cover_the_keys_it_reads(name):
    stage = _dvc()["stages"][name]
    script = re.search(r"stages/(\w+)\.py", stage["cmd"]).group(1)
    text = (REPO / "stages" / f"{script}.py").read_text(encoding="utf-8")
    module = re.search(r"from (ddhpose\.pipeline\.\w+) import run\b", text).group(1)
    listed = _stage_params(stage)
    sections = _section_keys()
    wanted = set()
    for key in _params_read(module):
        wanted.update(sections.get(key, {key}))
    missing = sorted(k for k in wanted if k not in listed and k.split(".")[0] not in listed)
    assert not missing, f"stage {name}: reads params {', '.join(missing)} not listed in dvc.yaml"


def test_no_import_cycles():
    graph = {m: edges(m) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_package_root_holds_only_foundations():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 8, f"{len(root)} modules at the package root: {root}"


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_runs_under_the_project_interpreter(name):
    """`.venv/bin/dvc repro` must work without the venv on PATH: stages go through stages/python."""
    cmd = _dvc()["stages"][name]["cmd"]
    assert re.fullmatch(r"sh stages/python stages/\w+\.py", cmd), f"stage {name}: cmd {cmd!r}"


# --- layers ---------------------------------------------------------------------------------------

#: the layer of each package (and root module): a module may import only from its own layer or
#: below. ``__main__`` modules are entry points and exempt.
LAYERS = {
    "ddhpose": 0, "ddhpose.errors": 0, "ddhpose.io": 0, "ddhpose.skeleton": 0,
    "ddhpose.camera": 0, "ddhpose.keypoints": 0, "ddhpose.project": 0,
    "ddhpose.data": 1, "ddhpose.model": 1,
    "ddhpose.synthetic": 2, "ddhpose.evaluation": 2,
    "ddhpose.training": 3, "ddhpose.inference": 3,
    "ddhpose.config": 4, "ddhpose.deploy": 4,
    "ddhpose.tracking": 5,
    "ddhpose.registry": 6, "ddhpose.bench": 6,
    "ddhpose.pipeline": 7,
    "ddhpose.commands": 8,
    "ddhpose.cli": 9,
}
CORE = ("data", "model", "synthetic", "evaluation", "training", "inference")
ORCHESTRATION = ("config", "pipeline", "tracking", "registry")


def _layer_of(module: str) -> tuple[str, int]:
    name = module
    while name not in LAYERS:
        name = name.rpartition(".")[0]
        assert name, f"{module}: in no layer of LAYERS (add its package there)"
    return name, LAYERS[name]


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == f"ddhpose.{p}" or module.startswith(f"ddhpose.{p}.") for p in packages)


def upward_imports(edges_of=edges) -> list[str]:
    out = []
    for m in modules():
        if m.endswith(".__main__"):
            continue
        here, rank = _layer_of(m)
        for e in sorted(edges_of(m)):
            there, up = _layer_of(e)
            if up > rank:
                out.append(f"{m} (layer {here}) imports {e} (layer {there}, above it)")
    return out


def test_no_module_imports_from_a_higher_layer():
    found = upward_imports()
    assert not found, "upward imports: " + "; ".join(found)


def test_core_imports_no_orchestration():
    found = [f"{m} imports {e}" for m in modules() if _in(m, CORE)
             for e in sorted(edges(m)) if _in(e, ORCHESTRATION)]
    assert not found, "the core imports orchestration: " + "; ".join(found)


def _third_party_imports(module: str) -> set[str]:
    path = modules()[module]
    names = imported_names(ast.parse(path.read_text(encoding="utf-8")), module,
                           path.name == "__init__.py")
    return {n.split(".")[0] for n in names if n}


def test_mlflow_is_imported_only_under_tracking_and_registry():
    found = sorted(m for m in modules() if "mlflow" in _third_party_imports(m)
                   and not _in(m, ("tracking", "registry")))
    assert not found, f"mlflow imported outside tracking/ and registry/: {', '.join(found)}"


def test_bookkeeping_imports_only_config_io_errors_project():
    allowed = ("ddhpose.config", "ddhpose.io", "ddhpose.errors", "ddhpose.project",
               "ddhpose.tracking")
    found = [f"{m} imports {e}" for m in modules() if is_bookkeeping(m)
             for e in sorted(edges(m))
             if e != "ddhpose" and not any(e == a or e.startswith(a + ".") for a in allowed)]
    assert not found, "tracking/ imports beyond config, io, errors, project: " + "; ".join(found)


#: the only modules of a stage's closure that may import tracking/: the runner's narrow
#: interface (the stage's MLflow run) and the registry (registration's offline fallback)
BOOKKEEPING_GATES = ("ddhpose.pipeline.runner", "ddhpose.registry")


@pytest.mark.parametrize("name", STAGES)
def test_a_stage_reaches_bookkeeping_only_through_the_runner(name):
    script = stage_script(_dvc()["stages"][name]["cmd"])
    found = [f"{m} imports {e}" for m in sorted(closure(script))
             for e in sorted(edges(m)) if is_bookkeeping(e)
             and not any(m == g or m.startswith(g + ".") for g in BOOKKEEPING_GATES)]
    assert not found, f"stage {name}: " + "; ".join(found)


def test_the_layer_test_fails_on_an_upward_import():
    """The check can fail: a core module that imported the pipeline would be reported."""

    def with_upward(module: str) -> frozenset[str]:
        extra = {"ddhpose.pipeline.runner"} if module == "ddhpose.model.losses" else set()
        return edges(module) | extra

    assert upward_imports(with_upward) == [
        "ddhpose.model.losses (layer ddhpose.model) imports ddhpose.pipeline.runner "
        "(layer ddhpose.pipeline, above it)"]


# --- the init_model stage follows model.init ------------------------------------------------------


@pytest.mark.parametrize(("init", "dep", "always"), [
    ("", None, None),
    ("checkpoints/best_epoch.bin", "checkpoints/best_epoch.bin", None),
    ("models:/ddhpose-h36m@champion", None, True),
    ("runs:/0123abcd/checkpoint.pt", None, True),
])
def test_init_stage_shape_follows_model_init(init, dep, always):
    from ddhpose.pipeline.deps import INIT_STAGE, rewrite

    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    shaped = rewrite(text, init=init)
    stage = yaml.safe_load(shaped)["stages"][INIT_STAGE]
    assert stage.get("always_changed") is always
    assert (dep in stage["deps"]) if dep else all(d.startswith(("ddhpose/", "stages/"))
                                                  for d in stage["deps"])
    assert rewrite(shaped, init=init) == shaped  # stable
    assert rewrite(shaped, init="") == text  # back to the shipped default


def test_shipped_init_stage_fits_the_default_params():
    from ddhpose.pipeline.deps import init_stage_problem

    assert init_stage_problem() is None
    assert "always_changed" in init_stage_problem(init="models:/m@champion")
    assert "must list it in deps" in init_stage_problem(init="ckpt.pt")
