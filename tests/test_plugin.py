"""The pytest plugin (entry point `pytest11`) and how failures look in pytest's output."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

pytest_plugins = ["pytester"]

# numpy and the checker too: they load when a test first uses the fixture, not with pytest.
HEAVY = (
    "numpy",
    "gradproof._engine.check",
    "torch",
    "jax",
    "matplotlib",
    "dask",
    "distributed",
    "scipy",
)

PROBLEM = """
import numpy as np
import pytest
import gradproof

W = np.array([[1.0, -2.0], [0.5, 3.0]])


def loss(p):
    return float(np.sum(np.tanh(p["layer2.weight"]) ** 2))


def right(p):
    t = np.tanh(p["layer2.weight"])
    return {"layer2.weight": 2 * t * (1 - t ** 2)}


def wrong(p):
    g = right(p)["layer2.weight"].copy()
    g[1, 0] *= -1
    return {"layer2.weight": g}
"""


def test_the_entry_point_is_registered():
    points = importlib.metadata.entry_points(group="pytest11")
    assert "gradproof._pytest_plugin" in {p.value for p in points if p.name == "gradproof"}


def test_loading_the_plugin_imports_nothing_heavy():
    code = (
        "import sys, gradproof._pytest_plugin\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_fixture_passes_and_fails_with_the_report(pytester):
    pytester.makepyfile(
        PROBLEM
        + textwrap.dedent("""
        def test_right(gradcheck):
            report = gradcheck(loss, {"layer2.weight": W}, right)
            assert report.passed

        def test_wrong(gradcheck):
            gradcheck(loss, {"layer2.weight": W}, wrong)
        """)
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*gradproof: the gradient does not match*",
            "*gradient check: FAIL*",
            "*suspects (latest block first*layer2.weight*",
            "*layer2.weight[[]1, 0]*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_the_marker_sets_default_options(pytester):
    pytester.makepyfile(
        PROBLEM
        + textwrap.dedent("""
        @pytest.mark.gradcheck(eps=1e-6, scheme="central")
        def test_fixed_step_central(gradcheck):
            report = gradcheck(loss, {"layer2.weight": W}, right)
            assert report.scheme == "central" and report.eps == 1e-6

        @pytest.mark.gradcheck(eps=1e-6)
        def test_keywords_override(gradcheck):
            assert gradcheck(loss, {"layer2.weight": W}, right, eps=1e-5).eps == 1e-5
        """)
    )
    pytester.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=2)


def test_html_reports_of_failures(pytester):
    pytester.makepyfile(
        PROBLEM
        + textwrap.dedent("""
        def test_wrong(gradcheck):
            gradcheck(loss, {"layer2.weight": W}, wrong)
        """)
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradproof-html", "reports")
    result.assert_outcomes(failed=1)
    pages = list((pytester.path / "reports").glob("*.html"))
    assert len(pages) == 1 and "test_wrong" in pages[0].name
    assert "layer2.weight[1, 0]" in pages[0].read_text()
    result.stdout.fnmatch_lines(["*HTML report: *test_wrong*.html*"])


def test_assert_gradients_match_reads_well_in_pytest(pytester):
    pytester.makepyfile(
        PROBLEM
        + textwrap.dedent("""
        def test_wrong():
            gradproof.assert_gradients_match(loss, {"layer2.weight": W}, wrong)
        """)
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*gradproof.GradcheckError: gradient check: FAIL*",
            "E*block*shape*difference*status",
            "E*layer2.weight*fail (1 wrong)",
            "E*layer2.weight[[]1, 0] *",
        ]
    )
