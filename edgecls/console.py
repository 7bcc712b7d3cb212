"""One rich console for progress and tables, on stderr so stdout stays clean for pipes.

Outside a terminal (logs, CI) rich would wrap tables at 80 columns; a wider fixed width keeps them readable.
"""

import sys

from rich.console import Console

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def progress(items, description: str, total: int | None = None):
    """`items`, with a progress bar and time left on the console (transient: it leaves no trace in logs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    with bar:
        yield from bar.track(items, total=total, description=description)
