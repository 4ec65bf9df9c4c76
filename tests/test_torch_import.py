"""The torch extra is optional: `import gradproof` never imports torch, and
`import gradproof.torch` without torch says how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )


def test_import_gradproof_does_not_import_torch():
    done = _run(
        """
        import sys, gradproof
        print("torch" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_import_without_torch_gives_the_install_hint():
    done = _run(
        """
        import sys
        sys.modules["torch"] = None  # what an environment without torch looks like to import
        try:
            import gradproof.torch
        except ImportError as error:
            print(error)
        else:
            print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'gradproof[torch]'" in done.stdout
