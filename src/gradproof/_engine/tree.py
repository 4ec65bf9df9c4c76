"""Parameter structures: flatten nested dicts/lists/tuples of arrays into blocks.

A *block* is one leaf of the user's structure (a number or an array), named by
its path: ``"W1"``, ``"layers.0.W"``, ``"1"``. The checker works on one float
vector holding every block, row-major, in structure order, and rebuilds fresh
structures from it for each loss evaluation, so the user's objects are never
touched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from gradproof._errors import invalid

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Block:
    """One leaf of the parameter structure."""

    name: str
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    start: int
    is_python_number: bool
    # A complex leaf is checked as its real and imaginary parts: its block has a
    # trailing axis of 2 ([..., 0] real, [..., 1] imaginary) and is built back
    # into complex numbers for the loss.
    is_complex: bool = False
    # A leaf that was a torch tensor: the loss gets its values as a numpy array that
    # refuses torch's functions with a message naming the conversion (TensorValues).
    from_tensor: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # math.prod: ~20x faster than np.prod on a tuple

    @property
    def stop(self) -> int:
        return self.start + self.size

    def unravel(self, flat_index: int) -> tuple[int, ...]:
        """Index tuple into the block of a position within it."""
        if not self.shape:
            return ()
        out = []
        for extent in reversed(self.shape):  # C order, as np.unravel_index (10x faster here)
            flat_index, i = divmod(int(flat_index), extent)
            out.append(i)
        return tuple(reversed(out))


@dataclass(frozen=True)
class Layout:
    """How a parameter structure maps onto one flat vector."""

    treedef: Any
    blocks: tuple[Block, ...]

    @property
    def size(self) -> int:
        return self.blocks[-1].stop if self.blocks else 0

    def block_of(self, flat_index: int) -> Block:
        for block in self.blocks:
            if block.start <= flat_index < block.stop:
                return block
        raise IndexError(flat_index)

    def build(self, flat: np.ndarray, *, batch: int | None = None) -> Any:
        """A fresh structure whose leaves are read-only views into ``flat``.

        With ``batch=K``, ``flat`` has shape (K, N) and every leaf gets a
        leading axis of K (Python numbers become arrays of shape (K,)).
        """
        readonly = flat.view()  # every slice of it is read-only too: one flag per call
        readonly.flags.writeable = False
        leaves: list[Any] = []
        for start, stop, shape, is_number, is_complex, from_tensor in self._spans:
            if batch is None:
                piece = readonly[start:stop]
                if is_complex:
                    piece, shape = _as_complex(piece), shape[:-1]
                if is_number:
                    value = piece[0]
                    leaves.append(complex(value) if np.iscomplexobj(piece) else float(value))
                    continue
                leaf = piece.reshape(shape)
            else:
                rows = readonly[:, start:stop]
                if is_complex:
                    rows, shape = _as_complex(rows), shape[:-1]
                leaf = rows.reshape((batch, *shape))
            leaves.append(leaf.view(TensorValues) if from_tensor else leaf)
        if self._flat_dict is not None:  # the common case, {"W1": ..., "b1": ...}: no recursion
            return dict(zip(self._flat_dict, leaves, strict=True))
        return _unflatten(self.treedef, iter(leaves))

    @cached_property
    def _spans(self) -> tuple[tuple[int, int, tuple[int, ...], bool, bool, bool], ...]:
        return tuple(
            (b.start, b.stop, b.shape, b.is_python_number, b.is_complex, b.from_tensor)
            for b in self.blocks
        )

    @cached_property
    def _flat_dict(self) -> list[Any] | None:
        """The keys, where the structure is one plain dict of leaves; else None."""
        if self.treedef[0] != "dict":
            return None
        _, cls, keys, children = self.treedef
        return list(keys) if cls is dict and all(c == ("leaf",) for c in children) else None


def _name(path: Path) -> str:
    return ".".join(str(p) for p in path) if path else "params"


def _exact_name(path: Path) -> str:
    """A name that tells apart paths whose plain names collide: a string key that holds
    a dot, looks like an index or is empty is quoted (``'a.b'``, ``'0'``)."""

    def part(key: Any) -> str:
        if isinstance(key, str) and ("." in key or key.isdigit() or not key):
            return repr(key)
        return str(key)

    return ".".join(part(p) for p in path) if path else "params"


def unique_names(paths: list[Path]) -> list[str]:
    """Block names, one per path, none repeated.

    Plain names (``layers.0.W``) where they are unique; where two paths print
    alike (``{"a.b": x, "a": {"b": y}}``, or keys ``0`` and ``"0"``), the exact
    form of each, and a ``#k`` suffix as a last resort.

    >>> unique_names([("a.b",), ("a", "b"), (0,), ("0",), ("W",)])
    ["'a.b'", 'a.b', '0', "'0'", 'W']
    """
    plain = [_name(p) for p in paths]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    names = [_exact_name(p) if counts[n] > 1 else n for p, n in zip(paths, plain, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def flatten(params: Any, argument: str = "params") -> tuple[Layout, np.ndarray]:
    """Flatten ``params`` into a layout and a float64 copy of its values.

    Raises:
        InvalidArgument: a leaf is not a real number or numeric array, or the
            structure has no parameters.

    >>> layout, flat = flatten({"W": np.array([[1.0, 2.0]]), "b": 3})
    >>> [b.name for b in layout.blocks], flat.tolist()
    (['W', 'b'], [1.0, 2.0, 3.0])
    """
    leaves: list[tuple[Path, Any]] = []
    treedef = _flatten(params, (), leaves, argument)
    blocks = []
    values = []
    start = 0
    names = unique_names([path for path, _ in leaves])
    for (path, leaf), name in zip(leaves, names, strict=True):
        array, is_number = _leaf_array(leaf, path, argument)
        from_tensor = _is_tensor(leaf)
        if array.size == 0:
            raise invalid(
                argument,
                params,
                f"block {_name(path)!r} is empty (shape {array.shape}): it has no coordinate "
                "to check",
                f"leave {_name(path)!r} out of {argument}, or give it at least one element",
            )
        if array.dtype.kind == "c":  # real and imaginary parts, interleaved
            pairs = np.ascontiguousarray(array, dtype=np.complex128).view(np.float64)
            shape = (*array.shape, 2)
            blocks.append(
                Block(name, path, shape, array.dtype, start, is_number, True, from_tensor)
            )
            values.append(pairs.ravel())
            start += 2 * array.size
            continue
        blocks.append(
            Block(name, path, array.shape, array.dtype, start, is_number, False, from_tensor)
        )
        values.append(np.asarray(array, dtype=np.float64).ravel())
        start += array.size
    if start == 0:
        raise invalid(
            argument,
            params,
            "holds no parameters to check",
            "pass a number, a numpy array, or a dict/list/tuple of them",
        )
    # One float64 block is used as it is (no copy of a 100M-parameter array), read-only:
    # nothing in the check writes the base point.
    flat = values[0].view() if len(values) == 1 else np.concatenate(values)
    flat.flags.writeable = False
    return Layout(treedef, tuple(blocks)), flat


def _flatten(node: Any, path: Path, out: list[tuple[Path, Any]], argument: str) -> Any:
    if isinstance(node, Mapping):
        keys = list(node.keys())
        children = [_flatten(node[k], (*path, k), out, argument) for k in keys]
        return ("dict", type(node), keys, children)
    if isinstance(node, (list, tuple)):
        children = [_flatten(v, (*path, i), out, argument) for i, v in enumerate(node)]
        return ("seq", type(node), None, children)
    out.append((path, node))
    return ("leaf",)


def _unflatten(treedef: Any, leaves: Any) -> Any:
    kind = treedef[0]
    if kind == "leaf":
        return next(leaves)
    _, cls, keys, children = treedef
    values = [_unflatten(child, leaves) for child in children]
    if kind == "dict":
        pairs = dict(zip(keys, values, strict=True))
        return pairs if cls is dict else _rebuild(cls, pairs, dict)
    if cls is list or cls is tuple:
        return cls(values)
    if hasattr(cls, "_fields"):  # namedtuple
        return cls(*values)
    return _rebuild(cls, values, list)


def _rebuild(cls: type, values: Any, fallback: type) -> Any:
    try:
        return cls(values)
    except Exception:  # a container type that cannot be rebuilt from its items
        return fallback(values)


def _leaf_array(leaf: Any, path: Path, argument: str) -> tuple[np.ndarray, bool]:
    where = f"{argument}" if not path else f"{argument} block '{_name(path)}'"
    if isinstance(leaf, (bool, np.bool_)):
        raise invalid(where, leaf, "is a bool, not a number to differentiate", "pass a float")
    if isinstance(leaf, np.generic) and leaf.dtype.kind in "iufc":
        return np.asarray(leaf), False  # a numpy scalar keeps its dtype (float32: reported)
    if isinstance(leaf, numbers.Real):
        return np.asarray(float(leaf)), not isinstance(leaf, np.generic)
    if isinstance(leaf, numbers.Complex):
        return np.asarray(complex(leaf)), True
    leaf = _detached(leaf)
    if isinstance(leaf, np.ndarray) or hasattr(leaf, "__array__"):
        array = np.asarray(leaf)
        if array.dtype.kind in "iufc" or float_eps(array.dtype) is not None:
            return array, False
        if array.dtype.kind == "b":
            raise invalid(
                where,
                leaf,
                "is a bool array, not numbers to differentiate",
                "convert it with .astype(float)",
            )
        raise invalid(
            where,
            leaf,
            f"has dtype {array.dtype}, but gradients are checked for real and complex numbers only",
            "pass a float or complex array (object arrays cannot be checked)",
        )
    raise invalid(
        where,
        leaf,
        f"is a {type(leaf).__name__}, not a number or numeric array",
        "keep only numbers and numpy arrays in the parameter structure, "
        "and pass other inputs to the loss through a closure",
    )


def _as_complex(pairs: np.ndarray) -> np.ndarray:
    """Interleaved (real, imaginary) float64 pairs on the last axis, viewed as complex128.

    A view, read-only like ``pairs``; where the last axis is not contiguous, a
    read-only copy.
    """
    try:
        return pairs.view(np.complex128)
    except ValueError:
        copied = np.ascontiguousarray(pairs).view(np.complex128)
        copied.flags.writeable = False
        return copied


def _is_tensor(leaf: Any) -> bool:
    """Whether ``leaf`` is a torch tensor (read by its type's module: torch is not imported)."""
    return type(leaf).__module__.startswith("torch") and callable(getattr(leaf, "detach", None))


class TensorValues(np.ndarray):
    """The values of a torch tensor in ``params``, as the loss gets them: a numpy array.

    ``gradproof.check`` builds numpy arrays for the loss, so a loss written for torch
    would fail inside the user's code with an unrelated ``TypeError`` (``ndarray @
    Tensor``). Any torch function or operator given one raises InvalidArgument instead,
    naming the conversion and the torch entry points. numpy's results are plain arrays.
    """

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", str(func))
        raise invalid(
            "params",
            "a torch tensor",
            "gradproof.check hands the loss numpy arrays (a torch tensor in params is "
            f"converted to its values), and the loss passed one to torch ({name})",
            "check a torch loss with gradproof.torch.check_module(model, loss_fn, *batch) "
            "or gradproof.torch.gradcheck(func, inputs); or convert inside the loss with "
            "torch.as_tensor(p)",
        )

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False) -> Any:
        plain = np.asarray(array).view(np.ndarray)
        return plain[()] if return_scalar else plain


def _detached(leaf: Any) -> Any:
    """A tensor that tracks gradients (torch), as the values it holds, on the host.

    Read only: the user's tensor is neither detached in place nor moved.
    """
    detach = getattr(leaf, "detach", None)
    if not callable(detach) or isinstance(leaf, np.ndarray):
        return leaf
    values = detach().cpu()
    if str(getattr(values, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16
        values = values.float()
    return values.numpy()


def float_eps(dtype: np.dtype[Any]) -> float | None:
    """Machine epsilon of a floating dtype (complex: of its parts), numpy's or ml_dtypes'
    (bfloat16); else None.

    >>> float_eps(np.dtype(np.float32)) == float(np.finfo(np.float32).eps)
    True
    >>> float_eps(np.dtype(np.int64)) is None
    True
    """
    if dtype.kind in "fc":  # a complex dtype's parts: complex64 rounds as float32
        return float(np.finfo(dtype).eps)
    if dtype.kind == "V" and "float" in dtype.name:
        try:
            import ml_dtypes
        except ImportError:
            return None
        return float(ml_dtypes.finfo(dtype).eps)
    return None
