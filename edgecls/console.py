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


def _logged(items, description: str, total: int | None):
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    started = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if done == 1 or now - last >= LOG_EVERY_S:
            last = now
            console.print(f"{description}: {_status(done, total, now - started)}", soft_wrap=True)
    if done:
        console.print(f"{description}: {_status(done, total, time.monotonic() - started)}", soft_wrap=True)


def _status(done: int, total: int | None, elapsed: float) -> str:
    if not total:
        return f"{done} done, {elapsed:.0f} s"
    left = elapsed / done * (total - done)
    return f"{done}/{total} ({done / total:.0%}), {elapsed:.0f} s elapsed, about {left:.0f} s left"
