"""gradproof.jax is an optional extra: lazy, and an install hint where JAX is missing.

These run in subprocesses and need no JAX: a missing JAX is simulated with
``sys.modules["jax"] = None``, which makes ``import jax`` raise ImportError.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_gradproof_does_not_import_jax():
    result = run(
        """
        import sys, gradproof
        print(sorted(m for m in sys.modules if m == "jax" or m.startswith("jax.")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_jax_raises_import_error_with_install_hint():
    result = run(
        """
        import sys
        sys.modules["jax"] = None
        try:
            import gradproof.jax
        except ImportError as error:
            print("ImportError:", error)
        else:
            print("imported")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError:")
    assert "pip install 'gradproof[jax]'" in result.stdout
