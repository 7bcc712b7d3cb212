"""Type-check edgecls' TensorRT modules against NVIDIA's `tensorrt-stubs` with mypy, on a machine without TensorRT.

`tensorrt-stubs` (10.13) cannot be used as installed: it puts `tensorrt/__init__.pyi` in site-packages, which
then imports as an empty namespace package and fools every `import tensorrt` probe (ModelOpt's included) into
seeing a TensorRT; it has no py.typed marker, so mypy skips it; and its `tensorrt.pyi` does not parse (parameters
named `in`, and a
parameter without a default after defaulted ones, in six signatures). This script downloads the stubs
into edgecls' cache (`pip install --no-deps --target`, never into the environment), copies them to a
temporary folder, repairs exactly those signatures (`in` → `in_`, `= ...` for the missing defaults), puts the
folder on MYPYPATH and runs mypy on the modules that call TensorRT, ignoring errors inside the stubs
themselves (they also use names like `bool` as types). Exit status: mypy's.

    python tools/typecheck_tensorrt.py        # exit status 0: clean, 1: type errors, 2: stubs not downloadable
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["edgecls/runtime/engines.py", "edgecls/runtime/backends/tensorrt.py", "edgecls/runtime/backends/cuda_api.py"]
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")


STUBS = "tensorrt-stubs==10.13.0.35.1"


def stub_files() -> dict[str, Path] | None:
    """Relative path in the stub packages → downloaded file; None when the registry cannot be reached."""
    folder = Path(os.environ.get("EDGECLS_CACHE", Path.home() / ".cache" / "edgecls")) / STUBS.replace("==", "-")
    if not (folder / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder), STUBS],
            capture_output=True,
            timeout=300,
        )
    files = {str(p.relative_to(folder)): p for package in STUB_PACKAGES for p in (folder / package).glob("*.pyi")}
    return files or None


def repair(line: str) -> str:
    """Make one stub signature parse: `in` is a keyword, and defaults must not be followed by required parameters."""
    line = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", line)
    head, sep, tail = line.partition("(")
    if not sep or "def " not in head:
        return line
    params, close, rest = tail.rpartition(")")
    parts, seen_default = [], False
    for param in params.split(", "):
        if "=" in param:
            seen_default = True
        elif seen_default and ":" in param and not param.strip().startswith("*"):
            param += " = ..."
        parts.append(param)
    return head + sep + ", ".join(parts) + close + rest


def main() -> int:
    stubs = stub_files()
    if stubs is None:
        print(f"could not download {STUBS} (no registry access?)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for rel, src in stubs.items():
            dst = Path(tmp) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("\n".join(repair(line) for line in src.read_text().splitlines()) + "\n")
        config = Path(tmp) / "mypy.ini"
        config.write_text(
            "[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n"
            "[mypy-tensorrt.*,tensorrt_bindings.*]\nignore_errors = True\n"
        )  # the stubs' own flaws
        env = {**os.environ, "MYPYPATH": tmp}
        command = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-error-summary", *MODULES]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        print(result.stdout + result.stderr, end="")
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
