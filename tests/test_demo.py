"""`gradproof demo`: the main job."""

from __future__ import annotations

import subprocess
import sys

from gradproof._cli import main


def test_demo_checks_the_notebooks_fraud_example_before_and_after_the_fix(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "# the notebook's method: plain central differences" in out
    first, second = out.split("2. backward_propagation_n_fixed")
    assert "FAIL" in first and "2.851e-01" in first
    assert "suspects" in first and "W2, b1" in first
    assert "2.00× the numerical derivative" in first
    assert "4.00× the numerical derivative" in first
    assert "PASS" in second and "1.189e-07" in second


def test_demo_as_a_process_exits_zero_with_plain_text():
    done = subprocess.run(
        [sys.executable, "-m", "gradproof", "demo"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "\033[" not in done.stdout  # piped: no colour codes


def test_help_has_an_example(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "example:" in capsys.readouterr().out
