"""A progress bar on stderr: evaluations done, time left, and chunks done on workers.

``progress=None`` (the default) shows it only when stderr is a terminal and the
check has already run for about a second, so quick checks and logs stay clean;
``True`` always shows it (on stderr), ``False`` never. The bar is plain text
redrawn with a carriage return, at most ten times a second; at the end its final
state stays, on a line of its own.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from gradproof._errors import invalid

DELAY = 1.0  # seconds before an automatic bar appears
REFRESH = 0.1  # seconds between redraws
WIDTH = 24


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
    """Counts loss evaluations against a (possibly changing) total and draws the bar.

    >>> import io
    >>> stream = io.StringIO()
    >>> bar = Progress(True, stream=stream)
    >>> bar.total = 10
    >>> bar.advance(5); bar.close()
    >>> "5/10 evaluations" in stream.getvalue()
    True

    With ``workers=`` or ``executor=`` (a Dask cluster, say) the bar also counts
    the chunks of coordinates the workers have sent back:

    >>> stream = io.StringIO()
    >>> bar = Progress(True, stream=stream)
    >>> bar.total = 10
    >>> bar.chunks_sent(4); bar.advance(5, chunk=True); bar.close()
    >>> "1/4 chunks" in stream.getvalue()
    True
    """

    def __init__(self, progress: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = progress
        self.enabled = progress is True or (progress is None and _is_tty(self.stream))
        self.started = time.perf_counter()
        self.done = 0
        self.total = 0
        self.label = "gradproof"
        self.chunks_done = 0
        self.chunks_total = 0
        self._drawn = False
        self._last = 0.0

    def chunks_sent(self, count: int) -> None:
        """``count`` more chunks of coordinates went out to workers."""
        self.chunks_total += count

    def advance(self, evaluations: int, chunk: bool = False) -> None:
        """``evaluations`` more done (``chunk``: they were one chunk from a worker)."""
        self.done += evaluations
        self.chunks_done += int(chunk)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.mode is None and now - self.started < DELAY:
            return
        if self._drawn and now - self._last < REFRESH and self.done < self.total:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        total = max(self.total, self.done)
        fraction = self.done / total if total else 0.0
        filled = round(WIDTH * fraction)
        elapsed = now - self.started
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        eta = f"{left:.0f} s left" if left == left else "estimating"
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{self.done}/{total} evaluations, {eta} "
        )
        if self.chunks_total:
            line = line[:-1] + f", {self.chunks_done}/{self.chunks_total} chunks from workers "
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False
