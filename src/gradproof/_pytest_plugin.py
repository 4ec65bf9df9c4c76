"""The gradproof pytest plugin: a ``gradcheck`` fixture and a ``gradcheck`` marker.

Loaded by pytest through the ``pytest11`` entry point. At load it imports only
pytest; gradproof's checker (numpy) is imported when a test first uses the
fixture, and no optional backend (torch, jax, matplotlib, dask) ever is.

In a test::

    def test_backprop(gradcheck):
        report = gradcheck(loss, params, grad)   # fails the test with the report
        assert report.difference < 1e-7

    @pytest.mark.gradcheck(eps=1e-7, tol=2e-7)    # default options for this test
    def test_the_notebooks_method(gradcheck):
        gradcheck(loss, params, grad)

A failing check fails the test with the text report (verdict, blocks, suspects,
the worst elements) and no traceback noise. ``--gradproof-html DIR`` also
writes each failing report as a self-contained HTML page into ``DIR``, one file
per report: a readable form of the test's id and a short hash of the whole id,
so ``test_x[a/b]``, ``test_x[a?b]`` and ``test_x[a b]`` never share a file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MARKER = "gradcheck"
READABLE = 80  # characters of the test's id kept in a report's file name


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradproof")
    group.addoption(
        "--gradproof-html",
        metavar="DIR",
        default=None,
        help="write the HTML report of every failing gradcheck into DIR",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): default gradproof.check options (eps=, tol=, scheme=, ...) "
        "for the gradcheck fixture in this test",
    )


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``gradcheck(loss, params, grad, **options)``: check, and fail the test unless it passes.

    Options come from ``gradproof.check``; a ``@pytest.mark.gradcheck(...)``
    marker sets defaults for the test, and keyword arguments override them.
    Returns the :class:`gradproof.Report` of a passing check.
    """
    marker = request.node.get_closest_marker(MARKER)
    defaults: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    html_dir = request.config.getoption("--gradproof-html")
    failures = 0  # a test that catches one failure and checks again gets a second file

    def run(loss: Any, params: Any, grad: Any, **options: Any) -> Any:
        nonlocal failures
        from gradproof._engine.check import check

        report = check(loss, params, grad, **{**defaults, **options})
        if not report.passed:
            where = ""
            if html_dir is not None:
                failures += 1
                name = report_file_name(request.node.nodeid, failures)
                where = f"\nHTML report: {_write_html(report, Path(html_dir) / name)}"
            pytest.fail(f"gradproof: the gradient does not match\n{report}{where}", pytrace=False)
        return report

    return run


def report_file_name(nodeid: str, count: int = 1) -> str:
    """The HTML report's file name for the ``count``-th failing check in test ``nodeid``.

    The readable part keeps letters, digits, ``_``, ``.`` and ``-`` and stops at
    :data:`READABLE` characters; the hash of the whole id keeps ids that read alike apart.

    >>> report_file_name("tests/test_x.py::test_a[a/b]")
    'tests_test_x.py_test_a_a_b-b571bcae.html'
    >>> report_file_name("tests/test_x.py::test_a[a?b]")
    'tests_test_x.py_test_a_a_b-0145ac3e.html'
    >>> report_file_name("tests/test_x.py::test_a[a/b]", 2)
    'tests_test_x.py_test_a_a_b-b571bcae-2.html'
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_.")[:READABLE] or "test"
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable}-{digest}" + (f"-{count}" if count > 1 else "") + ".html"


def _write_html(report: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_html(), encoding="utf-8")
    return path
