"""Where the drop-in keeps ``func``'s inputs and outputs between evaluations.

:class:`Staging` holds one input tensor per checked input, written in place at every
evaluation (a fresh tensor per call cost a page-faulting allocation as large as the input).
:class:`OutputCache` keeps the outputs of the first check, for later checks to replay.
A later check (another projection, every output element, the batched backward) asks for
the outputs at the points the first one evaluated; they are found by a key exact to the
bit: a small point's every value, a larger one's where it differs from the first point seen.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from gradproof.torch._common import from_numpy

CACHE_ELEMENTS = 1 << 24  # outputs kept for the second and later checks (128 MiB of float64)
SMALL_POINT = 1 << 10  # values of a point (or a batch of points) keyed whole, as they are


class OutputCache:
    """``func``'s outputs by point, up to :data:`CACHE_ELEMENTS` values in all."""

    def __init__(self) -> None:
        self.entries: dict[bytes, list[torch.Tensor]] = {}
        self.elements = 0
        self.base: dict[str, np.ndarray] = {}  # the first point seen: keys are taken from it
        self.enabled = True  # False where no later check will replay the outputs

    def get(self, key: bytes) -> list[torch.Tensor] | None:
        return self.entries.get(key)

    def has_room(self) -> bool:
        return self.enabled and self.elements < CACHE_ELEMENTS

    def add(self, key: bytes, outputs: list[torch.Tensor]) -> None:
        """Keep ``outputs`` where the bound allows; drop them otherwise."""
        size = sum(o.numel() for o in outputs)
        if self.elements + size <= CACHE_ELEMENTS:
            self.entries[key] = outputs
            self.elements += size

    def key(self, point: dict[str, np.ndarray], names: tuple[str, ...], batch: bool) -> bytes:
        """A digest of ``point``'s values, exact to the bit: where they differ from the first
        point seen, and what they are there.

        The points of a check differ from its base point in a few coordinates, so this
        reads the point once and hashes a few values, where hashing every value cost
        more than evaluating ``func`` (half of a 16k-parameter check's time).
        """
        digest = hashlib.blake2b(digest_size=16)
        for name in names:
            values = np.ascontiguousarray(point[name])
            if values.size <= SMALL_POINT:  # hashed whole: less work than finding differences
                digest.update(_whole(values))
                continue
            if name not in self.base:
                self.base[name] = (values[0] if batch else values).copy()
            digest.update(_difference(values, self.base[name]))
        return digest.digest()


def _whole(values: np.ndarray) -> bytes:
    """``values`` as bytes: its shape and dtype, then every value (exact to the bit)."""
    return b"whole" + repr((values.shape, values.dtype.str)).encode() + values.tobytes()


def _difference(values: np.ndarray, base: np.ndarray) -> bytes:
    """``values`` as bytes relative to ``base`` (broadcast over a leading batch axis): its
    shape and dtype, the flat positions whose bits differ, and the values there."""
    header = repr((values.shape, values.dtype.str)).encode()
    if values.dtype != base.dtype or values.shape[values.ndim - base.ndim :] != base.shape:
        return header + values.tobytes()
    differs = (_words(values) != _words(base)).any(axis=-1)
    where = np.flatnonzero(differs)
    return header + where.tobytes() + values.reshape(-1)[where].tobytes()


def _words(array: np.ndarray) -> np.ndarray:
    """``array``'s bits as unsigned integers, one row of words per element (-0.0 is not 0.0)."""
    size = array.dtype.itemsize
    width = 8 if size % 8 == 0 else size
    return array.reshape(-1).view(np.dtype(f"u{width}")).reshape(*array.shape, size // width)


_NUMPY_OF = {torch.float64: np.float64, torch.float32: np.float32}


def fresh_tensor(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A fresh CPU tensor holding ``values`` in ``like``'s dtype (a copy, never a view of them).

    :func:`~gradproof.torch._common.from_numpy`'s result, for less: ``torch.tensor`` costs
    several microseconds a call, a copy in numpy and ``torch.from_numpy`` a fraction. Other
    dtypes and devices go through ``from_numpy``.
    """
    own = _NUMPY_OF.get(like.dtype)
    if own is None or like.device.type != "cpu" or values.dtype != own:
        return from_numpy(values, like)
    return torch.from_numpy(np.array(values, dtype=own, order="C"))


class Staging:
    """One CPU tensor per checked input, reused by every evaluation of one point.

    An output that shares memory with a staged input (``func`` returned a view of it)
    is copied, so that no result changes when the next point is written.
    """

    def __init__(self) -> None:
        self.tensors: dict[int, tuple[torch.Tensor, np.ndarray]] = {}

    def put(self, position: int, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """``values`` in ``like``'s dtype and device: in the staged tensor on the CPU."""
        if like.device.type != "cpu":
            return from_numpy(values, like)
        if position not in self.tensors:
            staged = torch.empty(tuple(like.shape), dtype=like.dtype, device=like.device)
            self.tensors[position] = (staged, staged.numpy())
        staged, view = self.tensors[position]
        np.copyto(view, values, casting="same_kind")
        return staged

    def unaliased(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``outputs``, each one that shares a staged tensor's memory copied."""
        staged = {t.untyped_storage().data_ptr() for t, _ in self.tensors.values()}
        return [o.clone() if o.untyped_storage().data_ptr() in staged else o for o in outputs]
