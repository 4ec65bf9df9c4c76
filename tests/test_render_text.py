"""The text report: exact output at a fixed width, colour only on a terminal."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from rich.console import Console

import gradproof
from gradproof import BlockResult, Diagnosis, ElementResult, Report
from gradproof._render.text import print_report, render_text


def failing_report(name: str = "layer2.weight") -> Report:
    """A report built by hand: one failing block, one at a kink, one inconclusive."""
    worst = (
        ElementResult(name, (3, 1), 0.5, 0.25, 0.25, 0.5, 1e-6),
        ElementResult(name, (0, 2), -0.2, -0.1, 0.1, 0.5, 1e-6),
    )
    blocks = {
        "layer1.weight": BlockResult(
            name="layer1.weight",
            shape=(4, 3),
            status="pass",
            difference=1.2e-9,
            scale=1.0,
            max_abs_error=3e-10,
            worst_index=(2, 0),
            checked=12,
            kinks=((1, 1),),
        ),
        name: BlockResult(
            name=name,
            shape=(4, 3),
            status="fail",
            difference=0.3333,
            scale=2.0,
            max_abs_error=0.25,
            worst_index=(3, 1),
            checked=12,
            wrong_elements=((3, 1), (0, 2)),
            worst=worst,
            diagnosis=Diagnosis(
                "scale",
                f"{name}: the gradient is 2.00× the numerical "
                "derivative — a constant factor, look for a stray multiplier",
            ),
        ),
        "bias": BlockResult(
            name="bias",
            shape=(3,),
            status="inconclusive",
            difference=2e-5,
            scale=None,
            max_abs_error=1e-9,
            worst_index=(0,),
            checked=2,
            reason="the loss is too noisy here to tell",
        ),
    }
    return Report(
        status="fail",
        difference=0.2,
        tol=None,
        blocks=blocks,
        suspects=(name,),
        scheme="richardson",
        eps=None,
        precision="float64",
        evaluations=123,
        seconds=0.5,
        mode="sample",
        notes=("a note.",),
        coverage="a sample: 26 of 27",
        miss_probability=0.001,
    )


EXPECTED = """\
gradient check: FAIL  difference 2.000e-01 (error model; ~1e-3 or more: worry)
block          shape   difference  scale  max |error|  worst at  status
layer1.weight  (4, 3)    1.20e-09   1.00     3.00e-10  [2, 0]    pass (1 kink)
layer2.weight  (4, 3)    3.33e-01   2.00     2.50e-01  [3, 1]    fail (2 wrong)
bias           (3,)      2.00e-05      -     1.00e-09  [0]       inconclusive (2/3 checked)
3 blocks: 1 pass, 1 fail, 1 inconclusive; 2 wrong elements, 1 at kinks
suspects (latest block first; backprop runs output to input): layer2.weight
  - layer2.weight: the gradient is 2.00× the numerical derivative — a constant factor, look for a
    stray multiplier
  - bias: inconclusive: the loss is too noisy here to tell
element                   analytic      numerical  abs error  rel error  tolerance
layer2.weight[3, 1]   5.000000e-01   2.500000e-01   2.50e-01   5.00e-01   1.00e-06
layer2.weight[0, 2]  -2.000000e-01  -1.000000e-01   1.00e-01   5.00e-01   1.00e-06
note: a note.
checked: a sample: 26 of 27; mode sample, scheme richardson (scaled steps), float64; 123 loss
evaluations in 0.50 s; chance a bug this size went unseen: 1.0e-03
"""


def test_snapshot_at_100_columns():
    assert render_text(failing_report(), width=100) == EXPECTED


def test_str_is_the_plain_text_report():
    assert str(failing_report()) == EXPECTED


def test_snapshot_at_60_columns_wraps_but_keeps_the_index_whole():
    text = render_text(failing_report(), width=60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "[3, 1]" in text
    assert text != EXPECTED


def test_a_deterministic_check_renders_the_notebooks_fraud_example():
    from gradproof.examples import fraud

    loss, params, grads = fraud.problem(bugs=True)
    report = dataclasses.replace(gradproof.check(loss, params, grads, eps=1e-7), seconds=0.0)
    lines = render_text(report).splitlines()
    assert lines[0] == (
        "gradient check: FAIL  difference 2.851e-01 (error model; ~1e-3 or more: worry)"
    )
    assert lines[1].split() == [
        "block",
        "shape",
        "difference",
        "scale",
        "max",
        "|error|",
        "worst",
        "at",
        "status",
    ]
    assert [line.split()[0] for line in lines[2:8]] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert lines[3].endswith("fail (4 wrong)") and lines[4].endswith("fail (4 wrong)")
    assert lines[8] == "6 blocks: 4 pass, 2 fail, 0 inconclusive; 8 wrong elements, 0 at kinks"
    assert lines[9].endswith("W2, b1")
    assert any(line.startswith("b1[0, 0] ") for line in lines)
    assert any(line.startswith("W2[2, 0] ") for line in lines)
    assert "in 0.00 s" in lines[-1]


def test_colour_on_a_terminal_plain_when_piped():
    tty = io.StringIO()
    print_report(failing_report(), Console(file=tty, force_terminal=True, color_system="standard"))
    piped = io.StringIO()
    print_report(failing_report(), Console(file=piped, force_terminal=False, width=100))
    assert "\033[" in tty.getvalue()
    assert "\033[31m" in tty.getvalue() or "\033[1;31m" in tty.getvalue()  # red FAIL
    assert "\033[" not in piped.getvalue()


def test_repr_is_one_line_and_pretty_is_the_report():
    report = failing_report()
    assert repr(report) == (
        "Report(status='fail', difference=2.000e-01, blocks=3, suspects=('layer2.weight',))"
    )

    class Printer:
        text_seen = ""

        def text(self, value: str) -> None:
            self.text_seen += value

    printer = Printer()
    report._repr_pretty_(printer, cycle=False)
    assert printer.text_seen == EXPECTED.rstrip("\n")


def test_a_suspect_without_diagnosis_still_gets_a_sentence():
    report = failing_report()
    block = dataclasses.replace(report.blocks["layer2.weight"], diagnosis=None)
    text = render_text(dataclasses.replace(report, blocks={**report.blocks, block.name: block}))
    assert "  - layer2.weight: wrong, and no simple pattern" in text


def test_user_markup_in_names_is_printed_verbatim():
    text = render_text(failing_report(name="[bold]w[/bold]"))
    assert "[bold]w[/bold][3, 1]" in text


def test_piped_output_is_exactly_the_text_report():
    piped = io.StringIO()
    print_report(failing_report(), Console(file=piped, force_terminal=False, width=100))
    assert piped.getvalue() == EXPECTED


def test_a_failure_the_rule_of_thumb_calls_great_says_why_it_still_fails():
    # One element off by a relative 1e-6: the overall difference is ~1e-9 ("great" by the
    # Gradient Checking notebook's rule of thumb), but the error model finds the element;
    # the verdict line says so.
    theta = np.linspace(-1.0, 1.0, 100)
    wrong = np.cos(theta)
    wrong[17] *= 1 + 1e-6
    report = gradproof.check(lambda p: float(np.sum(np.sin(p))), theta, wrong)
    assert report.status == "fail" and report.difference < 1e-6
    text = str(report)
    assert "great" in text and "the notebook's rule of thumb would pass this difference" in text
    right = gradproof.check(lambda p: float(np.sum(np.sin(p))), theta, np.cos(theta))
    assert "rule of thumb would pass" not in str(right)


@pytest.mark.parametrize(
    "difference, words",
    [
        (1e-9, "~1e-7 or less: great"),
        (9.9e-7, "~1e-7 or less: great"),
        (1e-6, "~1e-5: look closer"),
        (9.9e-5, "~1e-5: look closer"),
        (1e-4, "~1e-3 or more: worry"),
        (float("nan"), "~1e-3 or more: worry"),
    ],
)
def test_the_verdict_line_states_the_notebooks_rule_of_thumb(difference, words):
    report = dataclasses.replace(failing_report(), difference=difference)
    assert render_text(report).splitlines()[0].endswith(f"(error model; {words})")


# Names from the user's parameter structure: a terminal escape that clears the screen, a
# newline, a carriage return, and a literal backslash-n that must not read as the newline.
CONTROL_NAMES = ("W\x1b[2J", "a\nb", "\r", "a\\nb")


def control_report() -> Report:
    """A failing report whose every block name, suspect, element and note holds user text."""
    blocks = {
        name: BlockResult(
            name=name,
            shape=(2,),
            status="fail",
            difference=0.5,
            scale=2.0,
            max_abs_error=1.0,
            worst_index=(1,),
            checked=2,
            wrong_elements=((1,),),
            worst=(ElementResult(name, (1,), 2.0, 1.0, 1.0, 0.5, 1e-6),),
            diagnosis=Diagnosis("scale", f"{name}: the gradient is 2.00× the numerical derivative"),
        )
        for name in CONTROL_NAMES
    }
    return Report(
        status="fail",
        difference=0.5,
        tol=None,
        blocks=blocks,
        suspects=CONTROL_NAMES,
        scheme="central",
        eps=1e-7,
        precision="float64",
        evaluations=9,
        seconds=0.25,
        notes=("a note naming W\x1b[2J\u202e",),
        coverage="every coordinate: 8 of 8",
    )


CONTROL_EXPECTED = """\
gradient check: FAIL  difference 5.000e-01 (error model; ~1e-3 or more: worry)
block     shape  difference  scale  max |error|  worst at  status
W\\x1b[2J  (2,)     5.00e-01   2.00     1.00e+00  [1]       fail (1 wrong)
a\\nb      (2,)     5.00e-01   2.00     1.00e+00  [1]       fail (1 wrong)
\\r        (2,)     5.00e-01   2.00     1.00e+00  [1]       fail (1 wrong)
a\\\\nb     (2,)     5.00e-01   2.00     1.00e+00  [1]       fail (1 wrong)
4 blocks: 0 pass, 4 fail, 0 inconclusive; 4 wrong elements, 0 at kinks
suspects (latest block first; backprop runs output to input): W\\x1b[2J, a\\nb, \\r, a\\\\nb
  - W\\x1b[2J: the gradient is 2.00× the numerical derivative
  - a\\nb: the gradient is 2.00× the numerical derivative
  - \\r: the gradient is 2.00× the numerical derivative
  - a\\\\nb: the gradient is 2.00× the numerical derivative
element           analytic      numerical  abs error  rel error  tolerance
W\\x1b[2J[1]   2.000000e+00   1.000000e+00   1.00e+00   5.00e-01   1.00e-06
a\\nb[1]       2.000000e+00   1.000000e+00   1.00e+00   5.00e-01   1.00e-06
\\r[1]         2.000000e+00   1.000000e+00   1.00e+00   5.00e-01   1.00e-06
a\\\\nb[1]      2.000000e+00   1.000000e+00   1.00e+00   5.00e-01   1.00e-06
note: a note naming W\\x1b[2J\\u202e
checked: every coordinate: 8 of 8; mode full, scheme central (eps=1e-07), float64; 9 loss
evaluations in 0.25 s
"""


def test_control_characters_in_names_are_shown_as_escapes():
    text = str(control_report())
    assert text == CONTROL_EXPECTED
    assert all(ch == "\n" or ch.isprintable() for ch in text)  # no escape reaches the terminal


def test_control_characters_are_escaped_on_a_terminal_too():
    tty = io.StringIO()
    print_report(control_report(), Console(file=tty, force_terminal=True, width=100))
    assert "\x1b[2J" not in tty.getvalue() and "\r" not in tty.getvalue()
    assert "W\\x1b[2J" in tty.getvalue()


def test_escaped_names_stay_different_names():
    from gradproof._render.words import printable

    shown = [printable(name) for name in (*CONTROL_NAMES, "a b", "a\tb", "\\r", "")]
    assert shown == ["W\\x1b[2J", "a\\nb", "\\r", "a\\\\nb", "a b", "a\\tb", "\\\\r", ""]
    assert len(set(shown)) == len(shown)
