"""The console entry point: runs the app and turns the errors a user can fix into one line with the fix."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from rich.markup import escape

from edgecls.cli.app import (
    app,
    mark_entry_point,
)
from edgecls.console import console
from edgecls.errors import EdgeclsError

EXTRAS = {
    "train": {"torch", "torchvision", "onnx", "onnxconverter_common", "sklearn"},
    "modelopt": {"modelopt"},
    "serve": {"pytriton", "tritonclient"},
    "cpu": {"onnxruntime", "cv2"},
}
FLAVOUR_HINT = (
    " — or [gpu] on a desktop NVIDIA GPU; on a Jetson keep JetPack's OpenCV and NVIDIA's onnxruntime-gpu "
    "(venv --system-site-packages, the [jetson] extra)"
)


DISK_ERRORS = {
    errno.ENOSPC: (
        "The disk is full: free space or write elsewhere. Every edgecls file is written atomically, so nothing "
        "half-written was left under a final name."
    ),
    errno.EDQUOT: (
        "Your disk quota is used up: free space or write elsewhere. Nothing half-written was left under a final name."
    ),
    errno.EACCES: "Permission denied: run as a user who may use that path, or choose another one.",
    errno.EPERM: "Operation not permitted: run as a user who may use that path, or choose another one.",
    errno.EROFS: "That file system is read-only: choose a writable path.",
}


def _print_error(markup: str) -> None:
    """One line on stderr, never wrapped by rich (a log or a test reads the message whole), even under --quiet."""
    console.quiet = False
    console.print(f"[bold red]error:[/] {markup}", soft_wrap=True)


def numpy_abi_mismatch(exc: ImportError) -> str | None:
    """The one-line cause and fix when a compiled module (JetPack's or Debian's OpenCV, TensorRT's bindings) was built
    against numpy 1.x and the venv holds numpy 2: the import fails deep inside that module with numpy's own words."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
    if "numpy.core.multiarray failed to import" not in text and "compiled using NumPy 1.x" not in text:
        return None
    import numpy

    return (
        f"a compiled module (typically the system's OpenCV or TensorRT, built against numpy 1.x) cannot load beside "
        f"numpy {numpy.__version__} from {Path(numpy.__file__).parent}: in this venv run `pip uninstall numpy` "
        "(the system's numpy is then used, as JetPack's modules need) or `pip install 'numpy<2'`, then retry"
    )


def main() -> None:
    """The console entry point: only here may `train` replace the process (tcmalloc), never under a test runner."""
    mark_entry_point()
    try:
        app()
    except EdgeclsError as exc:
        _print_error(escape(str(exc)))  # hints such as 'edgecls[serve]' are text
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = next((extra for extra, modules in EXTRAS.items() if (exc.name or "").split(".")[0] in modules), None)
        if extra is None:
            raise
        _print_error(
            f"this command needs {exc.name}, which comes with the {escape(f'[{extra}]')} extra: "
            f"pip install {escape(repr(f'edgecls[{extra}]'))}" + (escape(FLAVOUR_HINT) if extra == "cpu" else "")
        )
        sys.exit(2)
    except ImportError as exc:
        reason = numpy_abi_mismatch(exc)
        if reason is None:
            raise
        _print_error(escape(reason))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        where = f": {exc.filename}" if exc.filename else " while writing"  # a write on an open file names none
        _print_error(f"{escape(f'{exc.strerror or os.strerror(exc.errno)}{where}')}. {escape(DISK_ERRORS[exc.errno])}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
