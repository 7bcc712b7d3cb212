"""The `edgecls` command line: one module per command group, each command parsing its options and calling one
library function. Importing this package registers every command on `app`, in the order `edgecls --help` lists."""

# ruff: noqa: I001  (the order of these imports is the order of the commands in --help)
from edgecls.cli import train, export, check, deploy  # noqa: F401
from edgecls.cli.app import app
from edgecls.cli.entry import main

__all__ = ["app", "main"]
