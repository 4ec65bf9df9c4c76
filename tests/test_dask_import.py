"""gradproof.dask is an optional extra: lazy, and an install hint where Dask is missing.

These run in subprocesses and need no Dask: a missing ``distributed`` is simulated
with ``sys.modules["distributed"] = None``, which makes ``import distributed`` raise
ImportError.
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


def test_import_gradproof_does_not_import_dask():
    result = run(
        """
        import sys, numpy as np, gradproof
        gradproof.check(lambda p: float(np.sum(p ** 2)), np.ones(3), lambda p: 2 * p)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")
                     or m.startswith("gradproof.dask")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_distributed_raises_import_error_with_install_hint():
    result = run(
        """
        import sys
        sys.modules["distributed"] = None
        try:
            import gradproof.dask
        except ImportError as error:
            print("ImportError:", error)
        else:
            print("imported")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError:")
    assert "pip install 'gradproof[dask]'" in result.stdout
