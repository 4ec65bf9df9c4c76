"""The layer corpus: gradproof's verdicts on hand-written numpy layers, right and wrong.

Each layer of :mod:`layers` is checked with gradproof's default options in every
precision style. A correct layer passes in float64 and never fails in float32,
bfloat16 or float16 (inconclusive is allowed where the loss is too coarse, with a
reason); every planted bug fails in float64, and every bug of relative size 1e-3
or more fails in float32 as well, with the block it changes named first.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
import layers
from layers import BUGS, F32_STYLES, LAYERS, LOW_STYLES

BIG_BUGS = [bug for bug in BUGS if bug.size >= 1e-3]


def _summary(report) -> str:
    """What a failed assertion shows: verdict, precision, and each block's status and reason."""
    lines = [
        f"status={report.status!r} suspects={report.suspects!r}",
        f"precision: {report.precision}",
    ]
    for name, block in report.blocks.items():
        diagnosis = f" diagnosis: {block.diagnosis.sentence}" if block.diagnosis else ""
        lines.append(
            f"  {name}: {block.status} difference={block.difference:.2e} "
            f"max|error|={block.max_abs_error:.2e} reason={block.reason!r}{diagnosis}"
        )
    return "\n".join(lines)


def _check(case):
    return gradproof.check(case.loss, case.params, case.grad)


def _never_fails(report) -> None:
    assert report.status != "fail", _summary(report)
    for name, block in report.blocks.items():
        if block.status == "inconclusive":
            assert block.reason, f"block {name} is inconclusive without a reason\n" + _summary(
                report
            )


# ------------------------------------------------------------- the corpus itself


def test_the_corpus_has_its_layers_and_bugs():
    assert len(LAYERS) >= 20
    assert len(BUGS) >= 60
    per_layer = {layer: sum(bug.layer == layer for bug in BUGS) for layer in LAYERS}
    assert min(per_layer.values()) >= 2, per_layer
    assert len({bug.id for bug in BUGS}) == len(BUGS)


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: bug.id)
def test_each_bug_changes_its_recorded_block_by_its_recorded_size(bug):
    """The table's block is the latest block the bug changes, and its size is measured."""
    right = layers.case(bug.layer, "f64")
    wrong = layers.case(bug.layer, "f64", bug.name)
    g, g_bug = right.grad(right.params), wrong.grad(wrong.params)
    sizes = {k: np.linalg.norm(g_bug[k] - g[k]) / np.linalg.norm(g[k]) for k in g}
    changed = [k for k in g if sizes[k] > 1e-12]
    assert changed and changed[-1] == bug.block, sizes
    assert sizes[bug.block] == pytest.approx(bug.size, rel=0.05)


# ------------------------------------------------------------- correct layers


@pytest.mark.parametrize("layer", LAYERS)
def test_a_correct_layer_passes_in_float64(layer):
    report = _check(layers.case(layer, "f64"))
    assert report.status == "pass", _summary(report)


@pytest.mark.parametrize("style", F32_STYLES)
@pytest.mark.parametrize("layer", LAYERS)
def test_a_correct_layer_never_fails_in_float32(layer, style):
    _never_fails(_check(layers.case(layer, style)))


@pytest.mark.parametrize("style", LOW_STYLES)
@pytest.mark.parametrize("layer", LAYERS)
def test_a_correct_layer_never_fails_in_half_precision(layer, style):
    if style == "bf16":
        pytest.importorskip("ml_dtypes", reason="the bf16 style needs ml_dtypes")
    _never_fails(_check(layers.case(layer, style)))


# ------------------------------------------------------------------- the bugs


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: bug.id)
def test_a_planted_bug_fails_in_float64_and_names_its_block_first(bug):
    report = _check(layers.case(bug.layer, "f64", bug.name))
    assert report.status == "fail", _summary(report)
    assert report.suspects[:1] == (bug.block,), _summary(report)


@pytest.mark.parametrize("bug", BIG_BUGS, ids=lambda bug: bug.id)
def test_a_planted_bug_fails_in_float32_and_names_its_block_first(bug):
    report = _check(layers.case(bug.layer, "f32-grad", bug.name))
    assert report.status == "fail", _summary(report)
    assert report.suspects[:1] == (bug.block,), _summary(report)


# ------------------------------------------------------------- probe mode, as full mode


@pytest.mark.parametrize("layer", LAYERS)
def test_a_correct_layer_passes_in_probe_mode_kinks_and_ties_included(layer):
    # relu_zeros and maxpool_ties put inputs exactly at their kinks: a probe crossing
    # several at once fails, and bisection clears it part by part.
    case = layers.case(layer, "f64")
    report = gradproof.check(case.loss, case.params, case.grad, mode="probe")
    assert report.status == "pass", _summary(report)


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: bug.id)
def test_a_planted_bug_fails_in_probe_mode_and_names_its_block_first(bug):
    case = layers.case(bug.layer, "f64", bug.name)
    report = gradproof.check(case.loss, case.params, case.grad, mode="probe")
    assert report.status == "fail", _summary(report)
    assert report.suspects[0] == bug.block, _summary(report)
