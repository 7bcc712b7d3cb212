"""edgecls' TensorRT modules type-check against NVIDIA's tensorrt-stubs (mypy; see tools/typecheck_tensorrt.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "typecheck_tensorrt.py"


def test_tensorrt_modules_type_check_against_tensorrt_stubs():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=900)
    if result.returncode == 2:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
