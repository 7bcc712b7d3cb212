"""One rich console for progress and tables, on stderr so stdout stays clean for pipes.

Outside a terminal (logs, CI) rich would wrap tables at 80 columns; a wider fixed width keeps them readable.
"""

import sys

from rich.console import Console

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
