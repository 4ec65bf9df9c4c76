"""The docs: built by mkdocs with warnings as errors, and their examples run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gradproof

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


@pytest.mark.slow
def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="needs gradproof[docs]")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").exists()


def test_the_nav_names_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(page.name for page in DOCS.glob("*.md"))
    assert {"benchmarks.md", "bench_torch.md", "bench_jax.md", "dask.md"} <= set(pages)
    for page in pages:
        assert f": {page}" in nav, page


def test_the_api_reference_names_every_public_name():
    api = (DOCS / "api.md").read_text()
    missing = [name for name in gradproof.__all__ if f"gradproof.{name}" not in api]
    assert missing == []


def test_the_api_reference_names_every_plot_function():
    plot = pytest.importorskip("gradproof.plot", reason="gradproof.plot needs matplotlib")
    section = (DOCS / "api.md").read_text().split("## Plots: `gradproof.plot`", 1)[1]
    section = section.split("\n## ", 1)[0]
    missing = [name for name in plot.__all__ if f"{name}(" not in section]
    assert missing == []


@pytest.mark.parametrize(
    "page", ["index.md", "tutorial.md", "frameworks.md", "modes.md", "reports.md", "complex.md"]
)
def test_the_examples_on_each_page_run(page, capsys):
    if page == "reports.md":
        pytest.importorskip("matplotlib", reason="the page plots")
    namespace: dict = {"__name__": f"docs_{page}"}
    blocks = [b for b in _python_blocks(page) if _framework(b) is None]
    assert blocks
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)


def _framework(block: str) -> str | None:
    """The optional framework an example imports (torch, jax), or None for the core's."""
    found = re.search(r"^\s*(?:import|from) (torch|jax)\b|gradproof\.(torch|jax)\b", block, re.M)
    return None if found is None else found.group(1) or found.group(2)


@pytest.mark.parametrize(("page", "framework"), [("complex.md", "torch")])
def test_the_framework_examples_on_each_page_run(page, framework, capsys):
    pytest.importorskip(framework, reason=f"the page's {framework} example needs {framework}")
    blocks = [b for b in _python_blocks(page) if _framework(b) == framework]
    assert blocks
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), {"__name__": f"docs_{page}"})


def test_the_pytest_page_example_passes(pytester):
    (example,) = _python_blocks("pytest.md")
    pytester.makepyfile(test_backprop=example)
    pytester.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=3)


def test_the_cli_page_example_exits_0(tmp_path, capsys):
    from gradproof._cli import main

    (example,) = _python_blocks("cli.md")
    (tmp_path / "model_check.py").write_text(example)
    assert main(["check", f"{tmp_path / 'model_check.py'}:problem"]) == 0
