"""Progress on stderr: evaluations done, time left, and chunks done on workers.

``progress=None`` (the default) shows it only when stderr is a terminal and the
check has already run for about a second, so quick checks and logs stay clean;
``True`` always shows it (on stderr), ``False`` never.

On a terminal it is a bar redrawn in place with a carriage return, at most ten
times a second; at the end its final state stays, on a line of its own. Anywhere
else (a CI log, a file, a pipe) a carriage return would pile every frame onto one
long line, so it writes a few plain lines instead: one at the start, one at about
every tenth of the work or every few seconds, and one at the end.

The counts are true. While the check sets up (the loss at the base point, its
determinism and noise) there is no total yet, and the bar says "setting up"
rather than claiming to be done. Once the engine's estimate of the total is
passed (probe mode's bisection, a coordinate that needs refining, the closing
determinism test), the total shown is an estimate marked ``~`` that grows with
the count, never one pinned at the count done.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from gradproof._errors import invalid

DELAY = 1.0  # seconds before an automatic bar appears
REFRESH = 0.1  # seconds between redraws on a terminal
LOG_EVERY = 5.0  # seconds between plain lines off a terminal, however slow the work
LOG_STEPS = 10  # off a terminal, a line at every tenth of the work
OVERRUN = 0.1  # past the engine's estimate, assume about this share more is still to come
WIDTH = 24
CLOCK: Callable[[], float] = time.perf_counter  # tests freeze it for exact output


def validate_progress(progress: Any) -> None:
    if progress is not None and not isinstance(progress, bool):
        raise invalid(
            "progress",
            progress,
            "must be True, False or None",
            "pass progress=False to silence the bar, True to force it, or None for a bar "
            "on a terminal for checks longer than about a second",
        )


class Progress:
    """Counts loss evaluations against a (possibly changing) total and shows them.

    The engine sets :attr:`total` when it knows how much work a mode will do,
    and reports each evaluation through :meth:`advance`.

    >>> import io
    >>> stream = io.StringIO()
    >>> seconds = iter([0.0, 2.0, 3.0])  # the clock at start, at advance, at close
    >>> bar = Progress(True, stream=stream, clock=seconds.__next__)
    >>> bar.total = 10
    >>> bar.advance(5); bar.close()
    >>> print(stream.getvalue(), end="")  # not a terminal: plain lines, no carriage return
    gradproof [############............] 5/10 evaluations, 2 s left
    gradproof [########################] done: 5 evaluations in 3.0 s

    With ``workers=`` or ``executor=`` (a Dask cluster, say) it also counts
    the chunks of coordinates the workers have sent back:

    >>> stream = io.StringIO()
    >>> bar = Progress(True, stream=stream)
    >>> bar.total = 10
    >>> bar.chunks_sent(4); bar.advance(5, chunk=True); bar.close()
    >>> "1/4 chunks" in stream.getvalue()
    True
    """

    def __init__(
        self,
        progress: bool | None,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = progress
        self.terminal = _is_tty(self.stream)
        self.enabled = progress is True or (progress is None and self.terminal)
        self.clock = clock if clock is not None else CLOCK
        self.started = self.clock()
        self.done = 0
        self.total = 0  # 0 while setting up: the modes set it when they know their work
        self.label = "gradproof"
        self.chunks_done = 0
        self.chunks_total = 0
        self._shown = False  # anything written yet (close writes the end only then)
        self._last = 0.0  # when the last frame or line was written
        self._step = -1  # off a terminal: the last tenth of the work a line reported
        self._width = 0  # on a terminal: the longest frame, so a shorter one erases it

    def chunks_sent(self, count: int) -> None:
        """``count`` more chunks of coordinates went out to workers."""
        self.chunks_total += count

    def advance(self, evaluations: int, chunk: bool = False) -> None:
        """``evaluations`` more done (``chunk``: they were one chunk from a worker)."""
        self.done += evaluations
        self.chunks_done += int(chunk)
        if not self.enabled:
            return
        now = self.clock()
        if self.mode is None and now - self.started < DELAY:
            return
        if self.terminal:
            if not self._shown or now - self._last >= REFRESH:
                self._frame(self.describe(now), now)
            return
        total = self.shown_total()
        step = math.floor(LOG_STEPS * self.done / total) if total else -1
        if not self._shown or step > self._step or now - self._last >= LOG_EVERY:
            self._step = max(step, self._step)
            self._line(self.describe(now), now)

    def shown_total(self) -> int | None:
        """The total to show: None while setting up; past the engine's, a growing estimate."""
        if self.total <= 0:
            return None
        if self.done < self.total:
            return self.total
        return self.done + max(1, math.ceil(OVERRUN * self.done))

    def describe(self, now: float) -> str:
        """The progress so far in one line, without a carriage return."""
        total = self.shown_total()
        if total is None:
            noun = "evaluation" if self.done == 1 else "evaluations"
            return f"{self.label} [{'.' * WIDTH}] {self.done} {noun}, setting up{self._chunks()}"
        fraction = self.done / total
        filled = round(WIDTH * fraction)
        elapsed = now - self.started
        eta = _time_left(elapsed * (1 - fraction) / fraction) if fraction > 0 else "estimating"
        shown = f"~{total}" if total != self.total else str(total)
        return (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{self.done}/{shown} evaluations, {eta}{self._chunks()}"
        )

    def close(self) -> None:
        """The final count and time, on a line of its own; nothing if nothing was shown."""
        if not self._shown:
            return
        now = self.clock()
        noun = "evaluation" if self.done == 1 else "evaluations"
        text = (
            f"{self.label} [{'#' * WIDTH}] done: {self.done} {noun} "
            f"in {now - self.started:.1f} s{self._chunks()}"
        )
        if self.terminal:
            self._frame(text, now)
            self.stream.write("\n")
        else:
            self._line(text, now)
        self.stream.flush()
        self._shown = False

    def _chunks(self) -> str:
        if not self.chunks_total:
            return ""
        return f", {self.chunks_done}/{self.chunks_total} chunks from workers"

    def _frame(self, text: str, now: float) -> None:
        self._width = max(self._width, len(text))
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._shown, self._last = True, now

    def _line(self, text: str, now: float) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._shown, self._last = True, now


def _time_left(seconds: float) -> str:
    return "under 1 s left" if seconds < 1 else f"{seconds:.0f} s left"


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False
