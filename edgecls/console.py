"""One rich console for progress and tables, on stderr so stdout stays clean for pipes.

Outside a terminal (logs, CI) rich would wrap tables at 80 columns; a wider fixed width keeps them readable.
"""

import sys
import time

from rich.console import Console

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
LOG_EVERY_S = 10.0


def progress(items, description: str, total: int | None = None):
    """`items`, with a progress bar and time left on a terminal (transient: it leaves no trace). Outside one (nohup,
    `| tee`, systemd, CI) a bar draws nothing, so a line with the count, elapsed and remaining time is logged after
    the first item (the rate is known from then on), every LOG_EVERY_S seconds and at the end: long work is never
    silent."""
    if not console.is_terminal:
        yield from _logged(items, description, total)
        return
    with progress_bar() as bar:
        yield from bar.track(items, total=total, description=description)


def progress_bar(disable: bool = False):
    """The terminal's progress bar: description, bar, count and time left; transient, so it leaves no trace."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=disable)


class StepLog:
    """Outside a terminal: a line with the count, elapsed and remaining time after the first step, every LOG_EVERY_S
    seconds and at `close` (for loops that drive a progress bar step by step, like a training epoch)."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total, self.done = description, total, 0
        self.started = self.last = time.monotonic()

    def advance(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.done == 1 or now - self.last >= LOG_EVERY_S:
            self.last = now
            self._print(now)

    def close(self) -> None:
        if self.done:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        console.print(f"{self.description}: {_status(self.done, self.total, now - self.started)}", soft_wrap=True)


def _logged(items, description: str, total: int | None):
    log = StepLog(description, total if total is not None else (len(items) if hasattr(items, "__len__") else None))
    for item in items:
        yield item
        log.advance()
    log.close()


def _status(done: int, total: int | None, elapsed: float) -> str:
    if not total:
        return f"{done} done, {elapsed:.0f} s"
    left = elapsed / done * (total - done)
    return f"{done}/{total} ({done / total:.0%}), {elapsed:.0f} s elapsed, about {left:.0f} s left"
