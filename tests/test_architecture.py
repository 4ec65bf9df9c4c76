"""The layout holds: no import cycle through the engine, small modules, words a user knows.

The dependency rule itself (what may import what) is import-linter's contracts in
pyproject.toml, run by `lint-imports` in .ci/run; docs/architecture.md explains it.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "gradproof"
MODULE_LINES = 400  # "no module over ~400 lines"
FUNCTION_LINES = 60  # "no function over ~60 lines of code", docstrings and comments aside
# A cycle may join the report and its renderers (Report's presentation methods call them
# lazily; the HTML renderer embeds plots), and nothing else.
CYCLE_MAY_JOIN = re.compile(r"^gradproof\.(_report|_render(\..+)?|plot(\..+)?)$")


def import_graph() -> dict[str, set[str]]:
    """Every import inside gradproof, at module level or in a function; TYPE_CHECKING aside."""
    grimp = pytest.importorskip(
        "grimp", reason="grimp comes with import-linter in the dev extra: pip install -e '.[dev]'"
    )
    graph = grimp.build_graph("gradproof", exclude_type_checking_imports=True)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_reaches_the_engine_an_adapter_or_the_cli():
    for component in cycles(import_graph()):
        outside = sorted(m for m in component if not CYCLE_MAY_JOIN.match(m))
        assert not outside, f"an import cycle joins {sorted(component)}"


def source_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= MODULE_LINES, f"{path.name} has {len(lines)} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            size = code_lines(node, lines)
            assert size <= FUNCTION_LINES, f"{path.name}: {node.name} has {size} lines of code"


def code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of the body holding code: no docstring, blank line or comment."""
    counted: set[int] = set()
    for statement in function.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring
        end = statement.end_lineno or statement.lineno
        for number in range(statement.lineno, end + 1):
            stripped = lines[number - 1].strip()
            if stripped and not stripped.startswith("#"):
                counted.add(number)
    return len(counted)


def prose_files() -> list[Path]:
    return [*source_files(), *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


# "the seeds" is the project's own word for the documents it started from; users know
# the Gradient Checking notebook. A random seed (seed=0, "seeds every random choice") is fine.
JARGON = re.compile(r"\bseeds'|\bthe seeds\b|\bseeds? (notebook|network|numbers?|method)\b", re.I)
TRACKER = re.compile(r"\bissues? #?\d+\b|\btracker #?\d+\b", re.I)


@pytest.mark.parametrize("path", prose_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_speaks_a_users_words(path):
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        assert not JARGON.search(line), f"{path.name}:{number}: {line.strip()}"
        if path.suffix == ".py":
            assert not TRACKER.search(line), f"{path.name}:{number}: a tracker number"


def test_the_jargon_and_tracker_patterns_catch_what_they_should():
    assert JARGON.search("the seeds' rule of thumb") and JARGON.search("As in the seeds, tol")
    assert not JARGON.search("seed: seeds every random choice")
    assert TRACKER.search("# Issue 7 (Dask)") and TRACKER.search("see issue #4")
    assert not TRACKER.search('color: "#555"; the issue is a kink')
