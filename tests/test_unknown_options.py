"""A misspelt keyword to a drop-in is named before the user's function runs.

The drop-ins (``gradproof.torch.gradcheck``, ``gradgradcheck``, ``check_module``,
``gradproof.jax.check``, ``gradproof.dask.check``) pass their ``**options`` on to
``gradproof.check``. A keyword neither they nor ``gradproof.check`` take must fail as an
:class:`InvalidArgument` naming it, its value and the closest right spelling, with the
user's function never called (so no ``TypeError`` after minutes of evaluations). The
oracle is the call count of the user's function: zero.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from gradproof._engine.validate import validate_passed_on


def _drop_in(func, *, atol=None, **options):
    """A stand-in drop-in: its own ``atol``, the rest passed on to gradproof.check."""


def test_a_misspelt_option_names_the_closest_spelling() -> None:
    with pytest.raises(gradproof.InvalidArgument) as caught:
        validate_passed_on(_drop_in, {"tolerance": 1e-3}, to=gradproof.check, own=set())
    text = str(caught.value)
    assert text.startswith("`tolerance`=0.001: is neither an argument of")
    assert "did you mean `tol`?" in text
    assert "its arguments are func, atol;" in text.replace("_drop_in's", "its")


def test_the_options_gradproof_check_takes_pass() -> None:
    validate_passed_on(
        _drop_in, {"tol": 1e-3, "mode": "probe", "seed": 3}, to=gradproof.check, own=set()
    )


def test_an_option_the_drop_in_sets_itself_is_refused() -> None:
    with pytest.raises(gradproof.InvalidArgument, match=r"^`batched`=False: "):
        validate_passed_on(_drop_in, {"batched": False}, to=gradproof.check, own={"batched"})


def test_positional_arguments_of_check_are_not_options() -> None:
    with pytest.raises(gradproof.InvalidArgument, match=r"^`grad`="):
        validate_passed_on(_drop_in, {"grad": None}, to=gradproof.check, own=set())


class _Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args):
        self.calls += 1
        return self.f(*args)


def test_torch_drop_ins_name_the_option_before_calling_func() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import gradproof.torch as gt

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    func = _Counted(torch.sin)
    calls = {
        "tolerance": lambda: gt.gradcheck(func, (x,), tolerance=1e-3),
        "full_jacobain": lambda: gt.gradgradcheck(func, (x,), full_jacobain=True),
    }
    for name, call in calls.items():
        with pytest.raises(gradproof.InvalidArgument, match=f"^`{name}`="):
            call()
    assert func.calls == 0
    assert gt.gradgradcheck(func, (x,), full_jacobian=True)  # its own, through **options


def test_check_module_names_the_option_before_running_the_model() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import gradproof.torch as gt

    model = torch.nn.Linear(2, 1)
    loss_fn = _Counted(torch.nn.functional.mse_loss)
    with pytest.raises(gradproof.InvalidArgument, match="did you mean `seed`"):
        gt.check_module(model, loss_fn, torch.randn(4, 2), torch.randn(4, 1), seeds=3)
    assert loss_fn.calls == 0


def test_jax_check_names_the_option_before_calling_f() -> None:
    pytest.importorskip("jax", reason="JAX is not installed")
    import jax.numpy as jnp

    import gradproof.jax as gj

    f = _Counted(lambda p: jnp.sum(p**2))
    with pytest.raises(gradproof.InvalidArgument, match=r"^`mdoe`='probe': .*`mode`"):
        gj.check(f, jnp.ones(3), mdoe="probe")
    assert f.calls == 0


def test_dask_check_names_the_option_before_any_task() -> None:
    pytest.importorskip("distributed", reason="Dask is not installed")
    import gradproof.dask

    loss = _Counted(lambda p: float(np.sum(p**2)))
    with pytest.raises(gradproof.InvalidArgument, match=r"^`shceme`='central': .*`scheme`"):
        gradproof.dask.check(loss, np.ones(3), lambda p: 2 * p, shceme="central")
    assert loss.calls == 0


@pytest.mark.parametrize("entry", [gradproof.check, gradproof.assert_gradients_match])
def test_a_misspelt_keyword_to_check_is_named_before_the_loss_runs(entry) -> None:
    calls = []

    def loss(p):
        calls.append(1)
        return float(np.sum(p**2))

    with pytest.raises(gradproof.InvalidArgument) as caught:
        entry(loss, np.ones(3), lambda p: 2 * p, tolerance=1e-3)
    text = str(caught.value)
    name = entry.__name__
    assert text.startswith("`tolerance`=0.001: is ")
    assert f"not an argument of gradproof.{name}" in text or (
        f"neither an argument of gradproof.{name}" in text
    )
    assert "did you mean `tol`?" in text and "eps, tol, scheme" in text
    assert calls == []
    # the right spelling runs, and a misspelling far from any argument has no guess
    assert gradproof.check(loss, np.ones(3), lambda p: 2 * p, tol=1e-3).passed
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gradproof.check(loss, np.ones(3), lambda p: 2 * p, zzz=1)
    assert "did you mean" not in str(caught.value)
