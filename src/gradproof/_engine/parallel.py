"""Evaluate the loss in other processes: ``workers=n`` or any ``concurrent.futures.Executor``.

Work is shipped as (coordinates, offsets) pieces; each worker holds its own copy
of the parameters and returns loss values, so memory per worker is O(N) and the
caller's arrays never leave the parent. ``workers=n`` starts n processes with the
``spawn`` method (safe next to threads, unlike ``fork``) and one BLAS thread each,
so that n workers do not fight over the cores.

Faults: the workers show the parent what they evaluate, and since when (``budget.Watch``):
a worker's death, or an evaluation past ``timeout=`` or far past the budget, ends the
check with a ``WorkerError`` naming the point and the cause, and however a check ends,
its workers end with it. A user's executor only has the wait for it bounded.

Requirement: the loss must be picklable. Closures and lambdas are sent with
``cloudpickle`` where it is installed (it comes with Dask); otherwise the loss
must be a module-level function. This is checked before any work is sent.
A ``ThreadPoolExecutor`` needs no pickling (but a thread-safe loss).

Executors that need special handling plug in without the engine knowing them:
a package declares an adapter in the ``gradproof.executors`` entry-point group,
named after the top-level module its executors come from (gradproof's own
``distributed = "gradproof.dask._executor:adapt"``). The adapter takes the
executor and the pickled payload and returns an executor; one that implements
:class:`PieceExecutor` gets the work as pieces to size (``faults``: errors of a lost worker).
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gradproof._engine import budget
from gradproof._engine.budget import Limits, Watch
from gradproof._engine.evaluate import worker_error
from gradproof._engine.tree import Layout
from gradproof._errors import WorkerError, invalid

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PIECES_PER_WORKER = 4
# Local pieces hold at most this many coordinates, so that a long check returns work
# (and moves the progress bar) every second or so, not once per quarter of the run.
# Shipping a piece costs well under a millisecond.
COORDINATES_PER_PIECE = 500
POLL_SECONDS = 0.1  # how often the parent looks at its workers while it waits
_SPAWN = multiprocessing.get_context("spawn")
_STATE: dict[str, Any] = {}  # in a worker process: the evaluator built by _initialise
ADAPTER_GROUP = "gradproof.executors"  # entry points: executor module -> adapter
_ADAPTERS: dict[str, Callable[[Executor, Any], Executor] | None] = {}  # looked up once each
_STANDARD = frozenset({"concurrent", "multiprocessing", "loky"})  # need no adapter


@runtime_checkable
class PieceExecutor(Protocol):
    """An executor that runs :class:`Pool`'s pieces of work its own way.

    Returned by an adapter from the ``gradproof.executors`` entry points (see
    the module docstring); :class:`Pool` asks it how many pieces to cut and
    hands it each piece, instead of submitting :func:`evaluate_piece` itself.
    """

    def pieces(self, n: int, k: int) -> int:
        """How many pieces to cut ``n`` coordinates of ``k`` evaluations each into."""
        ...

    def submit_piece(self, indices: np.ndarray, offsets: np.ndarray) -> Future[np.ndarray]:
        """Evaluate J at ``indices`` shifted by ``offsets`` (shape ``offsets.shape``)."""
        ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release what the executor holds for this check."""
        ...


def validate_workers(workers: Any, executor: Any) -> None:
    """Validate ``workers`` and ``executor`` (at most one of them)."""
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1
    ):
        raise invalid(
            "workers",
            workers,
            "must be a whole number of processes >= 1",
            "pass workers=2 (for example) or leave workers=None to evaluate in this process",
        )
    if executor is not None and not isinstance(executor, Executor):
        raise invalid(
            "executor",
            executor,
            f"is a {type(executor).__name__}, not a concurrent.futures.Executor",
            "pass a ProcessPoolExecutor, a ThreadPoolExecutor or a Dask client's "
            "get_executor(), or use workers=n",
        )
    if workers is not None and executor is not None:
        raise invalid(
            "workers",
            workers,
            "cannot be combined with `executor` (the executor already decides the workers)",
            "pass either workers=n or executor=...",
        )


def dumps(value: Any, argument: str, why: str, shown: Any = None) -> bytes:
    """Pickle ``value`` (with cloudpickle where installed), or raise InvalidArgument.

    The error names ``argument`` and shows ``shown`` (default: ``value``), so a
    payload that bundles the loss with the parameters is reported as the loss.
    """
    try:
        import cloudpickle

        pickler: Any = cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with the dask extra
        pickler = pickle
    try:
        return bytes(pickler.dumps(value))
    except Exception as error:
        hint = "" if pickler is not pickle else "install cloudpickle to send closures, or "
        raise invalid(
            argument,
            value if shown is None else shown,
            f"must be picklable to {why}, but pickling it raised {type(error).__name__}: {error}",
            f"{hint}define the loss at module level, and keep open files, locks and GPU "
            "handles out of it and out of the objects it refers to (create them inside the "
            "loss, or in a worker initializer), or leave workers=None and executor=None",
        ) from error


class Pool:
    """Runs coordinate evaluations on worker processes or a user's executor."""

    def __init__(
        self,
        loss: Callable[[Any], Any],
        layout: Layout,
        theta: np.ndarray,
        batched: bool,
        *,
        workers: int | None = None,
        executor: Executor | None = None,
    ) -> None:
        state = (loss, layout, theta, batched)
        self.layout, self.owned = layout, executor is None
        self.idle = True  # no evaluation left running: the workers may exit in their own time
        if isinstance(executor, ThreadPoolExecutor):
            self.payload: Any = state
            self.parallelism = int(getattr(executor, "_max_workers", 2) or 2)
        else:
            why = (
                f"run in worker processes ({'workers=' + str(workers) if workers else 'executor'})"
            )
            self.payload = dumps(state, "loss", why, shown=loss)
            self.parallelism = int(workers) if workers else 4
        self.watch = Watch.create(_SPAWN, int(workers or 1)) if executor is None else None
        self.processes: Mapping[int, Any] = {}  # pid -> process, of the workers it started
        if self.watch is not None:
            self.executor: Executor = _start(int(workers or 1), self.payload, self.watch)
            self.processes = self.executor._processes  # the executor's own (live) mapping
            self.payload = None  # the workers hold it already
        else:
            self.executor = adapted(executor, self.payload)  # type: ignore[arg-type]
        self.faults = (BrokenProcessPool, *getattr(self.executor, "faults", ()))

    def coordinates(
        self,
        indices: np.ndarray,
        offsets: np.ndarray,
        advance: Callable[..., None],
        progress: Any = None,
        limits: Limits | None = None,
        typical: float = 0.0,
    ) -> np.ndarray:
        """J(theta + offsets[i, k] e_indices[i]) for every i, k, in parallel; shape (n, k).

        ``advance(evaluations, chunk=True)`` is called as each chunk comes back;
        ``progress`` (a gradproof._engine.progress.Progress) is told how many were sent;
        ``limits`` bound one evaluation (``typical``: its usual seconds), else WorkerError.
        """
        n, k = offsets.shape
        self.idle = False
        pieces = _Pieces(indices, k)
        out = np.empty((n, k), dtype=np.complex128 if np.iscomplexobj(offsets) else np.float64)
        try:
            for rows in np.array_split(np.arange(n), self._pieces(n, k)):
                if rows.size:
                    pieces.rows[self._submit(indices[rows], offsets[rows])] = rows
            if progress is not None:
                progress.chunks_sent(len(pieces.rows))
            self._collect(pieces, out, advance, limits or Limits(), typical * self.parallelism)
        except self.faults as error:  # a worker was lost: say which, and at which point
            raise self._lost(pieces, pieces.rows, error) from error
        finally:
            for future in pieces.rows:
                future.cancel()
        self.idle = True
        return out

    def close(self) -> None:
        """Shut down the workers this pool started; a user's executor only lets go of the check."""
        if self.owned:
            _stop(self.executor, list(self.processes.values()), graceful=self.idle)
        elif isinstance(self.executor, PieceExecutor):
            self.executor.shutdown()

    def _collect(
        self, pieces: _Pieces, out: np.ndarray, advance: Any, limits: Limits, typical: float
    ) -> None:
        """Fill ``out`` as pieces come back, and look at the workers while none does."""
        pending = set(pieces.rows)
        waiting = time.perf_counter()
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            for future in done:
                out[pieces.rows[future]] = future.result()
                advance(pieces.rows[future].size * pieces.k, chunk=True)
                waiting = time.perf_counter()
            if pending:
                self._check(pieces, pending, limits, typical, time.perf_counter() - waiting)

    def _check(
        self, pieces: _Pieces, pending: Any, limits: Limits, typical: float, waited: float
    ) -> None:
        """Raise WorkerError if a worker died or an evaluation has run too long."""
        if self.watch is None:
            late = pieces.late(pending, limits, typical, waited)
        elif any(p.exitcode is not None for p in list(self.processes.values())):
            raise self._lost(pieces, pending, None)
        else:
            late = self.watch.late(limits, typical)
        if late:
            where = "a worker process (now ended)" if self.owned else "the executor (yours to end)"
            kind = "timeout" if "timeout" in late[0][0] else "budget"
            what = f"The loss {late[0][0]}, on {where}"
            raise worker_error(self.layout, what, kind, [p for _, p in late], budget.SLOW_FIX)

    def _lost(self, pieces: _Pieces, pending: Any, error: BaseException | None) -> WorkerError:
        """The WorkerError for a lost worker: which one, how, and what it was evaluating."""
        died = self.watch.died(list(self.processes.values())) if self.watch else None
        cause, points = died or (f"{type(error).__name__}: {error}", [])
        what = f"A worker {'process died' if died else 'was lost'} ({cause}) evaluating the loss"
        points = points or pieces.points(pending)
        return worker_error(self.layout, what, cause.split(":")[0], points, budget.CRASH_FIX)

    def _pieces(self, n: int, k: int) -> int:
        if isinstance(self.executor, PieceExecutor):
            return self.executor.pieces(n, k)
        local = max(self.parallelism * PIECES_PER_WORKER, -(-n // COORDINATES_PER_PIECE))
        return min(n, local)

    def _submit(self, indices: np.ndarray, offsets: np.ndarray) -> Future[np.ndarray]:
        if isinstance(self.executor, PieceExecutor):
            return self.executor.submit_piece(indices, offsets)
        return self.executor.submit(evaluate_piece, self.payload, indices, offsets)


class _Pieces:
    """One call's pieces of work: each future's rows of the result, and their coordinates."""

    def __init__(self, indices: np.ndarray, k: int) -> None:
        self.indices, self.k = indices, k
        self.rows: dict[Future[np.ndarray], np.ndarray] = {}

    def points(self, futures: Any) -> list[Any]:
        """The coordinates of ``futures``' pieces, as ``(index,)`` points."""
        return [(int(self.indices[r]),) for f in futures for r in self.rows[f]]

    def late(self, pending: Any, limits: Limits, typical: float, waited: float) -> list[Any]:
        """(why, point) for each coordinate of pieces late on a user's executor: its workers
        run pieces side by side, so the wait for one may not outlast a piece's limits."""
        size = max(self.rows[f].size for f in pending) * self.k
        cause = limits.per_piece(size).overrun(waited, typical * size)
        if cause is None:
            return []
        running = [f for f in pending if f.running()] or pending
        return [(f"{cause} (a piece of {size} evaluations)", p) for p in self.points(running)]


def adapted(executor: Executor, payload: Any) -> Executor:
    """``executor`` as its package's adapter returns it, or unchanged where none is declared.

    Adapters come from the ``gradproof.executors`` entry points, named after the
    top-level module of the executor's class, and are looked up once per module.
    """
    module = type(executor).__module__.partition(".")[0]
    if module in _STANDARD:
        return executor
    if module not in _ADAPTERS:
        found = [e for e in entry_points(group=ADAPTER_GROUP) if e.name == module]
        _ADAPTERS[module] = found[0].load() if found else None
    adapt = _ADAPTERS[module]
    return executor if adapt is None else adapt(executor, payload)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start workers without re-running the caller's script in them.

    ``spawn`` normally imports the main module in each worker, which re-runs an
    unguarded script (no ``if __name__ == "__main__":``) and starts workers
    recursively. The loss travels by cloudpickle, by value, so the workers do
    not need the main module: hide it while they start.
    """
    main = sys.modules.get("__main__")
    if main is None or "cloudpickle" not in sys.modules:
        yield
        return
    names: tuple[str, ...] = ("__file__", "__spec__")
    saved: dict[str, Any] = {name: main.__dict__[name] for name in names if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _start(workers: int, payload: bytes, watch: Watch) -> ProcessPoolExecutor:
    """``workers`` processes, started now (with spawn they would start on first use)."""
    with _one_blas_thread(), _main_not_reimported():
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_SPAWN,
            initializer=_initialise,
            initargs=(payload, watch, os.getpid()),
        )
        try:  # while the environment asks for one BLAS thread each
            for future in [executor.submit(os.getpid) for _ in range(workers)]:
                future.result()
        except BaseException as error:
            _stop(executor, list(executor._processes.values()), graceful=False)
            if not isinstance(error, BrokenProcessPool):
                raise
            raise WorkerError(budget.NO_START, "start") from error
    return executor


def _stop(executor: Executor, processes: list[Any], graceful: bool) -> None:
    """Shut ``executor`` down and end its worker ``processes`` (see :func:`end_processes`)."""
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    budget.end_processes(processes, graceful)
    if manager is not None:  # it returns once the workers are gone
        manager.join(budget.STOP_SECONDS)


def _initialise(payload: bytes, watch: Watch, parent: int) -> None:
    """On a worker: ignore Ctrl-C, take a row of the watch, and build the evaluator."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles it, and ends its workers
    _STATE["evaluator"] = evaluator_from(pickle.loads(payload), watch.claim(parent))


def evaluator_from(state: Any, watch: Any = None) -> Any:
    """A worker's :class:`~gradproof._engine.evaluate.Evaluator` from the unpickled payload."""
    from gradproof._engine.evaluate import Evaluator

    loss, layout, theta, batched = state
    return Evaluator(loss, layout, theta, batched=batched, watch=watch)


def evaluate_piece(payload: Any, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """On a worker: J at ``indices`` shifted by ``offsets``, shape ``offsets.shape``.

    ``payload`` is None where the worker's initializer already holds the
    evaluator, pickled bytes, or (in a thread) the state itself.
    """
    if payload is None:
        evaluator = _STATE["evaluator"]
    elif isinstance(payload, bytes):
        evaluator = evaluator_from(pickle.loads(payload))
    else:
        evaluator = evaluator_from(payload)
    return np.asarray(evaluator.coordinates(indices, offsets))
