"""The example notebook runs end to end in a real Jupyter kernel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "fraud_detection.ipynb"


def _outputs(cell) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output["text"])
        for kind in ("text/plain", "text/html"):
            texts.append(output.get("data", {}).get(kind, ""))
    return "\n".join(texts)


@pytest.mark.slow
def test_the_fraud_detection_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="needs gradproof[notebook]")
    nbclient = pytest.importorskip("nbclient", reason="needs gradproof[notebook]")
    pytest.importorskip("ipykernel", reason="needs gradproof[notebook]")
    pytest.importorskip("matplotlib", reason="the notebook plots: needs gradproof[plot]")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",  # ipykernel's own spec: the interpreter running the tests
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    nbformat.write(notebook, tmp_path / "executed.ipynb")

    code = [c for c in notebook.cells if c.cell_type == "code"]
    everything = "\n".join(_outputs(c) for c in code)
    # The story: the notebook's number, the failing blocks, the fix, the data set.
    assert "0.2850931567761" in everything
    assert "gradient check: FAIL" in everything and "suspects" in everything
    assert "2.00× the numerical derivative" in everything
    assert "gradient check: PASS" in everything
    assert "regularization missing from the gradient" in everything
    assert "fraud rate" in everything
    # The report displays itself as HTML in a notebook ...
    assert any('<div class="gradproof">' in _outputs(c) for c in code)
    # ... and str(report) is the text report there too (rich must not hijack it).
    printed = next(c for c in code if "print(report)" in c.source)
    assert "block  shape" in _outputs(printed)


def test_the_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat", reason="needs gradproof[notebook]")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


def test_the_notebook_uses_only_public_names():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert re.findall(r"\w+\._(?!_)\w*", code) == []  # `gradproof.__version__` is public
