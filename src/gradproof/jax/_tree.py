"""JAX pytrees as gradproof blocks: names from key paths, floating leaves checked.

Every floating-point or complex leaf of the pytree (a JAX or numpy float or
complex array, or a Python float or complex) is a block, named by its key path:
``"layers.0.W"`` for dicts, lists and tuples, attribute names for registered
dataclasses and equinox-style modules (``"encoder.weight"``). Other leaves
(integer arrays, Python ints, functions) are held fixed, as
``equinox.filter_grad`` does. Blocks are listed in the user's order (a dict's
insertion order, not JAX's sorted keys), so a report's table reads like the model.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradproof._errors import invalid

tree_util = jax.tree_util


@dataclass(frozen=True)
class Pytree:
    """A pytree split into checked (floating-point or complex) leaves and fixed ones."""

    treedef: Any
    leaves: tuple[Any, ...]  # every leaf, in JAX's flattening order
    names: tuple[str, ...]  # the name of every leaf, same order
    checked: tuple[int, ...]  # positions of the checked leaves, in the user's order

    @property
    def block_names(self) -> tuple[str, ...]:
        """Names of the checked leaves, in the user's order."""
        return tuple(self.names[i] for i in self.checked)

    @property
    def fixed_names(self) -> tuple[str, ...]:
        """Names of the leaves held fixed (neither floating point nor complex)."""
        chosen = set(self.checked)
        return tuple(n for i, n in enumerate(self.names) if i not in chosen)

    def blocks(self) -> dict[str, np.ndarray]:
        """The checked leaves as numpy arrays of their own dtype, by name (for gradproof)."""
        return {self.names[i]: _as_numpy(self.leaves[i]) for i in self.checked}

    def rebuild(self, values: Sequence[Any]) -> Any:
        """The pytree with the checked leaves replaced by ``values`` (in the user's order)."""
        leaves = list(self.leaves)
        for position, value in zip(self.checked, values, strict=True):
            leaves[position] = value
        return tree_util.tree_unflatten(self.treedef, leaves)


def split(params: Any) -> Pytree:
    """Name and classify the leaves of ``params``.

    Raises:
        InvalidArgument: no floating-point or complex leaf at all.

    >>> import numpy as np
    >>> tree = split({"b": np.zeros(2), "z": np.ones(2, complex), "steps": 3})
    >>> tree.block_names, tree.fixed_names
    (('b', 'z'), ('steps',))
    """
    found: list[tuple[tuple[str, ...], tuple[int, ...], Any]] = []
    _walk(params, (), (), found)
    leaves, treedef = tree_util.tree_flatten(params)
    same = len(leaves) == len(found) and all(
        a is b for a, b in zip(leaves, [f[2] for f in found], strict=True)
    )
    if not same:
        # A node whose flattening differs between calls: fall back to JAX's own paths.
        paths = tree_util.tree_flatten_with_path(params)[0]
        found = [(tuple(_key(k) for k in path), (i,), leaf) for i, (path, leaf) in enumerate(paths)]
    names = _unique([".".join(parts) if parts else "params" for parts, _, _ in found])
    checked = []
    for position, (_, _, leaf) in enumerate(found):
        if _is_checked(leaf):
            checked.append(position)
    if not checked:
        raise invalid(
            "params",
            params,
            "holds no floating-point or complex leaf to differentiate",
            "pass a pytree (dict, list, tuple, registered dataclass or module) of float arrays",
        )
    checked.sort(key=lambda position: found[position][1])
    return Pytree(treedef, tuple(leaves), tuple(names), tuple(checked))


def _walk(
    node: Any,
    parts: tuple[str, ...],
    order: tuple[int, ...],
    out: list[tuple[tuple[str, ...], tuple[int, ...], Any]],
) -> None:
    """Collect (name parts, user-order key, leaf) depth first, in JAX's leaf order."""
    children = tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
    if len(children) == 1 and children[0][0] == ():
        out.append((parts, order, node))
        return
    keys = list(node.keys()) if isinstance(node, Mapping) else []
    for index, (path, child) in enumerate(children):
        (key,) = path
        name = _key(key, node, child)
        position = index
        if isinstance(key, tree_util.DictKey) and key.key in keys:
            position = keys.index(key.key)  # insertion order, not JAX's sorted order
        _walk(child, (*parts, name), (*order, position), out)


def _key(key: Any, parent: Any = None, child: Any = None) -> str:
    if isinstance(key, tree_util.DictKey):
        return str(key.key)
    if isinstance(key, tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, tree_util.GetAttrKey):
        return str(key.name)
    if isinstance(key, tree_util.FlattenedIndexKey):
        # A class registered without keys (register_pytree_node_class): name the
        # child by the attribute that holds it, where exactly one does.
        attributes = [n for n, v in _attributes(parent).items() if v is child]
        return attributes[0] if len(attributes) == 1 else str(key.key)
    return str(key).strip(".[]'\"")


def _attributes(obj: Any) -> dict[str, Any]:
    found = dict(getattr(obj, "__dict__", {}))
    for name in getattr(type(obj), "__dataclass_fields__", {}):
        if hasattr(obj, name):
            found[name] = getattr(obj, name)
    return found


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}#{count}")
    return out


def _is_checked(leaf: Any) -> bool:
    """Whether ``leaf`` is differentiated: a float or complex array or Python number."""
    if isinstance(leaf, (bool, np.bool_)):
        return False
    if isinstance(leaf, numbers.Integral):
        return False
    if isinstance(leaf, numbers.Complex):  # a Python float or complex
        return True
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return False
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating))


def _as_numpy(leaf: Any) -> np.ndarray:
    array = np.asarray(leaf)
    if array.dtype.kind not in "fc":  # bfloat16 and other JAX-only floats
        array = np.asarray(leaf, dtype=np.float32)
    return array
