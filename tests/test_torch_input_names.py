"""The names gradcheck gives the inputs it checks: ``func``'s positional parameters, read
the way ``inspect.signature`` reads them (a plain function's straight off its code)."""

from __future__ import annotations

import functools
import inspect

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'gradproof[torch]'")

from gradproof.torch._inputs import input_names  # noqa: E402


def plain(x, weight, bias=None, *rest, scale=1.0):
    return x


def only_args(*args):
    return args


def positional_only(a, b, /, c):
    return a


@functools.wraps(plain)
def wrapped(*args, **kwargs):
    return plain(*args, **kwargs)


def announced(*args):
    return args


announced.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("u", "v")]
)


class Callable:
    def __call__(self, left, right):
        return left


class OldStyle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, other):
        return inp * other

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class NewStyle(torch.autograd.Function):
    @staticmethod
    def forward(inp, other):
        return inp * other

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


@pytest.mark.parametrize(
    ("func", "count", "names"),
    [
        (plain, 2, ["x", "weight"]),
        (plain, 3, ["x", "weight", "bias"]),
        (plain, 4, ["input0", "input1", "input2", "input3"]),  # *rest has no names
        (only_args, 2, ["input0", "input1"]),
        (positional_only, 3, ["a", "b", "c"]),
        (lambda p, q: p, 2, ["p", "q"]),
        (wrapped, 2, ["x", "weight"]),  # functools.wraps: the wrapped function's names
        (announced, 2, ["u", "v"]),  # a __signature__ of its own
        (Callable(), 2, ["left", "right"]),
        (functools.partial(plain, scale=2.0), 2, ["x", "weight"]),
        (OldStyle.apply, 2, ["inp", "other"]),  # forward(ctx, ...): ctx is not an input
        (NewStyle.apply, 2, ["inp", "other"]),
        (torch.sin, 1, ["input0"]),
    ],
    ids=lambda v: getattr(v, "__name__", None) or type(v).__name__,
)
def test_inputs_are_named_after_funcs_positional_parameters(func, count, names):
    assert input_names(func, count) == names


def test_a_plain_functions_names_match_what_inspect_reads():
    for func in (plain, only_args, positional_only, lambda a, b=1, *c, d: a):
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        expected = [p.name for p in inspect.signature(func).parameters.values() if p.kind in kinds]
        count = len(expected)
        assert input_names(func, count) == expected
