"""What a report says must not claim more than the check did.

A command whose reader goes away exits quietly; a diagnosis of a block checked in part
says the rest was not checked; a check that checked nothing does not call its difference
"great".
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import gradproof
from gradproof._cli import BROKEN_PIPE
from gradproof._engine.diagnose import diagnose

# ------------------------------------------------------------------ broken pipe

TARGET = """\
import numpy as np

params = {"w": np.array([1.0, -2.0, 0.5])}

def loss(p):
    return float(np.sum(np.sin(p["w"])))

def grad(p):
    return {"w": -np.cos(p["w"])}  # wrong sign: the check fails, and says so at length
"""


def _into_a_closed_pipe(arguments: list[str], *, read_first_line: bool = False) -> tuple[int, str]:
    """Run ``gradproof ARGUMENTS`` with its stdout's reader gone: (exit code, stderr).

    The reader goes away at once, or, with ``read_first_line``, after the first line, as
    ``| head -1`` does: then the command has started writing and meets the closed pipe later.
    """
    command = [sys.executable, "-m", "gradproof", *arguments]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        if read_first_line:
            process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode("utf-8", "replace")
        code = process.wait(timeout=120)
    return code, stderr


def _quiet(stderr: str) -> bool:
    return not any(word in stderr for word in ("Traceback", "BrokenPipeError", "Exception"))


@pytest.mark.parametrize("json_flag", [[], ["--json", "-"]], ids=["text", "json"])
def test_check_into_a_closed_pipe_exits_quietly(tmp_path, json_flag):
    target = tmp_path / "model_check.py"
    target.write_text(TARGET)
    code, stderr = _into_a_closed_pipe(["check", str(target), *json_flag])
    assert _quiet(stderr), stderr
    assert code == BROKEN_PIPE == 141  # 128 + SIGPIPE, as a shell reports `yes | head`


@pytest.mark.parametrize("read_first_line", [False, True], ids=["at-once", "after-a-line"])
def test_demo_into_a_closed_pipe_exits_quietly(read_first_line):
    code, stderr = _into_a_closed_pipe(["demo"], read_first_line=read_first_line)
    assert _quiet(stderr), stderr
    assert code == BROKEN_PIPE  # not 1, the code for "the gradient failed"


def test_help_into_a_closed_pipe_exits_quietly():
    code, stderr = _into_a_closed_pipe(["check", "--help"])
    assert _quiet(stderr), stderr
    assert code in (0, BROKEN_PIPE)  # the help may fit in the pipe before its reader goes


# ------------------------------------------------------- a block checked in part


def _one_row_wrong(rows: int = 40, columns: int = 25, row: int = 5):
    """A linear least-squares layer whose gradient is 1.5x off in one whole row of dW."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(64, rows))
    y = rng.normal(size=(64, columns))
    params = {"W": rng.normal(size=(rows, columns)) * 0.1, "b": np.zeros(columns)}

    def loss(p):
        return float(0.5 * np.mean(np.sum((x @ p["W"] + p["b"] - y) ** 2, 1)))

    def grad(p):
        r = (x @ p["W"] + p["b"] - y) / len(x)
        g = {"W": x.T @ r, "b": r.sum(0)}
        g["W"][row] *= 1.5
        return g

    return loss, params, grad


def test_probe_of_a_block_wrong_throughout_names_examples_not_the_only_wrong_elements():
    loss, params, grad = _one_row_wrong()
    report = gradproof.check(loss, params, grad, mode="probe", samples=32, seed=1)
    block = report.blocks["W"]
    assert report.extra["wrong_throughout"].get("W"), "the fixture must be wrong throughout"
    assert block.status == "fail" and block.wrong_elements
    sentence = block.diagnosis.sentence
    assert "the rest match" not in sentence
    assert "wrong throughout" in sentence and "only" in sentence
    assert f"other {block.size - 32} elements were not checked" in sentence
    assert all(f"[5, {j}]" in sentence for _, j in block.wrong_elements)


def test_probe_stopped_early_says_the_block_is_wrong_beyond_the_elements_found():
    """A budget that ends bisection with failing parts left: those are wrong too."""
    w0 = np.random.default_rng(0).normal(size=400)

    def grad(w):
        g = np.cos(w)
        g[[3, 100, 250, 390]] *= 1.5
        return g

    cut = []
    for budget in range(60, 200, 10):
        report = gradproof.check(
            lambda w: float(np.sum(np.sin(w))),
            w0,
            grad,
            mode="probe",
            budget=budget,
            seed=0,
            samples=8,
        )
        block = report.blocks["params"]
        if block.wrong_elements and report.extra["unresolved"]["params"]:
            cut.append(block.diagnosis.sentence)
    assert cut, "no budget stopped bisection between the first element and the last"
    for sentence in cut:
        assert "the rest match" not in sentence
        assert "more beyond them" in sentence and "not localised further" in sentence


def test_a_diagnosis_of_some_elements_of_a_block_says_the_rest_were_not_checked():
    g = np.linspace(1.0, 2.0, 32)
    n = g.copy()
    g[7] *= 1.5
    sentence = diagnose("W", g, n, np.ones(32), [(5, 1)], size=5000).sentence
    assert "the rest match" not in sentence
    assert "1 of the 32 checked elements wrong ([5, 1]), the other 31 checked match" in sentence
    assert "4968 of the block's 5000 elements were not checked" in sentence
    # every element checked: the rest do match
    for size in (None, 32):
        full = diagnose("W", g, n, np.ones(32), [(7,)], size=size).sentence
        assert "1 element(s) wrong ([7]), the rest match" in full


def test_sample_mode_does_not_say_the_unchecked_rest_matches():
    loss, params, grad = _one_row_wrong()
    sentences = []
    for seed in range(8):  # samples that catch one to three elements of the wrong row
        block = gradproof.check(loss, params, grad, mode="sample", samples=32, seed=seed).blocks[
            "W"
        ]
        if block.status == "fail" and block.diagnosis.kind == "elements":
            assert block.checked < block.size
            sentences.append((block.diagnosis.sentence, block.size - block.checked))
    assert sentences, "no sample caught the wrong row"
    for sentence, unchecked in sentences:
        assert "the rest match" not in sentence
        assert f"{unchecked} of the block's 1000 elements were not checked" in sentence


# -------------------------------------------------------------- nothing checked


@pytest.fixture(params=["full", "sample", "probe"])
def nothing_checked(request):
    report = gradproof.check(
        lambda w: float(np.sum(np.sin(w))),
        np.ones(5),
        lambda w: -np.cos(w),
        mode=request.param,
        budget=3,
    )
    assert all(b.checked == 0 for b in report.blocks.values()), "the fixture must check nothing"
    return report


def test_text_headline_does_not_praise_a_difference_over_nothing(nothing_checked):
    text = str(nothing_checked)
    headline, header, row = text.splitlines()[:3]
    assert headline == (
        "gradient check: INCONCLUSIVE  no difference: no coordinate was checked (see below)"
    )
    assert "great" not in text and "0.000e+00" not in text
    assert row.split()[2:5] == ["-", "-", "-"]  # difference, scale, max |error|


def test_html_does_not_praise_a_difference_over_nothing(nothing_checked):
    page = nothing_checked.to_html(plots=False)
    assert "<p>no difference: no coordinate was checked (see below)</p>" in page
    assert "great" not in page and "0.00e+00" not in page


def test_json_has_no_difference_over_nothing(nothing_checked):
    data = json.loads(nothing_checked.to_json())
    assert data["difference"] is None and data["checked"] == 0
    assert data["status"] == "inconclusive"


def test_a_check_of_something_keeps_its_difference_and_rule_of_thumb():
    report = gradproof.check(lambda w: float(w @ w), np.ones(3), lambda w: 2 * w)
    assert "difference " in str(report).splitlines()[0] and "great" in str(report)
    data = report.to_dict()
    assert data["difference"] == report.difference and data["checked"] == 3
