"""Options declared once: a command's settings dataclass holds each option's default, help and choices in its
field metadata (`option`), and the command line is built from it (`edgecls.cli.options_command`), so help, default
and validation cannot drift apart. Here only the metadata: no typer, so library code declares its options freely."""

from __future__ import annotations


def option(help: str, *, flag: str | tuple[str, ...] | None = None, choices: tuple = (), cli: bool = True) -> dict:
    """Field metadata for a command-line option: its help, its flag(s) when not `--field-name`, the values it takes
    (listed in the help; the dataclass checks them) and `cli=False` for a field the command line does not set."""
    return {"help": help, "flag": flag, "choices": tuple(choices), "cli": cli}


DATA_DIR = option("dataset root (default: $EDGECLS_DATA)")
PUBLIC_KEY = option(
    "use the bundle only if signed by this Ed25519 public key (PEM file; default: $EDGECLS_PUBLIC_KEY when set)"
)
SKIP_BAD_IMAGES = option("image folders: leave out (and name) undecodable or truncated files instead of failing")
