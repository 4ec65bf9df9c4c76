"""The outputs of ``func`` kept by the drop-in's first check, for later checks to replay.

A later check (another projection, every output element, the batched backward) asks for
the outputs at the points the first one evaluated; they are found by a key exact to the
bit, taken from where a point differs from the first point seen.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

CACHE_ELEMENTS = 1 << 24  # outputs kept for the second and later checks (128 MiB of float64)


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
            if name not in self.base:
                self.base[name] = (values[0] if batch else values).copy()
            digest.update(_difference(values, self.base[name]))
        return digest.digest()


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
