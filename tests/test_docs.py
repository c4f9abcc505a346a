"""Statements the project makes about itself stay true: every ``tests/…``, ``docs/…`` and
``reports/…`` path named in the code, the README and docs/ exists (or, for ``reports/…``, is a
pipeline output that git ignores); every relative link in README.md and docs/ (and examples/)
points to an existing file and, with ``#anchor``, to an existing heading; every
``docs/<page>.md "Heading"`` citation names a heading of that page."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
               *(REPO / "examples").glob("*.md")])
SOURCES = sorted([*(REPO / "ddhpose").rglob("*.py"), *(REPO / "stages").glob("*"),
                  *(REPO / "tests").rglob("*.py"), REPO / "dvc.yaml", REPO / "params.yaml",
                  REPO / "Makefile", *(REPO / "configs").glob("*.yaml"), *DOCS])
SOURCES.remove(Path(__file__).resolve())  # its own examples of missing paths
_PATH = re.compile(r"(?<![\w/.-])((?:tests|docs|reports)/[A-Za-z0-9_./{},*<>-]*[A-Za-z0-9_/])")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CITE = re.compile(r"(docs/[\w-]+\.md) \"([^\"]+)\"")


def _one_line(title: str) -> str:
    """A cited title that a comment or docstring wrapped over lines, on one line."""
    return re.sub(r"\s*\n\s*(#\s*)?", " ", title).strip()


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@cache
def _ignored(rel: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=REPO)
    return done.returncode == 0


def _exists(rel: str) -> bool:
    if any(c in rel for c in "{}*<>"):  # a pattern: its fixed prefix must exist
        rel = re.split(r"[{}*<>]", rel, maxsplit=1)[0].rstrip("/._-")
        return bool(list(REPO.glob(rel + "*"))) or _ignored(rel) or _ignored(rel + "/x")
    rel = rel.rstrip("/")
    if (REPO / rel).exists():
        return True
    if rel.startswith("reports/"):
        return _ignored(rel) or _ignored(rel + "/x")
    return False


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def headings(page: Path) -> tuple[list[str], list[str]]:
    """(heading texts, their anchors) of a markdown page, outside code fences."""
    texts, fence = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            texts.append(m.group(1))
    return texts, [slug(t) for t in texts]


@pytest.mark.parametrize("source", SOURCES, ids=_rel)
def test_named_paths_exist(source):
    text = source.read_text(encoding="utf-8", errors="replace")
    missing = sorted({p for p in _PATH.findall(text)
                      if not _exists(p) and not p.startswith("tests/fixtures")})
    assert not missing, f"{_rel(source)} names paths that do not exist: {', '.join(missing)}"


@pytest.mark.parametrize("page", DOCS, ids=_rel)
def test_relative_links_resolve(page):
    bad = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: followed by an outside check
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in headings(dest)[1]:
            bad.append(f"{target} (no heading with that anchor in {_rel(dest)})")
    assert not bad, f"{_rel(page)}: broken links: {'; '.join(bad)}"


@pytest.mark.parametrize("source", SOURCES, ids=_rel)
def test_cited_headings_exist(source):
    text = source.read_text(encoding="utf-8", errors="replace")
    bad = [f'{page} "{_one_line(title)}"' for page, title in _CITE.findall(text)
           if not (REPO / page).is_file() or _one_line(title) not in headings(REPO / page)[0]]
    assert not bad, f"{_rel(source)} cites headings that do not exist: {', '.join(bad)}"


def test_the_link_check_can_fail(tmp_path):
    assert slug("Set-up: two commands") == "set-up-two-commands"
    assert not _exists("docs/" + "no-such-page.md")
    assert not _exists("tests/" + "test_no_such_file.py")
    assert _one_line("Quirks:\n    # unused") == "Quirks: unused"
