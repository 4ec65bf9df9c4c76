"""Parity with torch's own checkers: the same pairs, a right Function and a planted bug each.

Every row is a custom ``autograd.Function`` checked twice, right and with a planted
bug (a factor, a sign, one element, a transpose; for torch's options a wrong jvp, an
undefined gradient read as ones, a nondeterministic backward, a backward vmap cannot
run, a detached second derivative). torch's ``gradcheck`` / ``gradgradcheck`` and
gradproof's run on the same pair; wherever torch is right (passes the right one,
fails the bug), gradproof must be right too, and its report must name the input and
the element. docs/parity.md points here, row by row.

Oracle: each right backward is autograd's vector-Jacobian product of the forward's
own torch code, so it is right by construction; each bug is a known change to it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from collections.abc import Callable

import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof.torch as gt  # noqa: E402
from gradproof.torch._common import JIT_DEPRECATION_WARNING  # noqa: E402
from gradproof.torch._inputs import input_names  # noqa: E402

D, C = torch.float64, torch.complex128
Bug = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (input grad, output grad)


def double(grad, g):
    return 2 * grad


def negate(grad, g):
    return -grad


def half(grad, g):
    return 0.5 * grad


def transpose(grad, g):
    return grad.T


def conjugate(grad, g):  # a conj() missing (or extra) in a complex backward
    return grad.conj()


def one_element(grad, g):  # element 1 picks up half of the first output gradient: an index bug
    bad = grad.clone()
    bad.view(-1)[1] += 0.5 * g.reshape(-1)[0]
    return bad


@dataclasses.dataclass(frozen=True)
class Row:
    """One pair: ``forward`` (its parameter names are the inputs' names), the bug and its input."""

    name: str
    forward: Callable[..., torch.Tensor]
    shapes: tuple[tuple[int, ...], ...]
    bug: Bug
    which: int = 0
    positive: bool = False  # inputs drawn away from zero (log, sqrt, division)
    dtype: torch.dtype = D  # the inputs' dtype: complex128 rows check complex inputs

    def inputs(self) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(len(self.name))
        made = [torch.randn(*s, generator=gen, dtype=self.dtype) for s in self.shapes]
        if self.positive:
            made = [m.abs() + 0.5 for m in made]
        return tuple(m.requires_grad_(True) for m in made)

    def function(self, *, planted: bool) -> Callable[..., torch.Tensor]:
        """The row's Function (right or with its bug), called with the forward's signature."""
        forward, bug, which = self.forward, self.bug, self.which

        class Op(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *xs):
                ctx.save_for_backward(*xs)
                return forward(*xs)

            @staticmethod
            def backward(ctx, g):
                with torch.enable_grad():
                    leaves = [x.detach().requires_grad_(True) for x in ctx.saved_tensors]
                    grads = list(torch.autograd.grad(forward(*leaves), leaves, g))
                if planted:
                    grads[which] = bug(grads[which], g)
                return tuple(grads)

        return functools.wraps(forward)(lambda *xs: Op.apply(*xs))


ROWS = [
    Row("sin", lambda x: torch.sin(x), ((4,),), double),
    Row("exp", lambda x: torch.exp(x), ((4,),), negate),
    Row("log", lambda x: torch.log(x), ((4,),), one_element, positive=True),
    Row("tanh", lambda x: torch.tanh(x), ((2, 3),), half),
    Row("sigmoid", lambda x: torch.sigmoid(x), ((5,),), one_element),
    Row("softplus", lambda x: torch.nn.functional.softplus(x), ((4,),), double),
    Row("mul", lambda x, y: x * y, ((3,), (3,)), double, which=1),
    Row("div", lambda x, y: x / y, ((3,), (3,)), negate, which=1, positive=True),
    Row("cube", lambda x: x**3, ((4,),), one_element),
    Row("sqrt", lambda x: torch.sqrt(x), ((4,),), half, positive=True),
    Row("matmul", lambda a, b: a @ b, ((3, 3), (3, 3)), transpose),
    Row("outer", lambda x, y: torch.outer(x, y), ((3,), (2,)), double, which=1),
    Row("softmax", lambda x: torch.softmax(x, -1), ((2, 4),), one_element),
    Row("logsumexp", lambda x: torch.logsumexp(x, -1), ((3, 4),), negate),
    Row("cumsum", lambda x: torch.cumsum(x, 0), ((5,),), one_element),
    Row("conv1d", lambda x, w: torch.nn.functional.conv1d(x, w), ((1, 2, 6), (3, 2, 3)), double,
        which=1),
    Row("normalize", lambda x: (x - x.mean()) / x.std(), ((6,),), one_element),
    Row("cross", lambda a, b: torch.linalg.cross(a, b), ((3,), (3,)), negate),
    Row("det", lambda a: torch.linalg.det(a), ((3, 3),), transpose),
    Row("inverse", lambda a: torch.linalg.inv(a + 4 * torch.eye(3, dtype=D)), ((3, 3),),
        transpose),
    Row("weighted_sum", lambda x, w: (x * w).sum(0), ((4, 3), (4, 3)), one_element, which=1),
    Row("mean_square", lambda x: (x**2).mean(), ((3, 3),), double),
    Row("atan2", lambda y, x: torch.atan2(y, x), ((4,), (4,)), negate, which=1),
    Row("hypot", lambda x, y: torch.hypot(x, y), ((4,), (4,)), one_element),
    Row("erf", lambda x: torch.erf(x), ((4,),), half),
    Row("expm1", lambda x: torch.expm1(x), ((4,),), double),
    Row("log1p", lambda x: torch.log1p(x), ((4,),), one_element, positive=True),
    Row("einsum", lambda a, b: torch.einsum("ij,jk->ik", a, b), ((2, 3), (3, 2)), double,
        which=1),
    Row("bilinear", lambda x, a, y: x @ a @ y, ((3,), (3, 3), (3,)), transpose, which=1),
    Row("norm", lambda x: torch.linalg.vector_norm(x), ((5,),), one_element),
    Row("cosine", lambda x, y: torch.cosine_similarity(x, y, dim=0), ((4,), (4,)), negate),
    Row("gelu", lambda x: torch.nn.functional.gelu(x), ((5,),), half),
    Row("polynomial", lambda x: 1 + x + x**2 / 2, ((4,),), one_element),
    # complex: complex inputs (checked as real and imaginary parts), complex outputs, both
    Row("complex_mul", lambda z, w: z * w, ((3,), (3,)), conjugate, dtype=C),
    Row("complex_exp", lambda z: torch.exp(z), ((4,),), double, dtype=C),
    Row("complex_abs", lambda z: torch.abs(z), ((4,),), conjugate, dtype=C),
    Row("complex_matmul", lambda a, b: a @ b, ((3, 3), (3, 3)), transpose, dtype=C),
    Row("complex_fft", lambda z: torch.fft.fft(z), ((5,),), negate, dtype=C),
    Row("complex_one_element", lambda z: z * z.conj() * z, ((4,),), one_element, dtype=C),
    Row("real_to_complex", lambda x: torch.exp(1j * x), ((4,),), half),
]  # fmt: skip


def _torch_verdict(check, fn, inputs, **options) -> bool | str:
    """torch's own verdict: True, False, or the name of the exception it let through."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION_WARNING)
            return check(fn, inputs, raise_exception=False, **options)
    except Exception as error:
        return type(error).__name__


def _named(error: gt.GradcheckError, name: str) -> re.Match[str] | None:
    """The report names the input, and one of its elements, ``name[i, ...]``."""
    report = error.report
    assert name in report.suspects, (name, report.suspects)
    return re.search(rf"^{re.escape(name)}\[[\d, ]+\]", str(error), flags=re.M)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_right_function_passes_both(row):
    fn, inputs = row.function(planted=False), row.inputs()
    assert _torch_verdict(torch.autograd.gradcheck, fn, inputs) is True
    assert gt.gradcheck(fn, inputs) is True


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_planted_bug_fails_both_and_gradproof_names_input_and_element(row):
    fn, inputs = row.function(planted=True), row.inputs()
    assert _torch_verdict(torch.autograd.gradcheck, fn, inputs) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(fn, inputs)
    name = input_names(fn, len(inputs))[row.which]
    assert _named(caught.value, name), str(caught.value)
    if row.bug is one_element:  # the very element is named, and only it
        shape = row.shapes[row.which]
        wrong = caught.value.report.blocks[name].wrong_elements
        if row.dtype.is_complex:  # (real, imaginary) per element: element 1's parts
            assert {w[:-1] for w in wrong} == {_unravel(1, shape)}, wrong
        else:
            assert wrong == (_unravel(1, shape),)


def test_there_are_thirty_rows_and_more():
    assert len(ROWS) + len(OPTION_ROWS) >= 30 and len({r.name for r in ROWS}) == len(ROWS)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


# ------------------------------------------------------------- torch's options


class CubeJvp(torch.autograd.Function):
    """x**3, right in both modes; `factor` scales the jvp."""

    generate_vmap_rule = True
    factor = 1.0

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        (ctx.x,) = inputs
        ctx.save_for_backward(ctx.x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g

    @classmethod
    def jvp(cls, ctx, t):
        return cls.factor * 3 * ctx.x**2 * t


class CubeJvpDoubled(CubeJvp):
    factor = 2.0


class TwoOutputs(torch.autograd.Function):
    """(2x, x**2) with set_materialize_grads(False); `as_ones` reads a None grad as ones."""

    as_ones = False

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return 2 * x, x**2

    @classmethod
    def backward(cls, ctx, g1, g2):
        (x,) = ctx.saved_tensors
        fill = torch.ones_like(x) if cls.as_ones else torch.zeros_like(x)
        g1, g2 = (fill if g is None else g for g in (g1, g2))
        return 2 * g1 + 2 * x * g2


class TwoOutputsNoneAsOnes(TwoOutputs):
    as_ones = True


class Square(torch.autograd.Function):
    """x**2; `noise` adds relative noise to the backward, `numpy` leaves torch in it."""

    noise, numpy = 0.0, False

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @classmethod
    def backward(cls, ctx, g):
        (x,) = ctx.saved_tensors
        if cls.numpy:
            return torch.from_numpy(2 * x.detach().numpy() * g.detach().numpy())
        if cls.noise:
            return 2 * x * g * (1 + cls.noise * torch.randn_like(x))
        return 2 * x * g


class SquareNoisy(Square):
    noise = 1e-9


class SquareNumpy(Square):
    numpy = True


class CubeJvpNumpy(CubeJvp):
    @staticmethod
    def jvp(ctx, t):
        return torch.from_numpy(3 * ctx.x.detach().numpy() ** 2 * t.detach().numpy())


class Gelu(torch.autograd.Function):
    """x sigmoid(1.702 x); `detach` detaches the sigmoid in the backward."""

    detach = False

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @classmethod
    def backward(cls, ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(1.702 * x)
        s = s.detach() if cls.detach else s
        return g * (s + 1.702 * x * s * (1 - s))


class GeluDetached(Gelu):
    detach = True


GRADCHECK, GRADGRADCHECK = torch.autograd.gradcheck, torch.autograd.gradgradcheck
OPTION_ROWS = {  # name: (torch's checker, ours, right, bug, options, element named)
    "check_forward_ad": (GRADCHECK, gt.gradcheck, CubeJvp, CubeJvpDoubled,
                         {"check_forward_ad": True}, True),
    "check_undefined_grad": (GRADCHECK, gt.gradcheck, TwoOutputs, TwoOutputsNoneAsOnes, {},
                             True),
    "nondet_tol": (GRADCHECK, gt.gradcheck, Square, SquareNoisy, {}, True),
    "check_batched_grad": (GRADCHECK, gt.gradcheck, Square, SquareNumpy,
                           {"check_batched_grad": True}, False),
    "check_batched_forward_grad": (GRADCHECK, gt.gradcheck, CubeJvp, CubeJvpNumpy,
                                   {"check_forward_ad": True, "check_batched_forward_grad": True},
                                   False),
    "gradgradcheck": (GRADGRADCHECK, gt.gradgradcheck, Gelu, GeluDetached, {}, True),
}  # fmt: skip


@pytest.mark.parametrize("option", list(OPTION_ROWS))
def test_each_option_passes_the_right_function_and_fails_the_bug_as_torch_does(option):
    theirs, ours, right, bug, options, element = OPTION_ROWS[option]
    x = torch.randn(4, dtype=D, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert _torch_verdict(theirs, right.apply, (x,), **options) is True
    assert _torch_verdict(theirs, bug.apply, (x,), **options) is False
    assert ours(right.apply, (x,), **options) is True
    with pytest.raises(gt.GradcheckError) as caught:
        ours(bug.apply, (x,), **options)
    named = _named(caught.value, "x")
    assert named if element else "raised" in str(caught.value)
