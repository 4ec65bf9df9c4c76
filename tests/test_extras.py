"""The backends are optional extras: `import gradproof` imports none of them, and importing a
backend's subpackage without the backend says which extra installs it.

Each case runs in a fresh interpreter and needs no backend: a missing one is simulated with
``sys.modules[name] = None``, which makes ``import name`` raise ImportError.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gradproof._extras import EXTRAS

BACKENDS = sorted(EXTRAS)  # dask, jax, plot, torch


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_whole_check_imports_no_backend():
    roots = sorted({module.split(".")[0] for module, _, _ in EXTRAS.values()} | {"dask"})
    done = run(
        f"""
        import sys, numpy as np, gradproof
        report = gradproof.check(lambda p: float(np.sum(p ** 2)), np.ones(3), lambda p: 2 * p)
        str(report), report.to_dict()
        subpackages = {[f"gradproof.{name}" for name in BACKENDS]!r}
        print(sorted(m for m in sys.modules
                     if m.split(".")[0] in {roots!r} or m.split("._")[0] in subpackages))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("subpackage", BACKENDS)
def test_a_missing_backend_names_the_extra_that_installs_it(subpackage):
    module, _, extra = EXTRAS[subpackage]
    done = run(
        f"""
        import sys
        sys.modules[{module!r}] = None
        try:
            import gradproof.{subpackage}
        except ImportError as error:
            print("ImportError:", error)
        else:
            print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ImportError: gradproof.{subpackage} needs ")
    assert f"Fix: pip install 'gradproof[{extra}]'" in done.stdout
