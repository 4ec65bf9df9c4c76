"""`gradproof check`: load a file, check it, report, and exit 0 / 1 / 2 for CI."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradproof._engine.check
from gradproof._cli import CHECK_EXAMPLES, main
from gradproof._engine.validate import MODES, SCHEME_NAMES

ROOT = Path(__file__).resolve().parents[1]

PROBLEM = """\
import numpy as np

params = {{"w": np.array([1.0, -2.0, 0.5]), "b": np.array(0.3)}}


def loss(p):
    return float(np.sum(np.sin(p["w"])) + p["b"] ** 2)


def grad(p):
    return {{"w": {factor} * np.cos(p["w"]), "b": 2 * p["b"]}}


def problem():
    return loss, params, grad


def as_dict():
    return {{"loss": loss, "params": params, "grads": grad}}


def broken():
    return 42
"""


@pytest.fixture
def right(tmp_path):
    path = tmp_path / "right.py"
    path.write_text(PROBLEM.format(factor=1))
    return path


@pytest.fixture
def wrong(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text(PROBLEM.format(factor=2))
    return path


def _run(command):
    """Run ``command`` as a CI step would: its exit code, stdout and stderr."""
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_right_gradient_exits_0(right, capsys):
    assert main(["check", str(right)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gradient check: PASS")
    assert "checked: every coordinate: 4 of 4" in out


def test_a_wrong_gradient_exits_1_and_names_the_block(wrong, capsys):
    assert main(["check", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("gradient check: FAIL")
    assert "suspects (latest block first; backprop runs output to input): w" in out
    assert "w[0]" in out


@pytest.mark.parametrize("name", ["problem", "as_dict"])
def test_a_named_function_returns_the_three(wrong, name, capsys):
    assert main(["check", f"{wrong}:{name}"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_mode_full_and_eps_are_passed(right, capsys):
    assert main(["check", str(right), "--mode", "full", "--eps", "1e-7"]) == 0
    out = capsys.readouterr().out
    assert "mode full, scheme central (eps=1e-07)" in " ".join(out.split())


@pytest.fixture
def spy(monkeypatch):
    """Replace gradproof.check by a recorder of the options the command line passes."""
    real = gradproof._engine.check.check
    seen: dict = {}

    def recorder(loss, params, grad, **options):
        seen.update(options)
        return real(loss, params, grad)

    monkeypatch.setattr(gradproof._engine.check, "check", recorder)
    return seen


def test_only_the_options_given_are_passed(right, spy, capsys):
    assert main(["check", str(right)]) == 0
    assert spy == {}


def test_budget_is_passed_through_unchanged(right, spy, capsys):
    argv = ["check", str(right), "--mode", "sample", "--budget", "30s", "--samples", "2"]
    assert main([*argv, "--seed", "3", "--tol", "1e-3"]) == 0
    assert spy == {"mode": "sample", "budget": "30s", "samples": 2, "seed": 3, "tol": 1e-3}


@pytest.mark.parametrize(
    ("flag", "value"), [*(("--mode", m) for m in MODES), *(("--scheme", s) for s in SCHEME_NAMES)]
)
def test_every_mode_and_scheme_check_accepts_is_a_choice(flag, value, right, spy, capsys):
    assert main(["check", str(right), flag, value]) == 0
    assert spy == {flag.removeprefix("--"): value}


def test_an_inconclusive_check_exits_2(right, monkeypatch, capsys):
    real = gradproof._engine.check.check

    def inconclusive(*args, **options):
        return dataclasses.replace(real(*args, **options), status="inconclusive")

    monkeypatch.setattr(gradproof._engine.check, "check", inconclusive)
    assert main(["check", str(right)]) == 2
    assert "gradient check: INCONCLUSIVE" in capsys.readouterr().out


def test_json_to_stdout_is_only_json(wrong, capsys):
    assert main(["check", str(wrong), "--json", "-"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "fail" and data["suspects"] == ["w"]


def test_json_html_and_plot_files(wrong, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["check", str(wrong), "--json", str(out / "r.json"), "--html", str(out / "r.html")]
    assert main([*argv, "--plot", str(out / "blocks.png")]) == 1
    assert json.loads((out / "r.json").read_text())["status"] == "fail"
    assert (out / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "blocks.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "blocks-scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "no/such/file.py"], "is not a file"),
        (["check", "{right}:nope"], "defines no 'nope'. Fix: name one of: as_dict, broken,"),
        (["check", "{right}:broken"], "broken() returned 42 (type int); a target is a function"),
        (["check", "{empty}"], "defines no 'loss', 'params', 'grad'"),
        (["check", "{right}", "--plot", "x.jpg"], "must end in .png or .svg"),
        (["check", "{right}", "--eps", "-1"], "`eps`=-1.0: must be a finite number > 0"),
        (["check", "{raises}"], "importing"),
        (["check", "{fails}:problem"], "calling problem() raised RuntimeError: boom"),
        (
            ["check", "{right}", "--json", "no/such/folder/r.json"],
            "`--json`='no/such/folder/r.json'",
        ),
        (["check", "{right}", "--html", "no/such/folder/r.html"], "does not exist. Fix:"),
    ],
)
def test_usage_errors_exit_2_with_a_fix(argv, message, right, tmp_path, capsys):
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "fails.py").write_text("def problem():\n    raise RuntimeError('boom')\n")
    names = {"right": right, "empty": tmp_path / "empty.py", "raises": tmp_path / "raises.py"}
    names["fails"] = tmp_path / "fails.py"
    assert main([a.format(**names) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_mode_is_an_argparse_error(right, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(right), "--mode", "everything"])
    assert exit_info.value.code == 2


def test_scheduler_without_distributed_says_how_to_install(right, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["check", str(right), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "pip install 'gradproof[dask]'" in capsys.readouterr().err


def test_the_scheduler_flag_gives_the_serial_report(wrong):
    distributed = pytest.importorskip("distributed", reason="--scheduler needs gradproof[dask]")
    web = {"dashboard_address": "127.0.0.1:0"}  # its status page: any free port, loopback
    cluster = distributed.LocalCluster(
        n_workers=1, host="127.0.0.1", dashboard_address=None, scheduler_kwargs=web
    )
    command = [sys.executable, "-m", "gradproof", "check", str(wrong), "--json", "-"]
    with cluster:
        remote = _run([*command, "--scheduler", cluster.scheduler_address])
    serial = _run(command)
    assert serial.returncode == remote.returncode == 1, remote.stderr  # 1: the gradient is wrong
    got, want = json.loads(remote.stdout), json.loads(serial.stdout)
    del got["seconds"], want["seconds"]
    assert got == want
    assert got["suspects"] == ["w"]


def test_no_scheduler_at_the_address_is_a_usage_error_with_a_fix(right, monkeypatch, capsys):
    pytest.importorskip("distributed", reason="--scheduler needs gradproof[dask]")
    from gradproof.dask import _check as dask_check

    monkeypatch.setattr(dask_check, "CONNECT_SECONDS", 1)
    assert main(["check", str(right), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "gradproof check: error: `scheduler`='tcp://127.0.0.1:9': no Dask scheduler" in err
    assert "Fix: start one (`dask scheduler`" in err


@pytest.mark.parametrize("command", [[], ["demo"], ["check"]])
def test_every_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    section = re.search(r"^examples?:\n(.*)", capsys.readouterr().out, re.MULTILINE | re.DOTALL)
    assert section is not None and "  gradproof " in section.group(1)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_as_a_ci_step_the_exit_codes_are_real(right, wrong):
    def run(path):
        return _run([sys.executable, "-m", "gradproof", "check", str(path)])

    good, bad = run(right), run(wrong)
    assert (good.returncode, bad.returncode) == (0, 1), good.stderr + bad.stderr
    assert "\033[" not in bad.stdout and "FAIL" in bad.stdout


def test_the_file_can_import_its_neighbours(tmp_path, capsys):
    (tmp_path / "helper_mod_for_cli.py").write_text("import numpy as np\nSTART = np.ones(2)\n")
    (tmp_path / "uses.py").write_text(
        textwrap.dedent("""\
        from helper_mod_for_cli import START as params
        def loss(p): return float(p @ p)
        def grad(p): return 2 * p
    """)
    )
    assert main(["check", str(tmp_path / "uses.py")]) == 0


@pytest.mark.parametrize(("name", "code"), [("problem", 1), ("fixed", 0)])
def test_the_example_in_check_help_runs(name, code, capsys):
    # `gradproof check --help` shows examples/fraud_problem.py:problem; it must exist and run.
    target = ROOT / "examples" / "fraud_problem.py"
    assert f"{target.relative_to(ROOT)}:problem" in CHECK_EXAMPLES
    assert main(["check", f"{target}:{name}", "--eps", "1e-7", "--tol", "2e-7"]) == code
    out = capsys.readouterr().out
    assert ("suspects" in out) is (code == 1)


# ---------------------------------------------------------------- what the target prints

CHATTY = """\
import os
import numpy as np

print("importing the target")
os.write(1, b"a raw write to descriptor 1\\n")
params = np.array([1.0, -2.0])
calls = []


def loss(p):
    calls.append(1)
    print("the loss speaks")
    if len(calls) == 1:
        os.system("echo a subprocess speaks")
    return float(p @ p)


def grad(p):
    print("the gradient speaks")
    return 2 * p
"""


def test_json_on_stdout_stays_json_whatever_the_target_prints(tmp_path):
    (tmp_path / "chatty.py").write_text(CHATTY)
    done = _run(
        [sys.executable, "-m", "gradproof", "check", str(tmp_path / "chatty.py"), "--json", "-"]
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # the whole of stdout: nothing else was printed there
    assert data["status"] == "pass" and done.stdout == data_text(data)
    lines = done.stderr.splitlines()
    assert lines[:2] == ["importing the target", "a raw write to descriptor 1"]
    assert lines.count("the loss speaks") == data["evaluations"]
    assert lines.count("a subprocess speaks") == lines.count("the gradient speaks") == 1


def data_text(data):
    return json.dumps(data, indent=2) + "\n"


def test_the_text_report_is_alone_on_stdout_too(tmp_path, capsys):
    (tmp_path / "chatty.py").write_text(CHATTY)
    assert main(["check", str(tmp_path / "chatty.py")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("gradient check: PASS") and "speaks" not in captured.out
    assert "importing the target" in captured.err and "the loss speaks" in captured.err
    assert sys.stdout is not sys.stderr  # and stdout is back where it was


def test_in_process_json_to_stdout_is_only_json(tmp_path, capsys):
    (tmp_path / "chatty.py").write_text(CHATTY.replace("os.system", "print"))
    assert main(["check", str(tmp_path / "chatty.py"), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "pass"


# ------------------------------------------------------ outputs that overwrite each other


@pytest.fixture
def never_checked(monkeypatch):
    """Fail the test if the check runs: a refused command must stop before any work."""

    def refuse(*args, **options):
        raise AssertionError("the check ran")

    monkeypatch.setattr(gradproof._engine.check, "check", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["right.py", "--json", "right.py"],
            "`--json`='right.py': is the file being checked: the report would overwrite its "
            "code. Fix: give --json a file of its own, e.g. --json report.json.",
        ),
        (
            ["right.py:problem", "--html", "./sub/../right.py"],
            "`--html`='./sub/../right.py': is the file being checked: the report would "
            "overwrite its code. Fix: give --html a file of its own, e.g. --html report.html.",
        ),
        (
            ["right.py", "--json", "{tmp}/right.py"],
            "`--json`='{tmp}/right.py': is the file being checked: the report would "
            "overwrite its code. Fix: give --json a file of its own, e.g. --json report.json.",
        ),
        (
            ["right.py", "--json", "link.py"],
            "`--json`='link.py': is the file being checked: the report would overwrite its "
            "code. Fix: give --json a file of its own, e.g. --json report.json.",
        ),
        (
            ["right.py", "--json", "r.out", "--html", "./r.out"],
            "`--html`='./r.out': is where --json writes: one output would overwrite the "
            "other. Fix: give --html a file of its own, e.g. --html report.html.",
        ),
    ],
)
def test_an_output_over_the_target_or_another_output_is_refused(
    argv, message, right, tmp_path, monkeypatch, never_checked, capsys
):
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.py").symlink_to(right)
    monkeypatch.chdir(tmp_path)
    source = right.read_text()
    assert main(["check", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err == f"gradproof check: error: {message.format(tmp=tmp_path)}\n"
    assert right.read_text() == source and not (tmp_path / "r.out").exists()


def test_the_plots_scatter_may_not_overwrite_another_output(right, tmp_path, never_checked, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    html, plot = tmp_path / "b-scatter.png", tmp_path / "b.png"
    assert main(["check", str(right), "--html", str(html), "--plot", str(plot)]) == 2
    assert capsys.readouterr().err == (
        f"gradproof check: error: `--plot`='{plot}': writes {html}, which is where --html "
        "writes: one output would overwrite the other. Fix: give --plot a file of its own, "
        "e.g. --plot blocks.png.\n"
    )


def test_different_outputs_are_all_written(right, tmp_path, capsys):
    out = [tmp_path / "r.json", tmp_path / "r.html"]
    assert main(["check", str(right), "--json", str(out[0]), "--html", str(out[1])]) == 0
    assert json.loads(out[0].read_text())["status"] == "pass"
    assert out[1].read_text().startswith("<!DOCTYPE html>")


# ---------------------------------------------------------------------- naming a target

TARGETS = """\
import numpy as np

params = {"w": np.array([1.0, -2.0])}


def loss(p):
    return float(p["w"] @ p["w"])


def grad(p):
    return {"w": 2 * p["w"]}


class Problem:
    @staticmethod
    def build():
        return loss, params, grad

    def method(self):
        return loss, params, grad


class Holder:
    three = (loss, params, grad)
    pieces = {"loss": loss, "params": params}


holder = Holder()


def broken():
    return 42
"""


@pytest.fixture
def targets(tmp_path, monkeypatch):
    """``targets.py`` in the current folder: error messages echo a short, exact TARGET."""
    (tmp_path / "targets.py").write_text(TARGETS)
    monkeypatch.chdir(tmp_path)
    return "targets.py"


@pytest.mark.parametrize("name", ["Problem.build", "Holder.three", "holder.three"])
def test_a_dotted_name_reaches_an_attribute(name, targets, capsys):
    assert main(["check", f"{targets}:{name}"]) == 0
    assert capsys.readouterr().out.startswith("gradient check: PASS")


RULE = (
    "a target is a function returning (loss, params, grad) or a dict of them, or a file "
    "defining `loss`, `params` and `grad`"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "params",
            f"params is a dict with keys 'w'; {RULE}. "
            "Fix: pass targets.py alone: it defines `loss`, `params` and `grad`.",
        ),
        (
            "Problem.nope",
            "targets.py:Problem has no attribute 'nope'. Fix: name one of: build, method.",
        ),
        (
            "holder.three.nope",
            "targets.py:holder.three has no attribute 'nope'. Fix: name one of: count, index.",
        ),
        (
            "nope.build",
            "targets.py defines no 'nope'. Fix: name one of: Holder, Problem, broken, grad, loss.",
        ),
        (
            "Holder.pieces",
            "Holder.pieces is a dict with no 'grad'. Fix: define `loss`, `params` and `grad`, "
            "or pass file.py:name, naming a function that returns them.",
        ),
        (
            "Problem",
            f"Problem() returned an object of type Problem; {RULE}. "
            "Fix: pass targets.py alone: it defines `loss`, `params` and `grad`.",
        ),
        (
            "broken",
            f"broken() returned 42 (type int); {RULE}. "
            "Fix: pass targets.py alone: it defines `loss`, `params` and `grad`.",
        ),
    ],
)
def test_a_name_that_is_not_a_target_says_what_a_target_is(name, message, targets, capsys):
    assert main(["check", f"{targets}:{name}"]) == 2
    err = capsys.readouterr().err
    assert err == f"gradproof check: error: `TARGET`='{targets}:{name}': {message}\n"


def test_naming_the_loss_itself_says_a_target_takes_no_arguments(targets, capsys):
    assert main(["check", f"{targets}:loss"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == (
        "gradproof check: error: targets.py:loss: calling loss() raised TypeError: loss() "
        "missing 1 required positional argument: 'p'. Fix: name a function that takes no "
        "arguments and returns (loss, params, grad), and make it run on its own "
        "(python -c 'import ...; loss()')"
    )
