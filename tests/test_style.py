"""The code keeps one layout: `ruff format` (120 columns) and ruff's lint rules from pyproject.toml, checked here so a
change that skips them fails the suite rather than drifting."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_the_code_is_formatted_and_lint_free(command):
    pytest.importorskip("ruff", reason="ruff comes with the dev extra: pip install -e .[dev]")
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"run `ruff {' '.join(command)} .` and fix:\n{result.stdout}{result.stderr}"
