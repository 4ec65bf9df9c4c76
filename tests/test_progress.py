"""The progress bar: on stderr, only on a terminal (or when asked), never in the report."""

from __future__ import annotations

import io

import numpy as np
import pytest

import gradproof
from gradproof._engine import progress as _progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def problem():
    return (lambda p: float(np.sum(np.sin(p)))), np.linspace(0, 1, 50), (lambda p: np.cos(p))


def test_silent_when_stderr_is_not_a_terminal(capsys):
    gradproof.check(*problem())
    assert capsys.readouterr().err == ""


FULL_OFF_A_TERMINAL = """\
gradproof [........................] 1 evaluation, setting up
gradproof [####....................] 20/119 evaluations, under 1 s left
gradproof [#####...................] 24/119 evaluations, under 1 s left
gradproof [#######.................] 36/119 evaluations, under 1 s left
gradproof [##########..............] 48/119 evaluations, under 1 s left
gradproof [############............] 60/119 evaluations, under 1 s left
gradproof [###############.........] 72/119 evaluations, under 1 s left
gradproof [#################.......] 84/119 evaluations, under 1 s left
gradproof [###################.....] 96/119 evaluations, under 1 s left
gradproof [######################..] 108/119 evaluations, under 1 s left
gradproof [########################] done: 120 evaluations in 0.0 s
"""

PROBE_OFF_A_TERMINAL = """\
gradproof [........................] 1 evaluation, setting up
gradproof [############............] 20/39 evaluations, under 1 s left
gradproof [###############.........] 24/39 evaluations, under 1 s left
gradproof [#################.......] 28/39 evaluations, under 1 s left
gradproof [####################....] 32/39 evaluations, under 1 s left
gradproof [######################..] 36/39 evaluations, under 1 s left
gradproof [########################] done: 40 evaluations in 0.0 s
"""


@pytest.mark.parametrize(
    ("mode", "expected"), [("full", FULL_OFF_A_TERMINAL), ("probe", PROBE_OFF_A_TERMINAL)]
)
def test_off_a_terminal_progress_true_writes_a_few_plain_lines(mode, expected, monkeypatch, capsys):
    # The set-up (19 evaluations: the base point, its noise) claims no total; then a line at
    # every tenth of the work, and the end. No carriage return: a CI log stays readable.
    monkeypatch.setattr(_progress, "CLOCK", lambda: 0.0)
    report = gradproof.check(*problem(), mode=mode, progress=True)
    assert capsys.readouterr().err == expected
    assert f"done: {report.evaluations} evaluations" in expected


def test_off_a_terminal_a_slow_check_writes_a_line_every_few_seconds():
    stream = io.StringIO()
    seconds = iter(range(0, 100, 3))  # every call to the clock is 3 s later
    bar = _progress.Progress(True, stream=stream, clock=lambda: float(next(seconds)))
    bar.advance(1)  # 3 s: the first line
    bar.advance(1)  # 6 s: too soon for another
    bar.advance(1)  # 9 s: 6 s since the last line
    bar.total = 1000
    bar.advance(1)  # 12 s: set-up is over, the first line with a total
    bar.advance(1)  # 15 s: too soon, and still under a tenth of the work
    bar.close()  # 18 s
    assert stream.getvalue() == (
        "gradproof [........................] 1 evaluation, setting up\n"
        "gradproof [........................] 3 evaluations, setting up\n"
        "gradproof [........................] 4/1000 evaluations, 2988 s left\n"
        "gradproof [########################] done: 5 evaluations in 18.0 s\n"
    )


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    terminal = Terminal()
    seconds = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    bar = _progress.Progress(True, stream=terminal, clock=seconds.__next__)
    bar.advance(19)  # setting up: no total yet
    bar.total = 119
    bar.advance(40)
    bar.close()
    frames = terminal.getvalue().split("\r")
    assert frames == [
        "",
        "gradproof [........................] 19 evaluations, setting up",
        "gradproof [############............] 59/119 evaluations, 2 s left",
        "gradproof [########################] done: 59 evaluations in 3.0 s\n",
    ]


def test_a_shorter_frame_erases_the_longer_one_before_it():
    terminal = Terminal()
    bar = _progress.Progress(True, stream=terminal, clock=lambda: 0.0)
    bar.chunks_sent(4)
    bar.total = 10
    bar.advance(1, chunk=True)
    bar.close()
    first, last = terminal.getvalue().split("\r")[1:]
    assert first == (
        "gradproof [##......................] 1/10 evaluations, under 1 s left, "
        "1/4 chunks from workers"
    )
    end = "gradproof [########################] done: 1 evaluation in 0.0 s, "
    end += "1/4 chunks from workers"
    assert len(end) < len(first)
    assert last == end + " " * (len(first) - len(end)) + "\n"  # padded: no tail of the first


def test_past_the_engines_estimate_the_total_is_an_estimate_that_grows():
    stream = io.StringIO()
    bar = _progress.Progress(True, stream=stream, clock=lambda: 0.0)
    bar.total = 10
    shown = []
    for _ in range(4):
        bar.advance(5)
        shown.append(bar.describe(0.0).split("] ")[1])
    assert shown == [
        "5/10 evaluations, under 1 s left",
        "10/~11 evaluations, under 1 s left",
        "15/~17 evaluations, under 1 s left",
        "20/~22 evaluations, under 1 s left",
    ]
    bar.total = 40  # the engine's new estimate replaces the guess
    assert bar.describe(0.0).endswith("] 20/40 evaluations, under 1 s left")


def test_auto_on_a_terminal_after_the_delay(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    gradproof.check(*problem())
    assert "evaluations" in terminal.getvalue()


def test_auto_on_a_terminal_stays_quiet_for_a_quick_check(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(_progress, "DELAY", 3600.0)
    gradproof.check(*problem())
    assert terminal.getvalue() == ""


def test_progress_false_is_silent_even_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    gradproof.check(*problem(), progress=False)
    assert terminal.getvalue() == ""


@pytest.mark.parametrize("mode", ["sample", "probe"])
def test_every_mode_reports_progress(capsys, mode):
    gradproof.check(*problem(), mode=mode, progress=True)
    assert "evaluations" in capsys.readouterr().err


def test_the_bar_counts_and_estimates_time_left():
    stream = io.StringIO()
    seconds = iter([0.0, 10.0, 12.0])
    bar = _progress.Progress(True, stream=stream, clock=seconds.__next__)
    bar.total = 200
    bar.advance(50)
    bar.close()
    assert stream.getvalue() == (
        "gradproof [######..................] 50/200 evaluations, 30 s left\n"
        "gradproof [########################] done: 50 evaluations in 12.0 s\n"
    )
