"""``budget=`` and ``timeout=``: limits on a check's work and time, and how they are watched.

A float is seconds, an int is loss evaluations, and a string is either (``"30s"``,
``"2.5min"``, ``"5000"``): the command line passes its ``--budget`` through as
typed. The modes ask :meth:`Budget.left` before each piece of work, so a check
stops between pieces, never in the middle of one, and says what it covered.

An evaluation that overruns is another matter: :class:`Limits` says when one has
run too long, past ``timeout=`` or past the budget's end by more than a grace
(:meth:`Budget.grace`), and :class:`WorkerError` says so. On worker processes a
:class:`Watch` shows the parent what each worker is evaluating, and since when,
so that it can end them in time (and name the point where one died); in this
process an evaluation can only be judged once it returns (docs/guarantees.md).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gradproof._errors import invalid

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")
STOP_SECONDS = 2.0  # how long a worker may take to exit before it is terminated, then killed
# An evaluation may run past the budget's end by the largest of these before it counts
# as hung: seconds, a share of the budget, or multiples of the loss's typical evaluation.
GRACE_SECONDS = 1.0
GRACE_SHARE = 0.1
GRACE_EVALUATIONS = 10
CRASH_FIX = (
    "evaluate the loss at that point without workers (workers=None) to see the error; a "
    "crash in native code is often an index out of bounds or a library built for another "
    "machine, a SIGKILL often the system running out of memory"
)
SLOW_FIX = (
    "find out why the loss hangs or is slow there (evaluate it at that point without "
    "workers); if it is merely slow, raise `timeout` or `budget`"
)
SERIAL_FIX = (
    "find out why the loss is slow at that point; if it is merely slow, raise `timeout` or "
    "`budget`; with workers=n, a call that hangs is ended while it runs (this one was noticed "
    "only once it returned)"
)
NO_START = (
    "The worker processes could not start: unpickling the loss or the parameters failed in "
    "them (their traceback is above, on stderr). Fix: define the loss where the workers "
    "can import it (a module, not a notebook cell or __main__), or leave workers=None"
)
_FIX = (
    "pass seconds as a float (budget=30.0), loss evaluations as an int (budget=5000), "
    "or a string such as '30s', '2min' or '5000'; or leave budget=None for no limit"
)


@dataclass(frozen=True)
class Budget:
    """What a check may spend: ``seconds`` or ``evaluations`` (None: unlimited).

    >>> Budget.parse("30s").seconds, Budget.parse(5000).evaluations
    (30.0, 5000)
    >>> Budget.parse(None).left(10**9)
    True
    """

    seconds: float | None = None
    evaluations: int | None = None
    started: float = field(default_factory=time.perf_counter)
    reserved: int = 0  # evaluations kept back for work that must follow (a closing check)

    @classmethod
    def parse(cls, budget: Any, reserved: int = 0) -> Budget:
        """Validate ``budget`` and turn it into a :class:`Budget`.

        ``reserved`` evaluations are kept back for work that must follow the
        budgeted part (the check's closing determinism test).

        Raises:
            InvalidArgument: not a positive number or a string such as "30s".
        """
        if budget is None:
            return cls(reserved=reserved)
        if isinstance(budget, bool):
            raise invalid("budget", budget, "must be seconds or loss evaluations", _FIX)
        if isinstance(budget, numbers.Integral):
            if int(budget) < 1:
                raise invalid("budget", budget, "must allow at least 1 loss evaluation", _FIX)
            return cls(evaluations=int(budget), reserved=reserved)
        if isinstance(budget, numbers.Real):
            if not (math.isfinite(float(budget)) and float(budget) > 0):
                raise invalid("budget", budget, "must be a finite number of seconds > 0", _FIX)
            return cls(seconds=float(budget), reserved=reserved)
        if isinstance(budget, str):
            return cls._parse_text(budget, reserved)
        raise invalid(
            "budget", budget, f"is a {type(budget).__name__}, not seconds or evaluations", _FIX
        )

    @classmethod
    def _parse_text(cls, text: str, reserved: int) -> Budget:
        match = _PATTERN.match(text.lower())
        if match is None or match.group(2) not in ("", *_UNITS):
            raise invalid(
                "budget", text, "must be a number, optionally followed by s, min or h", _FIX
            )
        number, unit = match.groups()
        if unit:
            return cls.parse(float(number) * _UNITS[unit], reserved)
        if re.fullmatch(r"[0-9]+", number):
            return cls.parse(int(number), reserved)
        raise invalid(
            "budget",
            text,
            "is a fractional number of evaluations (without a unit, a string counts evaluations)",
            _FIX,
        )

    @property
    def limited(self) -> bool:
        return self.seconds is not None or self.evaluations is not None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self, evaluations: int, need: int = 0) -> bool:
        """Whether ``need`` more evaluations fit after ``evaluations`` were spent."""
        if self.evaluations is not None and evaluations + need + self.reserved > self.evaluations:
            return False
        return self.seconds is None or self.elapsed() < self.seconds

    def room(self, evaluations: int, seconds_per_evaluation: float) -> int | None:
        """How many more evaluations fit (None: no limit)."""
        counts = []
        if self.evaluations is not None:
            counts.append(self.evaluations - self.reserved - evaluations)
        if self.seconds is not None:
            rate = max(seconds_per_evaluation, 1e-9)
            counts.append(int((self.seconds - self.elapsed()) / rate))
        return max(0, min(counts)) if counts else None

    def grace(self, typical: float = 0.0) -> float:
        """Seconds an evaluation may run past the end of a time budget before it counts as hung.

        The largest of 1 s, a tenth of the budget and 10 typical evaluations
        (``typical`` seconds each): chunks of work are planned to end with the
        budget, so only an evaluation far slower than the loss's usual ones
        overruns it by more.

        >>> Budget.parse(3.0).grace(), Budget.parse(60.0).grace(), Budget.parse(3.0).grace(0.5)
        (1.0, 6.0, 5.0)
        """
        share = GRACE_SHARE * self.seconds if self.seconds is not None else 0.0
        return max(GRACE_SECONDS, share, GRACE_EVALUATIONS * typical)

    def describe(self) -> str:
        if self.evaluations is not None:
            return f"{self.evaluations} loss evaluations"
        if self.seconds is not None:
            return f"{self.seconds:g} s"
        return "no limit"


@dataclass(frozen=True)
class Limits:
    """How long one evaluation may run: ``timeout`` seconds, and not far past the budget.

    >>> Limits(timeout=2.0).overrun(3.0)
    'ran for 3 s, past `timeout`=2 s'
    >>> Limits(timeout=2.0).overrun(1.0) is None
    True
    """

    timeout: float | None = None
    budget: Budget | None = None

    def per_piece(self, evaluations: int) -> Limits:
        """The limits for a piece of ``evaluations`` run one after another (a timeout each)."""
        timeout = None if self.timeout is None else self.timeout * max(1, evaluations)
        return Limits(timeout=timeout, budget=self.budget)

    def overrun(self, running: float, typical: float = 0.0) -> str | None:
        """Why an evaluation that has run ``running`` seconds until now has run too long.

        None while it has not: it is within ``timeout``, and it has not run past
        the budget's end by more than :meth:`Budget.grace`, given ``typical``, the
        seconds such an evaluation usually takes. Until that is known (0: the first
        call) the budget judges nothing, as the set-up is always spent.
        """
        if self.timeout is not None and running > self.timeout:
            return f"ran for {running:.3g} s, past `timeout`={self.timeout:g} s"
        budget = self.budget
        if budget is None or budget.seconds is None or typical <= 0:
            return None
        now = budget.elapsed()
        late = now - max(now - running, budget.seconds)
        if late > budget.grace(typical):
            return f"ran {late:.3g} s past the end of the budget ({budget.describe()})"
        return None


class Watch:
    """What each worker process is evaluating, and since when: a table in shared memory.

    The parent makes it (:meth:`create`) and hands it to its workers; each worker
    takes a row (:meth:`claim`) and marks the start and end of every evaluation
    (it is the worker's ``Evaluator.watch``); the parent reads :meth:`busy`.
    A row: pid, coordinate, points in the call, offset (real, imaginary), start (NaN: idle).
    """

    FIELDS = 6

    def __init__(self, table: Any, claimed: Any) -> None:
        self.table, self.claimed, self.at = table, claimed, -1

    @classmethod
    def create(cls, context: Any, workers: int) -> Watch:
        """A table for ``workers`` rows, in memory shared through ``context`` (spawn)."""
        return cls(context.RawArray("d", workers * cls.FIELDS), context.Value("i", 0))

    def claim(self, parent: int) -> Watch:
        """On a worker: take the next free row, and exit when process ``parent`` does.

        A parent killed outright (SIGKILL) cannot end its workers: they end themselves.
        """
        threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
        with self.claimed.get_lock():
            self.at, self.claimed.value = self.claimed.value * self.FIELDS, self.claimed.value + 1
        self.table[self.at : self.at + self.FIELDS] = [os.getpid(), -1, 0, 0.0, 0.0, math.nan]
        return self

    def begin(self, where: Any, count: int) -> None:
        """An evaluation at ``where`` (``(index, offset, ...)`` or words) starts now."""
        index, offset = (int(where[0]), complex(where[1])) if isinstance(where, tuple) else (-1, 0j)
        self.table[self.at + 1 : self.at + 5] = [index, count, offset.real, offset.imag]
        self.table[self.at + 5] = time.time()

    def end(self) -> None:
        """The evaluation is over: the row is idle."""
        self.table[self.at + 5] = math.nan

    def busy(self) -> dict[int, tuple[float, tuple[int, float | complex, int]]]:
        """pid -> (seconds it has been evaluating, (index, offset, points)), per busy worker."""
        out = {}
        for row in range(len(self.table) // self.FIELDS):
            pid, index, count, re, im, since = self.table[
                row * self.FIELDS : (row + 1) * self.FIELDS
            ]
            if pid and index >= 0 and not math.isnan(since):
                out[int(pid)] = (
                    time.time() - since,
                    (int(index), complex(re, im) if im else re, int(count)),
                )
        return out

    def late(self, limits: Limits, typical: float) -> list[tuple[str, Any]]:
        """(why, point) for each worker whose call has run too long (``typical``: per point)."""
        busy = self.busy().values()
        return [(c, p) for s, p in busy if (c := limits.overrun(s, typical * p[2])) is not None]

    def died(self, processes: list[Any], patience: float = 1.0) -> tuple[str, list[Any]] | None:
        """How the first of the workers' ``processes`` to die died, in words, and the
        point it was evaluating (if it was); None if every one lives after ``patience``
        seconds (a dead worker's exit code can lag the executor's news of its death)."""
        deadline = time.monotonic() + patience
        while True:
            dead = [p for p in processes if p.exitcode is not None]
            # Once one worker dies the executor terminates the others: the first got no SIGTERM.
            first = [p for p in dead if p.exitcode != -signal.SIGTERM]
            if first or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        first = first or dead
        if not first:
            return None
        busy = self.busy()
        return exit_cause(first[0].exitcode), [busy[p.pid][1] for p in first if p.pid in busy]


def exit_cause(code: int) -> str:
    """A dead worker's exit code in words.

    >>> exit_cause(3), exit_cause(-11)
    ('exit code 3', 'signal SIGSEGV: a crash in native code')
    """
    if code >= 0:
        return f"exit code {code}"
    try:
        name = f"signal {signal.Signals(-code).name}"
    except ValueError:
        name = f"signal {-code}"
    if name[7:] in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"):
        return f"{name}: a crash in native code"
    return name + (": killed outright, by the system or a person" if code == -9 else "")


def end_processes(processes: list[Any], graceful: bool) -> None:
    """End worker ``processes``: idle ones may first exit by themselves (``graceful``);
    the rest are terminated and, if they still live, killed. Every one is waited for."""
    deadline = time.monotonic() + (STOP_SECONDS if graceful else 0.0)
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _exit_without(parent: int) -> None:
    """On a worker: exit as soon as process ``parent`` is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
