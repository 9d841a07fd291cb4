"""Progress of long work: "k of N" and the time left.

A progress callback is a function of one message (``progress("reconstructing ...")``). Sweeps
report each task through :func:`report_step`: a callback with a ``step`` method (such as
:data:`STDERR`) gets the structured :class:`Step` and draws a rich progress bar when stderr is
a terminal; any other callback gets the same as a plain line, e.g.
``"3 of 10: response, dataset_002 (about 1 min 20 s left)"``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class Step:
    """Task ``done + 1`` of ``total`` is starting (``done == total``: the sweep finished)."""

    done: int
    total: int
    label: str
    seconds_left: float | None = None  # None until a task has finished
    elapsed: float = 0.0

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def text(self) -> str:
        if self.finished:
            return f"{self.total} of {self.total} done in {format_duration(self.elapsed)}"
        left = (
            f" (about {format_duration(self.seconds_left)} left)"
            if self.seconds_left is not None
            else ""
        )
        return f"{self.done + 1} of {self.total}: {self.label}{left}"


class Clock:
    """Time left from the mean duration of the tasks finished so far."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()

    def step(self, label: str) -> Step:
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        return Step(self.done, self.total, label, left, elapsed)

    def finish_one(self) -> None:
        self.done += 1


def report_step(progress: Callable[[str], None], step: Step) -> None:
    """Send ``step`` to ``progress``: structured if it has a ``step`` method, else as a line."""
    handler = getattr(progress, "step", None)
    if handler is not None:
        handler(step)
    else:
        progress(step.text())


class StderrProgress:
    """The command line's progress: timestamped lines on stderr; sweeps as a rich progress bar
    (k of N, time left) when stderr is a terminal, as plain "k of N" lines otherwise."""

    def __init__(self) -> None:
        self._bar = None
        self._task = None

    def __call__(self, message: str) -> None:
        self._close()
        print(f"[khe-bayes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def step(self, step: Step) -> None:
        if not sys.stderr.isatty():
            self(step.text())
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("\\[khe-bayes] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(step.label, total=step.total)
        self._bar.update(self._task, completed=step.done, description=step.label)
        if step.finished:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None


STDERR = StderrProgress()
