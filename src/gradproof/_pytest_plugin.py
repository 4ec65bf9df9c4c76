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
writes each failing report as a self-contained HTML page into ``DIR``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MARKER = "gradcheck"


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

    def run(loss: Any, params: Any, grad: Any, **options: Any) -> Any:
        from gradproof._engine.check import check

        report = check(loss, params, grad, **{**defaults, **options})
        if not report.passed:
            where = ""
            if html_dir is not None:
                where = f"\nHTML report: {_write_html(report, Path(html_dir), request.node.nodeid)}"
            pytest.fail(f"gradproof: the gradient does not match\n{report}{where}", pytrace=False)
        return report

    return run


def _write_html(report: Any, folder: Path, nodeid: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_") + ".html")
    path.write_text(report.to_html(), encoding="utf-8")
    return path
