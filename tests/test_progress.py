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


def test_progress_true_draws_the_bar_and_ends_the_line(capsys):
    report = gradproof.check(*problem(), progress=True)
    err = capsys.readouterr().err
    assert f"{report.evaluations}/{report.evaluations} evaluations" in err
    assert err.startswith("\r") and err.endswith("\n") and "left" in err


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
    bar = _progress.Progress(True, stream=stream)
    bar.total = 200
    bar.advance(50)
    bar.close()
    line = stream.getvalue().strip().split("\r")[-1]
    assert "50/200 evaluations" in line and "s left" in line
    assert line.count("#") == 6  # a quarter of the 24-character bar
