"""A Dask client's executor, adapted to gradproof's pieces of work.

:class:`gradproof._engine.parallel.Pool` hands any executor that comes from
``distributed`` (``client.get_executor()``) to :func:`adapt`, which changes
three things and nothing else:

- **The payload travels once per worker, not once per task.** The pickled
  ``(loss, layout, parameters)`` goes to the scheduler once, as the argument of
  a task that only hands it on (:func:`_hold`); the pieces depend on that task,
  so each worker fetches the payload once and each worker thread unpickles the
  loss once and keeps the evaluator. Pieces carry only their coordinates and
  offsets. Being a task's result rather than scattered data, the payload is
  recomputed from the scheduler's copy if every worker holding it dies (Dask
  forgets scattered data whose last holder dies, and cancels what needs it).
- **Tasks are sized to the loss's cost.** A few base-point evaluations on a
  worker measure the seconds per evaluation; :func:`pieces` then cuts the work
  into tasks long enough that Dask's per-task overhead (about 1 ms) stays under
  2% of a task, and into enough tasks (4 per worker thread) to balance the load.
- **Nothing else changes.** Results come back through the same futures, so a
  worker lost mid-check is handled by Dask (it recomputes the lost tasks on the
  workers that remain) and an exception raised by the loss on a worker reaches
  the caller with the worker's traceback. A task that kills every worker it runs
  on ends, after Dask's allowed failures, in ``KilledWorker``, which the adapter
  lists as a fault (``faults``): the check raises ``WorkerError`` naming its
  coordinates.

The cost model, per check: ``len(payload)`` bytes to the scheduler and to each
worker once (again to a worker after a pause of a few seconds between rounds of
work: Dask's active memory manager drops spare copies that no task waits for);
per task about ``8 + 8k`` bytes per coordinate out (its index and ``k``
offsets) and ``8k`` back (``16k`` for complex steps), plus Dask's few hundred
bytes. A full check makes at most two rounds (the central pair, then the
refinement of the coordinates it could not clear).
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from gradproof._engine.parallel import PIECES_PER_WORKER, evaluator_from

TASK_OVERHEAD = 1e-3  # seconds Dask spends per task: scheduling, messages, (de)serialisation
OVERHEAD_SHARE = 0.02  # the most of a task's time that overhead may take
TIMING_SECONDS = 0.05  # base-point evaluations on a worker: at most this long ...
TIMING_CALLS = 5  # ... and at most this many (at least one)
CACHE_SIZE = 4  # evaluators kept per worker process, at most (one per thread and check)

_CACHE: OrderedDict[tuple[str, int], Any] = OrderedDict()  # on a worker: (key, thread) -> Evaluator
_CACHE_LOCK = threading.Lock()


def pieces(n: int, k: int, seconds_per_evaluation: float, threads: int) -> int:
    """How many Dask tasks to cut ``n`` coordinates of ``k`` evaluations each into.

    A task gets at least ``TASK_OVERHEAD / OVERHEAD_SHARE`` (50 ms) of evaluations,
    so that overhead stays under 2%; and there are at most ``PIECES_PER_WORKER``
    (4) tasks per worker thread, enough to balance the load and to make a lost
    worker cheap to recover from.

    Args:
        n: coordinates to evaluate.
        k: evaluations per coordinate.
        seconds_per_evaluation: the loss's measured cost.
        threads: worker threads in the cluster.

    Returns:
        The number of tasks, between 1 and ``n``.

    >>> pieces(92_000, 2, 3e-4, threads=2)   # the 92k MLP on 2 workers: 8 tasks
    8
    >>> pieces(47, 2, 2e-5, threads=2)       # 2 ms of work in all: one task
    1
    >>> pieces(10_000, 2, 1e-3, threads=400)  # 25 coordinates (50 ms) per task
    400
    """
    per_task = k * max(float(seconds_per_evaluation), 1e-9)
    least = max(1, math.ceil(TASK_OVERHEAD / OVERHEAD_SHARE / per_task))
    return int(max(1, min(n, max(1, threads) * PIECES_PER_WORKER, n // least)))


class DaskExecutor(Executor):
    """Wraps ``client.get_executor()``: the payload sent once, tasks sized by cost.

    Built by :func:`adapt`, the ``distributed`` adapter in gradproof's
    ``gradproof.executors`` entry points. It is a
    :class:`gradproof._engine.parallel.PieceExecutor`: the Pool asks :meth:`pieces`
    how many tasks to make, then hands each to :meth:`submit_piece`.
    """

    def __init__(self, inner: Executor, payload: bytes) -> None:
        self.inner = inner
        self.client: Any = inner._client  # type: ignore[attr-defined]
        self.payload = payload
        self.shipped: Any = None  # a distributed.Future of the payload (see _hold)
        self.seconds_per_evaluation: float | None = None
        from distributed import KilledWorker

        # A task whose loss kills every worker that runs it: Dask gives up on it after
        # `distributed.scheduler.allowed-failures` tries; the Pool names its coordinates.
        self.faults = (KilledWorker,)

    @property
    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def pieces(self, n: int, k: int) -> int:
        """How many tasks the Pool should cut ``n`` coordinates into (see :func:`pieces`)."""
        return pieces(n, k, self._ship(), self.threads)

    def submit_piece(self, indices: np.ndarray, offsets: np.ndarray) -> Future[np.ndarray]:
        """One task: J at ``indices`` shifted by ``offsets``, on a worker holding the payload."""
        self._ship()
        return self.inner.submit(_run_piece, self.shipped, self.shipped.key, indices, offsets)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release the payload on the cluster; the client and its cluster stay up."""
        shipped, self.shipped = self.shipped, None
        if shipped is not None:
            shipped.release()

    def _ship(self) -> float:
        """Send the payload to the cluster (once) and time the loss on a worker."""
        if self.shipped is None or self.seconds_per_evaluation is None:
            self.shipped = self.client.submit(_hold, self.payload, pure=False)
            timing = self.inner.submit(_time_base, self.shipped, self.shipped.key)
            self.seconds_per_evaluation = float(timing.result())
        return self.seconds_per_evaluation


def adapt(executor: Executor, payload: bytes) -> Executor:
    """``executor`` made a :class:`DaskExecutor` if it is a Dask client's, else unchanged."""
    if isinstance(executor, DaskExecutor) or not hasattr(executor, "_client"):
        return executor
    return DaskExecutor(executor, payload)


def _hold(payload: bytes) -> bytes:
    """On a worker: the payload, as a task's result (recomputable, unlike scattered data)."""
    return payload


def _cached_evaluator(payload: bytes, key: str) -> Any:
    """On a worker: this thread's evaluator for the check whose payload has ``key``."""
    slot = (key, threading.get_ident())
    with _CACHE_LOCK:
        evaluator = _CACHE.get(slot)
        if evaluator is not None:
            _CACHE.move_to_end(slot)
            return evaluator
    evaluator = evaluator_from(pickle.loads(payload))
    held = _held_keys()
    with _CACHE_LOCK:
        for done in [other for other in _CACHE if held is not None and other[0] not in held]:
            del _CACHE[done]  # that check is over: its payload is gone from this worker
        _CACHE[slot] = evaluator
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return evaluator


def _held_keys() -> Any:
    """The keys this worker holds now (None: not running in a Dask worker)."""
    from distributed import get_worker

    try:
        return get_worker().data
    except ValueError:
        return None


def _run_piece(payload: bytes, key: str, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """On a worker: J at the given coordinates and offsets, shape ``offsets.shape``."""
    return np.asarray(_cached_evaluator(payload, key).coordinates(indices, offsets))


def _time_base(payload: bytes, key: str) -> float:
    """On a worker: seconds per loss evaluation, from a few evaluations at the base point."""
    evaluator = _cached_evaluator(payload, key)
    fastest = math.inf
    started = time.perf_counter()
    for _ in range(TIMING_CALLS):
        before = time.perf_counter()
        evaluator.value()
        fastest = min(fastest, time.perf_counter() - before)
        if time.perf_counter() - started > TIMING_SECONDS:
            break
    return fastest
