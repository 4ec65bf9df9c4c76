"""The tensors of a batch that `check_module(wrt="inputs")` checks: found, named, replaced.

A batch is ``(inputs, *targets)``, each a tensor or a tuple, list or dict of
them; every floating tensor in it is a block, named by its place in the batch
as the call wrote it: ``batch[1]``, ``batch[0][1]``, ``batch[0]['ids']``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch

from gradproof._errors import invalid

Wrt = Literal["parameters", "inputs", "all"]
WRT = ("parameters", "inputs", "all")


def validate_wrt(wrt: Any) -> None:
    """``wrt`` must be one of :data:`WRT`."""
    if not isinstance(wrt, str) or wrt not in WRT:
        raise invalid(
            "wrt",
            wrt,
            f"must be one of {list(WRT)}",
            "pass wrt='parameters' (the model's parameters, the default), 'inputs' (the "
            "batch's floating tensors) or 'all' (both)",
        )


def batch_leaves(batch: tuple[Any, ...]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every floating tensor of ``batch``, named by its place in it.

    >>> x, y = torch.zeros(2), torch.zeros(1)
    >>> [n for n, _ in batch_leaves(((x, torch.ones(2, dtype=torch.long)), {"t": y}))]
    ['batch[0][0]', "batch[1]['t']"]
    """
    yield from _leaves(batch, "batch")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield path, value
    elif isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}[{key!r}]")


def replaced(value: Any, by_id: Mapping[int, torch.Tensor]) -> Any:
    """``value`` with each tensor whose ``id`` is in ``by_id`` replaced (the structure rebuilt).

    >>> x = torch.zeros(2)
    >>> replaced((x, [x, 3]), {id(x): torch.ones(2)})[1][0].tolist()
    [1.0, 1.0]
    """
    if isinstance(value, torch.Tensor):
        return by_id.get(id(value), value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(replaced(v, by_id) for v in value)
    if isinstance(value, Mapping):
        return {k: replaced(v, by_id) for k, v in value.items()}
    return value
