"""The code's own rules, run with the tests: ruff's formatter and linter as configured in
pyproject.toml, and the import layers and cycles of ``[tool.importlinter]`` there
(function-local imports included)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ["src", "tests", "bench"]


def _run(*command: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[test]'")
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_code_is_formatted() -> None:
    done = _run("ruff", "format", "--check", *CODE)
    assert done.returncode == 0, f"run `ruff format {' '.join(CODE)}`:\n{done.stdout[-4000:]}{done.stderr}"


def test_the_linter_finds_nothing() -> None:
    done = _run("ruff", "check", *CODE)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_imports_keep_the_layers_and_make_no_cycle() -> None:
    done = _run("lint-imports")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
