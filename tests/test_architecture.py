"""The package's architecture, derived from the code itself (no torch import needed):

- every DVC stage's ``deps`` in dvc.yaml cover its whole import closure: the modules reachable
  from ``stages/<stage>.py``, imports inside functions and the packages' ``__init__`` included;
- every ``params`` key a stage's pipeline module reads is listed in the stage's ``params``;
- no import cycle inside the package (imports under ``if TYPE_CHECKING:`` excepted);
- the package root holds only the shared foundations (at most 8 modules).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ddhpose"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, here: str, is_package: bool) -> set[str]:
    """Dotted names imported anywhere in ``tree`` (functions included, TYPE_CHECKING excluded)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                found.add(f"{mod}.{alias.name}")
            found.add(mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@cache
def edges(module: str) -> frozenset[str]:
    """Package modules that ``module`` imports (an imported name that is not a module counts as
    its module)."""
    path = modules()[module] if module in modules() else REPO / f"{module.replace('.', '/')}.py"
    names = _imported_names(ast.parse(path.read_text(encoding="utf-8")), module,
                            path.name == "__init__.py")
    known = modules()
    out = set()
    for name in names:
        if not name.startswith("ddhpose"):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return frozenset(out)


def closure(start: str) -> set[str]:
    """Modules executed when ``start`` runs: its imports, transitively, with parent packages."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if
                    ".".join(parts[:i]) in modules())
        todo.extend(edges(m))
    return seen


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


STAGES = sorted(_dvc()["stages"])


def _dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_cover_its_import_closure(name):
    stage = _dvc()["stages"][name]
    script = re.search(r"stages/(\w+)\.py", stage["cmd"])
    assert script, f"stage {name}: cmd does not run a stages/*.py script"
    deps = _dep_paths(stage)
    entry = f"stages.{script.group(1)}"
    assert _covered(REPO / "stages" / f"{script.group(1)}.py", deps), \
        f"stage {name}: stages/{script.group(1)}.py is not in its deps"
    missing = sorted(modules()[m].relative_to(REPO).as_posix() for m in closure(entry)
                     if m in modules() and not _covered(modules()[m], deps))
    assert not missing, f"stage {name}: deps in dvc.yaml miss {', '.join(missing)}"


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
