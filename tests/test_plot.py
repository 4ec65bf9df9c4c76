"""The plots: each returns a Figure, draws what it promises and saves PNG or SVG."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'gradproof[plot]'")

import gradproof
import gradproof.plot
from gradproof.examples import fraud


@pytest.fixture(scope="module")
def notebook_report():
    loss, params, grads = fraud.problem(bugs=True)
    return gradproof.check(loss, params, grads, eps=1e-7)


def test_blocks_is_a_log_bar_chart_with_the_thresholds(notebook_report):
    fig = gradproof.plot.blocks(notebook_report)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([b.difference for b in notebook_report.blocks.values()])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(notebook_report.blocks)
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == [1e-7, 1e-5, 1e-3]
    red = {tuple(bar.get_facecolor()[:3]) for bar in ax.patches[1:3]}
    assert len(red) == 1 and red != {tuple(ax.patches[0].get_facecolor()[:3])}


def test_blocks_draws_the_users_tol(notebook_report):
    fig = gradproof.plot.blocks(dataclasses.replace(notebook_report, tol=2e-7))
    assert 2e-7 in [line.get_ydata()[0] for line in fig.axes[0].get_lines()]


def test_scatter_shows_a_scale_bug_as_slope_two(notebook_report):
    fig = gradproof.plot.scatter(notebook_report)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["W1: pass", "b1: fail", "W2: fail", "b2: pass", "W3: pass", "b3: pass"]
    w2 = fig.axes[2]
    slopes = []
    for line in w2.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        slopes.append((y[1] - y[0]) / (x[1] - x[0]))
    assert slopes == pytest.approx([1.0, 2.0], rel=1e-6)
    points = w2.collections[0].get_offsets()
    assert np.allclose(points[:, 1], 2 * points[:, 0], rtol=1e-5, atol=1e-9)


def test_sweep_is_the_v_curve():
    loss, params, grads = fraud.problem(bugs=False)
    result = gradproof.sweep(loss, params, grads, eps=np.logspace(-2, -10, 5))
    fig = gradproof.plot.sweep(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.get_lines()[0].get_xdata()) == pytest.approx(result.eps)
    assert "best ε" in ax.get_legend().get_texts()[0].get_text()


@pytest.mark.parametrize("factor, status", [(1.0, "pass"), (2.0, "fail")])
def test_taylor_draws_slopes_one_and_two(factor, status):
    f = lambda x: float(np.sum(np.exp(x)))  # noqa: E731
    result = gradproof.taylor_test(f, np.zeros(3), lambda x: factor * np.exp(x))
    fig = gradproof.plot.taylor(result)
    ax = fig.axes[0]
    assert ax.get_title().startswith(f"Taylor test: {status.upper()}")
    labels = {line.get_label(): line for line in ax.get_lines()}
    for slope in (1, 2):
        x, y = labels[f"slope {slope}"].get_data()
        fitted = np.polyfit(np.log(x), np.log(y), 1)[0]
        assert fitted == pytest.approx(slope)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_figures_save_png_and_svg(tmp_path, notebook_report, suffix, magic):
    path = tmp_path / f"blocks{suffix}"
    gradproof.plot.blocks(notebook_report, path=path)
    assert path.read_bytes().startswith(magic)


def test_an_unknown_suffix_is_an_invalid_argument(tmp_path, notebook_report):
    with pytest.raises(gradproof.InvalidArgument, match=r"`path`=.*must end in .png or .svg"):
        gradproof.plot.blocks(notebook_report, path=tmp_path / "blocks.jpg")


def test_names_with_dollars_are_not_mathtext(tmp_path):
    from test_render_text import failing_report

    report = failing_report(name="cost$_{x}$^")
    gradproof.plot.blocks(report, path=tmp_path / "b.svg")
    gradproof.plot.scatter(report, path=tmp_path / "s.svg")
    assert "cost$_{x}$^" in (tmp_path / "b.svg").read_text()


def test_to_svg_gives_the_figure_as_svg_text(notebook_report):
    svg = gradproof.plot.to_svg(gradproof.plot.blocks(notebook_report))
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert "to_svg" in gradproof.plot.__all__


def test_bars_take_the_colours_the_text_and_html_reports_use(notebook_report):
    from matplotlib.colors import to_rgb

    from gradproof._render.words import COLOUR

    bars = gradproof.plot.blocks(notebook_report).axes[0].patches
    expected = [to_rgb(COLOUR[b.status]) for b in notebook_report.blocks.values()]
    assert np.allclose([bar.get_facecolor()[:3] for bar in bars], expected)
