"""The pytest plugin (entry point `pytest11`) and how failures look in pytest's output."""

from __future__ import annotations

import importlib.metadata
import re
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


def test_every_failing_report_gets_its_own_file(pytester):
    # Three ids that one "safe" file name would merge: each report keeps its own page.
    pytester.makepyfile(
        PROBLEM
        + textwrap.dedent("""
        @pytest.mark.parametrize("label", ["a/b", "a?b", "a b"])
        def test_wrong(gradcheck, label):
            name = "block" + str("/? ".index(label[1]))  # block0, block1, block2

            def named_loss(p):
                return loss({"layer2.weight": p[name]})

            def named_wrong(p):
                return {name: wrong({"layer2.weight": p[name]})["layer2.weight"]}

            gradcheck(named_loss, {name: W}, named_wrong)
        """)
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradproof-html", "reports")
    result.assert_outcomes(failed=3)
    from gradproof._pytest_plugin import report_file_name

    module = "test_every_failing_report_gets_its_own_file.py"
    ids = [f"{module}::test_wrong[{label}]" for label in ("a/b", "a?b", "a b")]
    names = [report_file_name(nodeid) for nodeid in ids]
    assert len(set(names)) == 3
    assert all(n.startswith(f"{module}_test_wrong_a_b-") for n in names)
    assert sorted(p.name for p in (pytester.path / "reports").glob("*.html")) == sorted(names)
    # Only the failure sections: where CI is set, pytest repeats whole messages in its summary.
    out = result.stdout.str().split("short test summary info")[0]
    headers = re.findall(r"_{3,} (test_wrong\[.*?\]) _{3,}", out)
    pointed = re.findall(r"HTML report: (\S+)", out)
    assert headers == ["test_wrong[a/b]", "test_wrong[a?b]", "test_wrong[a b]"]
    assert pointed == [f"reports/{name}" for name in names]  # each failure, its own page
    for number, name in enumerate(names):
        page = (pytester.path / "reports" / name).read_text()
        others = [f"block{n}" for n in range(3) if n != number]
        assert f"block{number}[1, 0]" in page and not any(o in page for o in others)


def test_report_file_names_are_safe_readable_and_distinct():
    from gradproof._pytest_plugin import report_file_name

    ids = ["t.py::test[a/b]", "t.py::test[a?b]", "t.py::test[a b]", "t.py::test[a_b]"]
    names = [report_file_name(i) for i in ids]
    assert len(set(names)) == 4
    assert all(re.fullmatch(r"t\.py_test_a_b-[0-9a-f]{8}\.html", n) for n in names)
    long = report_file_name("t.py::test[" + "x" * 500 + "]")
    assert len(long) <= 80 + len("-12345678.html")
    assert report_file_name("t.py::test[a/b]", 2) == names[0].replace(".html", "-2.html")
    assert report_file_name("../../etc/passwd").startswith("etc_passwd-")


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
