"""Which of a bundle's graphs runs, where, and whose signature it must carry (`LoadOptions`).

Declared once, here, with its help (the command line is built from these fields), and checked when the options are
made, before a model is loaded. Standard library only: `edgecls --help` reads these fields without loading numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.names import BACKENDS, PRECISIONS
from edgecls.options import PUBLIC_KEY, check_at_least, check_choice, option

DEFAULT_TOP_K = 5  # what Classifier, edgecls serve and the `export --triton` Python model answer with


@dataclass(frozen=True)
class LoadOptions:
    """Which of a bundle's graphs runs, where, and whose signature it must carry: `Classifier.load`'s keyword
    arguments, by name (`Classifier.load(bundle, **asdict(options))`)."""

    backend: str = field(default="auto", metadata=option("inference backend", choices=("auto", *BACKENDS)))
    precision: str = field(default="auto", metadata=option("graph precision", choices=("auto", *PRECISIONS)))
    device: str = field(default="auto", metadata=option("auto, cpu, cuda or cuda:N"))
    threads: int | None = field(
        default=None,
        metadata=option("host inference threads (default: the backend's batch-1 default; 0: all cores)"),
    )
    public_key: str | None = field(
        default=None,
        metadata=PUBLIC_KEY,
    )

    def __post_init__(self) -> None:
        check_choice("--backend", self.backend, ("auto", *BACKENDS))
        check_choice("--precision", self.precision, ("auto", *PRECISIONS))
        check_at_least({"--threads": self.threads}, 0)
