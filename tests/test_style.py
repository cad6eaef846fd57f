"""The code's own rules, run with the tests: the import layers and cycles of
``[tool.importlinter]`` in pyproject.toml (function-local imports included)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[test]'")
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_imports_keep_the_layers_and_make_no_cycle() -> None:
    done = _run("lint-imports")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
