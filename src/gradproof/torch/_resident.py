"""Evaluations where the checked tensors live: shifted there, in place (check_module, gradcheck).

gradproof's engine builds every point on the host, in one flat float64 vector.
For a model on a GPU that means copying every parameter host to device at each
evaluation, and building each probe's direction on the host. Here a check's
points are made where the parameters are, from what changed: a coordinate is
written into its tensor and put back; a direction's ±1 signs go to the device
once, as bits, and its values ``s * max(|theta|, 1)`` are computed there a chunk
at a time, with ``g . u`` summed as they go. The points are those the host would
build, bit for bit (``theta_i + offset``, ``theta_i + (u_i * step)`` in float64,
then cast to the parameter's dtype), so a check's numbers do not depend on the
way. Where the model runs under ``torch.func.vmap``, many points go in one call,
as rows of one (points x parameters) tensor on the device.

Memory on the device: the base point and the gradient in float64 (one copy each),
one chunk of temporaries, and at most ``ROW_ELEMENTS`` for a batch of points.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from gradproof._engine.resident import Declined, Span
from gradproof._engine.shifts import Along, Recipe, Signs


class Target(Protocol):
    """What a resident evaluation shifts and calls: private tensors it writes in place (by
    block name), the loss at their values, and the loss at many points under vmap."""

    tensors: dict[str, torch.Tensor]
    lock: Any  # one evaluation at a time: the tensors are shared
    dirty: bool  # a host-built point was written into the tensors
    use_vmap: bool

    def in_place(self) -> torch.Tensor:
        """The loss at the values the tensors hold now."""
        raise NotImplementedError

    def vmapped(self, stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss at each row of ``stacked`` (a leading axis of points per tensor)."""
        raise NotImplementedError


# Coordinates per pass over the parameters: one chunk of float64 temporaries. On a CPU
# they stay in cache; on a GPU one kernel covers many.
CHUNK = {"cpu": 1 << 16}
DEVICE_CHUNK = 1 << 24
ROW_ELEMENTS = 1 << 22  # (points x parameters) per vmapped call, in float64: 32 MiB
CPU_SMALL = 1 << 10  # coordinates below which the host builds a CPU check's points

Maker = Callable[[int, int], torch.Tensor]


def open_tensor_resident(
    loss: Target, spans: Sequence[Span], theta: np.ndarray, batched: bool
) -> TensorResident | None:
    """The resident evaluation of ``loss``, or None where its tensors do not allow one
    (a block that is not one of its tensors, a non-contiguous tensor, several devices)."""
    tensors = []
    for span in spans:
        tensor = loss.tensors.get(span.path[0]) if len(span.path) == 1 else None
        if tensor is None or tensor.numel() != span.size or not tensor.is_contiguous():
            return None
        tensors.append(tensor)
    if len({t.device for t in tensors}) != 1 or any(t.is_complex() for t in tensors):
        return None
    if not pays(tensors[0].device, theta.size, batched and loss.use_vmap):
        return None
    return TensorResident(loss, spans, tensors, theta, batched)


def pays(device: torch.device, size: int, vmapped: bool) -> bool:
    """Whether making points in place beats building them on the host. Off the CPU,
    always: the host's way copies every point to the device. On the CPU, only from
    ``CPU_SMALL`` coordinates on (below, setting up costs more than it saves), and not
    where points go in vmapped rows (the host shifts one reused buffer of rows, which is
    as quick); models too large for rows (a probe of millions) gain most."""
    if device.type != "cpu":
        return True
    return size >= CPU_SMALL and not (vmapped and 2 * size <= ROW_ELEMENTS)


def _on(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a float64 tensor on ``device``: shared, not copied, on the CPU (never
    written: the engine's arrays are read-only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch on a read-only array
        shared = torch.from_numpy(np.asarray(array, dtype=np.float64))
    return shared if device.type == "cpu" else shared.to(device)


class TensorResident:
    """:class:`gradproof._engine.resident.Resident` over a :class:`Target`'s tensors (a
    borrowed module's parameters, or the private copies of a function's inputs)."""

    def __init__(
        self,
        loss: Target,
        spans: Sequence[Span],
        tensors: list[torch.Tensor],
        theta: np.ndarray,
        batched: bool,
    ) -> None:
        self.loss = loss
        self.spans = list(spans)
        self.starts = [span.start for span in spans]
        self.flats = [t.detach().view(-1) for t in tensors]  # the tensors' own storage
        self.device = tensors[0].device
        self.theta = theta
        self.base_point = _on(theta, self.device)
        self.size = int(theta.size)
        self.grad: torch.Tensor | None = None
        self.batched = batched
        self.chunk = CHUNK.get(self.device.type, DEVICE_CHUNK)
        self.table = _sign_table(self.device)
        self.sentinels = [
            self._sentinel(flat, span.start) for flat, span in zip(self.flats, spans, strict=True)
        ]
        with loss.lock:  # another thread's evaluator may be using the tensors right now
            loss.dirty = True  # the first call writes theta in: they may hold another point

    def gradient(self, g: np.ndarray) -> None:
        self.grad = _on(g, self.device)

    def base(self) -> torch.Tensor:
        with self.loss.lock, torch.no_grad():
            self._settle()
            value = self.loss.in_place()
            self._verify()
            return value

    def coordinates(self, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        n, k = offsets.shape
        if self._vmap_rows(n * k):
            values = self._vmapped(n * k, lambda p: self._write_coordinates(p, indices, offsets))
            if values is not None:
                return values.reshape(n, k)
        out: list[torch.Tensor] = []
        with self.loss.lock, torch.no_grad():
            self._settle()
            for index, row in zip(indices, offsets, strict=True):
                flat, local = self._place(int(index))
                original = float(self.theta[index])
                try:
                    for offset in row:
                        flat[local] = original + float(offset)
                        out.append(self.loss.in_place())
                finally:
                    flat[local] = original
            self._verify()
        return _host(out).reshape(n, k)

    def directions(self, alongs: Sequence[Along], steps: np.ndarray, span: slice) -> np.ndarray:
        d, k = len(alongs), steps.shape[0]
        makers = [self._maker(along, span) for along in alongs]
        if self._vmap_rows(d * k):
            values = self._vmapped(
                d * k, lambda p: self._write_rows(p, alongs, makers, steps, span)
            )
            if values is not None:
                return values.reshape(d, k)
        out: list[torch.Tensor] = []
        with self.loss.lock, torch.no_grad():
            self._settle()
            try:
                for along, maker in zip(alongs, makers, strict=True):
                    for pieces in self._steps(along, maker, steps, span):
                        for j, lo, hi, point in pieces:
                            self._piece(j, lo, hi).copy_(point)
                        out.append(self.loss.in_place())
            finally:
                for j, lo, hi in self._pieces(span):
                    self._piece(j, lo, hi).copy_(self.base_point[lo:hi])
            self._verify()
        return _host(out).reshape(d, k)

    # -- the points ------------------------------------------------------------------

    def _steps(
        self, along: Along, maker: Maker, steps: np.ndarray, span: slice
    ) -> Iterator[Iterator[tuple[int, int, int, torch.Tensor]]]:
        """For each step, the point ``theta + (u * step)`` over ``span``, in float64, as
        ``(tensor, lo, hi, values)`` pieces; ``g . u`` is summed over the first step's
        pieces and handed to the direction once they are consumed."""
        dot = _Dot(along, self.grad)
        for step in steps:
            yield self._shifted(maker, float(step), span, dot)
            dot.done()

    def _shifted(
        self, maker: Maker, step: float, span: slice, dot: _Dot
    ) -> Iterator[tuple[int, int, int, torch.Tensor]]:
        for j, lo, hi in self._pieces(span):
            u = maker(lo, hi)
            dot.add(lo, hi, u)
            yield j, lo, hi, u.mul_(step).add_(self.base_point[lo:hi])

    def _maker(self, along: Along, span: slice) -> Maker:
        """``maker(lo, hi)``: the direction's values at coordinates ``lo:hi``, float64."""
        recipe = along.recipe()
        if recipe is None:
            return lambda lo, hi: self._filled(along, span, lo, hi)
        packed, skip = self._upload(recipe.signs)
        return lambda lo, hi: self._made(recipe, packed, skip + lo - span.start, lo, hi)

    def _filled(self, along: Along, span: slice, lo: int, hi: int) -> torch.Tensor:
        """A direction only the host can fill: filled there a chunk at a time."""
        host = np.empty(hi - lo)
        along.fill(lo - span.start, host)
        return torch.from_numpy(host).to(self.device)

    def _upload(self, signs: Signs) -> tuple[torch.Tensor, int]:
        """The bytes holding ``signs``, on the device, and the bit their first sign is at."""
        first, last = signs.offset // 8, -(-(signs.offset + signs.size) // 8)
        packed = torch.from_numpy(np.array(signs.packed[first:last])).to(self.device)
        return packed, signs.offset - 8 * first

    def _made(
        self, recipe: Recipe, packed: torch.Tensor, bit: int, lo: int, hi: int
    ) -> torch.Tensor:
        """``s * (max(|theta|, 1) * spacing)`` over ``lo:hi`` (signs from ``bit`` on), rounded
        to the recipe's grid where it has one: the host's arithmetic, operation by operation."""
        theta = self.base_point[lo:hi]
        u = theta.abs().clamp_(min=1.0)
        if recipe.spacing != 1.0:
            u.mul_(recipe.spacing)
        u.mul_(self._signs(packed, bit, hi - lo))
        if recipe.grid_bits < 53:
            mantissa, exponent = torch.frexp(theta + u)
            scale = 2.0**recipe.grid_bits
            u = torch.ldexp(torch.round(mantissa * scale) / scale, exponent).sub_(theta)
        return u

    def _signs(self, packed: torch.Tensor, bit: int, count: int) -> torch.Tensor:
        """``count`` signs from bit ``bit`` of ``packed``, as float64 ±1 (one lookup per byte)."""
        first = bit // 8
        last = -(-(bit + count) // 8)
        signs = self.table[packed[first:last].long()].view(-1)
        skip = bit - 8 * first
        return signs[skip : skip + count]

    # -- where coordinates are -------------------------------------------------------

    def _place(self, index: int) -> tuple[torch.Tensor, int]:
        j = bisect.bisect_right(self.starts, index) - 1
        return self.flats[j], index - self.starts[j]

    def _pieces(self, span: slice) -> Iterator[tuple[int, int, int]]:
        """``(tensor, lo, hi)`` covering ``span``: each within one tensor, at most a chunk."""
        for j, block in enumerate(self.spans):
            lo, hi = max(span.start, block.start), min(span.stop, block.start + block.size)
            for start in range(lo, hi, self.chunk):
                yield j, start, min(hi, start + self.chunk)

    def _piece(self, j: int, lo: int, hi: int) -> torch.Tensor:
        start = self.starts[j]
        return self.flats[j][lo - start : hi - start]

    def _sentinel(
        self, flat: torch.Tensor, start: int, count: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` positions spread over ``flat`` (first and last included), and the values
        theta puts there, in the tensor's dtype."""
        where = torch.linspace(0, flat.numel() - 1, min(count, flat.numel()), device=self.device)
        where = where.round().long()
        return where, self.base_point[start + where].to(flat.dtype)

    def _verify(self) -> None:
        """Decline where the loss moved the tensors (a forward that rescales or clamps its
        own weights in place): a few elements of each, spread over it, must still hold
        theta. Host-built points are written whole before each call, so they stay right."""
        for flat, (where, expected) in zip(self.flats, self.sentinels, strict=True):
            if not torch.equal(flat[where], expected):
                self.loss.dirty = True
                raise Declined("the loss wrote into the tensors it was evaluated at")

    def _settle(self) -> None:
        """Put theta back into the tensors where a host-built point was written into them."""
        if self.loss.dirty:
            for flat, span in zip(self.flats, self.spans, strict=True):
                flat.copy_(self.base_point[span.start : span.start + span.size])
            self.loss.dirty = False

    # -- many points per call --------------------------------------------------------

    def _vmap_rows(self, count: int) -> bool:
        return (
            self.batched and self.loss.use_vmap and 1 < count and count * self.size <= ROW_ELEMENTS
        )

    def _vmapped(self, count: int, write: Callable[[torch.Tensor], None]) -> np.ndarray | None:
        """The loss at every row of a (``count`` x parameters) float64 tensor that ``write``
        changes from theta; None where vmap cannot run the model (the caller loops)."""
        points = self.base_point.expand(count, self.size).clone()
        write(points)
        stacked = {
            span.path[0]: points[:, span.start : span.start + span.size]
            .to(flat.dtype)
            .reshape(count, *span.shape)
            for flat, span in zip(self.flats, self.spans, strict=True)
        }
        try:
            with self.loss.lock:
                return _host([self.loss.vmapped(stacked)])
        except Exception:  # vmap cannot run this model; the loop can (or raises itself)
            self.loss.use_vmap = False
            return None

    def _write_coordinates(
        self, points: torch.Tensor, indices: np.ndarray, offsets: np.ndarray
    ) -> None:
        """Row ``i * k + c``: theta with coordinate ``indices[i]`` shifted by ``offsets[i, c]``."""
        n, k = offsets.shape
        cols = np.repeat(np.asarray(indices, dtype=np.int64), k)
        values = self.theta[cols] + np.asarray(offsets, dtype=np.float64).ravel()
        where = torch.from_numpy(cols).to(self.device)
        points[torch.arange(n * k, device=self.device), where] = torch.from_numpy(values).to(
            self.device
        )

    def _write_rows(
        self,
        points: torch.Tensor,
        alongs: Sequence[Along],
        makers: list[Maker],
        steps: np.ndarray,
        span: slice,
    ) -> None:
        """Row ``d * k + s``: theta shifted by ``steps[s]`` along direction ``d`` over ``span``."""
        for d, (along, maker) in enumerate(zip(alongs, makers, strict=True)):
            for s, pieces in enumerate(self._steps(along, maker, steps, span)):
                for _, lo, hi, point in pieces:
                    points[d * steps.shape[0] + s, lo:hi] = point


class _Dot:
    """``g . u`` over one direction, summed on the device while its first point is built,
    and handed to the direction once complete (only where its recipe asks for it)."""

    def __init__(self, along: Along, grad: torch.Tensor | None) -> None:
        recipe = along.recipe()
        self.along = along
        self.grad = grad if recipe is not None and recipe.dot else None
        self.total: torch.Tensor | None = None
        self.summing = self.grad is not None

    def add(self, lo: int, hi: int, u: torch.Tensor) -> None:
        if self.summing and self.grad is not None:
            part = torch.dot(self.grad[lo:hi], u)
            self.total = part if self.total is None else self.total + part

    def done(self) -> None:
        if self.summing:
            self.summing = False
            self.along.record_dot(0.0 if self.total is None else float(self.total))


def _sign_table(device: torch.device) -> torch.Tensor:
    """Row b: the eight signs byte b packs, as float64 ±1 (``np.packbits`` order: the first
    sign is the top bit; bit 1 is +1)."""
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
    return torch.from_numpy(bits.astype(np.float64) * 2.0 - 1.0).to(device)


def _host(values: list[torch.Tensor]) -> np.ndarray:
    """Scalars (or one vector) computed on the device, to the host in one transfer."""
    stacked = torch.cat([v.detach().reshape(-1) for v in values])
    return stacked.cpu().numpy()
