"""Complex parameters: a real loss of complex z, its gradient dL/d(Re z) + i·dL/d(Im z).

That is what torch's ``.grad`` holds for a real loss of a complex tensor (and twice
the conjugate of the Wirtinger derivative dL/dz). A complex block is checked as its
real and imaginary parts: its block has a trailing axis of 2, ``[..., 0]`` real and
``[..., 1]`` imaginary.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof

RNG = np.random.default_rng(0)
Z = RNG.normal(size=4) + 1j * RNG.normal(size=4)
A = RNG.normal(size=(3, 4)) + 1j * RNG.normal(size=(3, 4))


def loss(p):
    """|A z|², a real loss of complex z."""
    return float(np.sum(np.abs(A @ p["z"]) ** 2))


def grad(p):
    """dL/d(Re z) + i·dL/d(Im z) = 2 Aᴴ A z."""
    return {"z": 2 * A.conj().T @ (A @ p["z"])}


def test_a_right_complex_gradient_passes_and_the_users_array_is_untouched():
    params = {"z": Z.copy()}
    report = gradproof.check(loss, params, grad)
    assert report.status == "pass", str(report)
    assert report.blocks["z"].shape == (4, 2)
    assert params["z"].dtype == np.complex128 and np.array_equal(params["z"], Z)
    assert "complex128 were checked as their real and imaginary parts" in report.precision


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda p: {"z": np.conj(grad(p)["z"])}, "conjugate of the numerical derivative"),
        (lambda p: {"z": np.conj(grad(p)["z"]) / 2}, "Wirtinger derivative dL/dz"),
    ],
    ids=["forgotten-conj", "wirtinger-instead"],
)
def test_a_conjugate_bug_is_named_as_such(wrong, words):
    report = gradproof.check(loss, {"z": Z}, wrong)
    assert report.status == "fail" and report.suspects == ("z",)
    assert report.blocks["z"].diagnosis.kind == "conjugate"
    assert words in report.blocks["z"].diagnosis.sentence


def test_a_wrong_imaginary_part_is_named_by_element_and_part():
    def wrong(p):
        g = grad(p)["z"].copy()
        g[2] += 0.5j
        return {"z": g}

    report = gradproof.check(loss, {"z": Z}, wrong)
    assert report.blocks["z"].wrong_elements == ((2, 1),)  # element 2, imaginary part


def test_mixed_real_and_complex_blocks_batched_and_probed():
    w = RNG.normal(size=3)

    def mixed(p):
        return np.sum(np.abs(p["z"]) ** 2, axis=-1) + np.sum(p["w"] ** 3, axis=-1)

    def mixed_grad(p):
        return {"z": 2 * p["z"], "w": 3 * p["w"] ** 2}

    params = {"z": Z, "w": w}
    assert gradproof.check(mixed, params, mixed_grad, batched=True).passed
    assert gradproof.check(lambda p: float(mixed(p)), params, mixed_grad, mode="probe").passed


def test_a_complex_scalar_and_complex64_parameters():
    assert gradproof.check(lambda p: float(abs(p) ** 2), 1 + 2j, lambda p: 2 * p).passed
    z64 = Z.astype(np.complex64)
    report = gradproof.check(
        lambda p: float(np.sum(np.abs(p.astype(np.complex64)) ** 2)), z64, lambda p: 2 * p
    )
    assert report.passed and report.precision.startswith("float32")


def test_a_real_gradient_for_a_complex_parameter_says_what_is_wanted():
    with pytest.raises(gradproof.InvalidArgument, match=r"must be complex like parameter 'z'"):
        gradproof.check(loss, {"z": Z}, {"z": np.ones(4)})


def test_the_complex_step_cannot_step_complex_parameters():
    with pytest.raises(gradproof.InvalidArgument, match="cannot step complex parameters"):
        gradproof.check(loss, {"z": Z}, grad, scheme="complex")
