"""The code each DVC stage depends on, derived from the imports: check or rewrite dvc.yaml.

A stage's ``deps`` in dvc.yaml must list every file whose change can change its outputs: its
script in ``stages/``, ``stages/python`` and every package module its script imports,
transitively (imports inside functions and the packages' ``__init__`` included; imports under
``if TYPE_CHECKING:`` excluded). The walk stops at the bookkeeping packages
(:data:`BOOKKEEPING`, ``ddhpose.tracking``): MLflow runs, offline records and the team server
never change a DVC output, so editing them reruns no stage (``dvc repro -f STAGE`` applies such a
change on purpose). Non-code deps (``data/processed``, ``models/best.pt`` ...) are kept as written.

The ``init_model`` stage's shape follows ``model.init`` in params.yaml (:func:`init_shape`): empty
(train from scratch) -> nothing more, so a finished project's ``dvc status`` is clean; a file ->
that file is a dep (marked ``# model.init``), so ``dvc status`` shows when its content changes; a
registry URI (``models:/``, ``runs:/``), which can move without any file changing ->
``always_changed: true``, the one case where ``dvc status`` always lists the stage.

``python -m ddhpose.pipeline.deps`` prints what differs (exit 1 when anything does);
``--write`` rewrites the ``deps`` lists of dvc.yaml in place, comments and everything else kept,
after saving the previous file to ``.ddhpose/previous/<UTC stamp>-dvc.yaml``.
tests/test_architecture.py runs the same check.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from functools import cache
from pathlib import Path

import yaml

from ddhpose.io import atomic_open
from ddhpose.project import REPO, utc_stamp

PACKAGE = "ddhpose"
INIT_STAGE = "init_model"
INIT_MARK = "# model.init"  # the comment that marks the init file's dep line
URI_PREFIXES = ("models:/", "runs:/")
BOOKKEEPING = ("ddhpose.tracking",)  # never in a stage's deps (module docstring)
_STAGE_SCRIPT = re.compile(r"stages/(\w+)\.py")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name -> file."""
    return {_module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, here: str, is_package: bool) -> set[str]:
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
            found.update(f"{mod}.{alias.name}" for alias in node.names)
            found.add(mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@cache
def edges(module: str, root: Path = REPO) -> frozenset[str]:
    """Package modules that ``module`` imports (an imported name that is not a module counts as
    its module). ``module`` may also be a script outside the package, e.g. ``stages.train``."""
    known = modules(root)
    path = known.get(module) or root / f"{module.replace('.', '/')}.py"
    names = imported_names(ast.parse(path.read_text(encoding="utf-8")), module,
                           path.name == "__init__.py")
    out = set()
    for name in names:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return frozenset(out)


def is_bookkeeping(module: str) -> bool:
    return any(module == b or module.startswith(b + ".") for b in BOOKKEEPING)


def closure(start: str, root: Path = REPO, *, stop_at_bookkeeping: bool = True) -> set[str]:
    """Modules executed when ``start`` runs: its imports, transitively, with parent packages;
    the bookkeeping packages excluded (and not walked) unless ``stop_at_bookkeeping`` is off."""
    known = modules(root)
    seen: set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        if m in seen or (stop_at_bookkeeping and is_bookkeeping(m)):
            continue
        seen.add(m)
        parts = m.split(".")
        todo.extend(p for i in range(1, len(parts)) if (p := ".".join(parts[:i])) in known)
        todo.extend(edges(m, root))
    return seen


def stage_script(cmd: str) -> str | None:
    """The ``stages/<name>.py`` script a stage command runs (its module name), or None."""
    m = _STAGE_SCRIPT.search(cmd)
    return None if m is None else f"stages.{m.group(1)}"


def code_deps(script: str, root: Path = REPO) -> list[str]:
    """The code files a stage running ``script`` (``stages.<name>``) depends on, in dvc.yaml's
    order: ``stages/python``, the script, then the package modules sorted by path."""
    known = modules(root)
    files = sorted(known[m].relative_to(root).as_posix() for m in closure(script, root)
                   if m in known)
    return ["stages/python", f"{script.replace('.', '/')}.py", *files]


def _is_code(dep: str) -> bool:
    """A dep this module writes: a code file (a folder such as ``ddhpose/model`` is a deliberate
    whole-package dep: kept as written, and it covers the modules below it)."""
    return dep.startswith((f"{PACKAGE}/", "stages/")) and (dep.endswith(".py")
                                                          or dep == "stages/python")


def _under(path: str, folders: list[str]) -> bool:
    return any(path.startswith(f.rstrip("/") + "/") for f in folders)


def _dep_path(dep: str | dict) -> str:
    return dep if isinstance(dep, str) else next(iter(dep))


def init_shape(init: str) -> tuple[str | None, bool]:
    """``(file dep, always_changed)`` the init_model stage needs for ``model.init`` = ``init``."""
    init = init.strip()
    if not init:
        return None, False
    if init.startswith(URI_PREFIXES):
        return None, True
    return os.path.expanduser(init), False


def _model_init(root: Path) -> str:
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    return str(((raw.get("model") or {}).get("init")) or "")


def init_stage_problem(root: Path = REPO, init: str | None = None) -> str | None:
    """Why dvc.yaml's init_model stage does not fit ``model.init`` (params.yaml's by default), in
    words; None when it fits or there is no such stage."""
    init = _model_init(root) if init is None else init
    stage = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"].get(
        INIT_STAGE)
    if stage is None:
        return None
    file, always = init_shape(init)
    have_always = bool(stage.get("always_changed", False))
    deps = [_dep_path(d) for d in stage.get("deps", [])]
    if always and not have_always:
        return (f"model.init {init!r} is a registry URI, which can move: the stage needs "
                "`always_changed: true`")
    if not always and have_always:
        return "model.init is not a registry URI: `always_changed: true` would rerun it always"
    if file is not None and file not in deps:
        return (f"model.init {init!r} is a file: the stage must list it in deps, or a change of "
                "its content would not rerun train")
    stale = [d for d in deps if not _is_code(d) and d != file and not d.startswith(PACKAGE)]
    if stale:
        return f"lists {', '.join(stale)}, which model.init no longer names"
    return None


def differences(root: Path = REPO) -> dict[str, tuple[list[str], list[str]]]:
    """``{stage: (missing, extra)}`` code deps of dvc.yaml, for the stages where either is
    non-empty; ``missing`` are imported but not listed, ``extra`` listed but not imported."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        script = stage_script(stage.get("cmd", ""))
        if script is None:
            continue
        deps = [_dep_path(d).rstrip("/") for d in stage.get("deps", [])]
        folders = [d for d in deps if d.startswith(f"{PACKAGE}/") and not _is_code(d)]
        listed = {d for d in deps if _is_code(d)}
        wanted = {d for d in code_deps(script, root) if not _under(d, folders)}
        missing, extra = sorted(wanted - listed), sorted(listed - wanted)
        if missing or extra:
            out[name] = (missing, extra)
    return out


def _in_block(lines: list[str], i: int) -> bool:
    """Line ``i`` belongs to the list under ``    deps:`` (an item, or a blank line inside it)."""
    nested = "      "
    return lines[i].startswith(nested) or (not lines[i].strip() and i + 1 < len(lines)
                                           and lines[i + 1].startswith(nested))


_ITEM = re.compile(r"^(\s+)- (\S+?)(:)?(\s+#.*)?$")


def rewrite(text: str, root: Path = REPO, init: str | None = None, *, code: bool = True) -> str:
    """dvc.yaml ``text`` with each stage's code deps replaced by :func:`code_deps` (in front of
    its other deps, which keep their lines and comments), and the init_model stage shaped for
    ``model.init`` (params.yaml's by default; :func:`init_shape`). ``code=False`` keeps the code
    deps as written and shapes the init_model stage only."""
    init_file, init_always = init_shape(_model_init(root) if init is None else init)
    stages = yaml.safe_load(text)["stages"]
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):\s*(#.*)?$", line)
        if m:
            stage = m.group(1)
        if stage == INIT_STAGE and re.match(r"^    always_changed:", line):
            i += 1  # written again below, where model.init asks for it
            continue
        if stage == INIT_STAGE and re.match(r"^    cmd:", line) and init_always:
            out.extend([line, "    always_changed: true  # model.init is a registry URI\n"])
            i += 1
            continue
        if stage in stages and re.match(r"^    deps:\s*(#.*)?$", line):
            out.append(line)
            i += 1
            kept: list[str] = []
            folders: list[str] = []
            indent = "      "
            while i < len(lines) and _in_block(lines, i):
                item = _ITEM.match(lines[i].rstrip("\n"))
                if item:
                    indent = item.group(1)
                if stage == INIT_STAGE and INIT_MARK in lines[i]:
                    pass  # the init file's dep: written again below
                elif not code or not (item and _is_code(item.group(2)) and not item.group(3)):
                    kept.append(lines[i])
                    if item and item.group(2).startswith(f"{PACKAGE}/"):
                        folders.append(item.group(2))
                i += 1
            script = stage_script(stages[stage].get("cmd", ""))
            if code and script is not None:
                out.extend(f"{indent}- {dep}\n" for dep in code_deps(script, root)
                           if not _under(dep, folders))
            if stage == INIT_STAGE and init_file is not None:
                out.append(f"{indent}- {init_file}  {INIT_MARK}\n")
            out.extend(kept)
            continue
        out.append(line)
        i += 1
    return "".join(out)


def shape_init_stage(root: Path) -> Path | None:
    """Shape dvc.yaml's init_model stage at ``root`` for its params.yaml's ``model.init`` (code
    deps untouched); the kept copy of the replaced dvc.yaml, or None when it already fits."""
    if init_stage_problem(root) is None:
        return None
    path = root / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    previous = _keep_previous(root, text)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(rewrite(text, root, code=False))
    return previous


def _keep_previous(root: Path, text: str) -> Path:
    previous = root / ".ddhpose" / "previous" / f"{utc_stamp()}-dvc.yaml"
    previous.parent.mkdir(parents=True, exist_ok=True)
    previous.write_text(text, encoding="utf-8")
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddhpose.pipeline.deps",
                                     description="Check (or --write) the code deps of dvc.yaml.")
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's deps lists")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="project root (default: %(default)s)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    diff = differences(root)
    problem = init_stage_problem(root)
    if problem:
        diff = {**diff, INIT_STAGE: diff.get(INIT_STAGE, ([], []))}
    if not args.write:
        if problem:
            print(f"{INIT_STAGE}: {problem}")
        for name, (missing, extra) in diff.items():
            for dep in missing:
                print(f"{name}: missing {dep}")
            for dep in extra:
                print(f"{name}: not imported {dep}")
        print("dvc.yaml deps: up to date" if not diff else f"dvc.yaml deps: {len(diff)} stage(s) "
              "differ; run `python -m ddhpose.pipeline.deps --write`")
        return 1 if diff else 0
    if not diff:
        print("dvc.yaml deps: up to date (nothing written)")
        return 0
    path = root / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    previous = _keep_previous(root, text)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(rewrite(text, root))
    print(f"{path}: deps of {', '.join(diff)} rewritten; previous version kept in {previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
