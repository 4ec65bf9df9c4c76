"""gradproof.torch.gradcheck on a fixed subset of torch's own operator database (op_db).

Each sample is built as torch's ``test_ops_gradients`` builds it, by
``bench/opdb_sweep.py`` (whose full sweep docs/parity.md records). On these
ops gradproof must not raise, and must pass wherever torch's gradcheck passes.
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings

import pytest

torch = pytest.importorskip("torch")

SWEEP = pathlib.Path(__file__).parent.parent / "bench" / "opdb_sweep.py"

# Real-input ops of every kind: pointwise, reductions, linear algebra, shape ops,
# a complex output from real inputs (fft.fft), a ZeroTensor gradient (sgn), empty
# samples (acos: its second sample has no element, which passes trivially, as in torch).
OPS = (
    "abs",
    "add",
    "mul",
    "sub",
    "sin",
    "exp",
    "tanh",
    "sigmoid",
    "pow",
    "sum",
    "mean",
    "cumsum",
    "matmul",
    "linalg.det",
    "linalg.inv",
    "cat",
    "flip",
    "where",
    "fft.fft",
    "sgn",
    "acos",
    "nn.functional.linear",
)


def _sweep():
    spec = importlib.util.spec_from_file_location("opdb_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _op_db():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _sweep().load_ops()
    except ImportError as error:  # torch's test helpers need expecttest, and may move
        pytest.skip(
            f"torch's internal op_db cannot be imported ({error}); "
            "pip install expecttest to run this test"
        )


def _rows(ops, dtype):
    """Both checkers on the first 2 samples of each op in ``dtype``: (name, number, row)."""
    sweep = _sweep()
    torch.set_num_threads(1)
    rows = []
    for op in ops:
        samples = op.sample_inputs("cpu", dtype, requires_grad=True)
        for number, sample in zip(range(2), samples, strict=False):
            torch.manual_seed(0)
            row = sweep.check_sample(op, sample, (60.0, 120.0))
            rows.append((op.name, number, row))
    return rows


def _assert_never_raises_and_passes_where_torch_does(rows) -> None:
    raised = [
        (name, n, row["gradproof_detail"])
        for name, n, row in rows
        if row["row"] == "gradproof raised"
    ]
    assert raised == []
    disagree = [
        (name, n)
        for name, n, row in rows
        if row.get("torch") == "pass" and row.get("gradproof") != "pass"
    ]
    assert disagree == []


@pytest.mark.slow
def test_gradproof_never_raises_on_the_subset_and_passes_wherever_torch_passes() -> None:
    ops = [op for op in _op_db() if op.name in OPS and not op.variant_test_name]
    assert {op.name for op in ops} == set(OPS)
    rows = _rows(ops, torch.float64)
    _assert_never_raises_and_passes_where_torch_does(rows)
    empty = [row["row"] for _, _, row in rows if row.get("empty")]
    assert empty and set(empty) == {"agree-pass"}
    assert sum(row["row"] == "agree-pass" for _, _, row in rows) >= 30


# Complex inputs (complex128): pointwise, holomorphic and not (abs, sgn), fft, linear
# algebra, and outputs that are empty (repeat's second sample) or transposed views.
COMPLEX_OPS = (
    "mul",
    "exp",
    "abs",
    "sgn",
    "log",
    "fft.fft",
    "matmul",
    "linalg.det",
    "repeat",
    "nn.functional.linear",
    "masked_fill",
)


@pytest.mark.slow
def test_complex_inputs_never_raise_and_pass_wherever_torch_passes() -> None:
    ops = [op for op in _op_db() if op.name in COMPLEX_OPS and not op.variant_test_name]
    assert {op.name for op in ops} == set(COMPLEX_OPS)
    rows = _rows(ops, torch.complex128)
    assert all(row["inputs"] for _, _, row in rows)
    _assert_never_raises_and_passes_where_torch_does(rows)
    assert sum(row["row"] == "agree-pass" for _, _, row in rows) >= 18
