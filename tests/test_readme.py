"""The README's promises: its Python example runs, its quick start is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert "gradient check: PASS" in capsys.readouterr().out


def test_quick_start_is_two_commands_and_ci_runs_the_test_command():
    quick = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in quick.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("gradproof demo")
    assert commands[1].endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:  # CI runs both, to the letter, on a clean clone
        assert command in ci


def test_the_demo_output_shown_is_what_gradproof_demo_prints(capsys):
    from gradproof._cli import main

    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    shown = README.split("## What `gradproof demo` shows", 1)[1]
    shown = shown.split("```text\n", 1)[1].split("```", 1)[0]

    def without_timings(text: str) -> list[str]:
        # Only the wall-clock times may differ between runs; every number of the check must not.
        lines = text.strip().splitlines()
        return [re.sub(r"in \d+\.\d+ s", "in T s", line).rstrip() for line in lines]

    assert without_timings(shown) == without_timings(printed)
