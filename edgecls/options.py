"""Options declared once: a command's settings dataclass holds each option's default, help and choices in its
field metadata (`option`), and the command line is built from it (`edgecls.cli.options_command`), so help, default
and validation cannot drift apart. Here only the metadata and the two checks the option dataclasses share: no typer,
so library code declares its options freely."""

from __future__ import annotations

from edgecls.errors import ConfigError


def option(help: str, *, flag: str | tuple[str, ...] | None = None, choices: tuple = (), cli: bool = True) -> dict:
    """Field metadata for a command-line option: its help, its flag(s) when not `--field-name`, the values it takes
    (listed in the help; the dataclass checks them) and `cli=False` for a field the command line does not set."""
    return {"help": help, "flag": flag, "choices": tuple(choices), "cli": cli}


DATA_DIR = option("dataset root (default: $EDGECLS_DATA)")
PUBLIC_KEY = option(
    "use the bundle only if signed by this Ed25519 public key (PEM file; default: $EDGECLS_PUBLIC_KEY when set)"
)
SKIP_BAD_IMAGES = option("image folders: leave out (and name) undecodable or truncated files instead of failing")


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def check_at_least(values: dict, minimum: float) -> None:
    """Each {flag: value} that is set must be ≥ `minimum`."""
    for flag, value in values.items():
        if value is not None and value < minimum:
            raise ConfigError(f"{flag} must be ≥ {minimum}, got {value}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_size(text: str, flag: str = "--frame-size") -> tuple[int, int]:
    """'640x480' → (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"{flag} must look like 640x480, got {text!r}") from exc
    if width < 1 or height < 1:
        raise ConfigError(f"{flag} must be at least 1x1, got {text!r}")
    return width, height


def parse_address(text: str, flag: str = "--serve") -> tuple[str, int]:
    """'127.0.0.1:8080' → ('127.0.0.1', 8080)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{flag} must look like 127.0.0.1:8080 (HOST:PORT), got {text!r}")
    return host, int(port)
