"""bench/gpu_check.py runs from a prepared folder: the folder's model comes back as the
float16-rounded MiniLM, its data as it went in, and the check's ``--device cpu`` dry run
writes every row of its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labelcon.data import demo_paths
from labelcon.encoders import shipped_path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import gpu_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A prepared folder of MiniLM and the built-in demo data (the wheels are left out: they need PyPI)."""
    folder = tmp_path_factory.mktemp("bundle")
    gpu_bundle.pack_model(shipped_path("minilm"), folder)
    gpu_bundle.pack_data(demo_paths()["train"].parent, folder, "demo")
    return folder


def test_the_model_travels_in_float16_and_comes_back_in_float32(bundle, tmp_path) -> None:
    original = load_file(str(shipped_path("minilm") / gpu_bundle.WEIGHTS))
    packed = load_file(str(bundle / gpu_bundle.MODEL / gpu_bundle.WEIGHTS))
    restored = load_file(str(gpu_bundle.restore_model(bundle, tmp_path / "minilm") / gpu_bundle.WEIGHTS))
    assert packed.keys() == original.keys() == restored.keys()
    for name, weight in original.items():
        assert packed[name].dtype == (torch.float16 if weight.is_floating_point() else weight.dtype)
        assert restored[name].dtype == weight.dtype
        assert torch.equal(restored[name], weight.to(packed[name].dtype).to(weight.dtype))
    assert gpu_bundle.folder_bytes(bundle) < gpu_bundle.LIMIT_BYTES - 10 * 2**20  # room for data and wheels


def test_the_data_comes_back_as_it_went(bundle, tmp_path) -> None:
    data, name = gpu_bundle.restore_data(bundle, tmp_path / "data")
    source = demo_paths()["train"].parent
    assert name == "demo"
    for file in ("train.jsonl", "dev.jsonl", "test.jsonl", "labels.txt"):
        assert (data / file).read_bytes() == (source / file).read_bytes()


def test_gpu_check_dry_run_on_the_cpu_fills_every_row(bundle, tmp_path) -> None:
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), *sys.path])}
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu_check.py"),
            "--device",
            "cpu",
            "--dry-run",
            "--bundle",
            str(bundle),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")][2:]
    assert done.stdout.count("\n| ") >= len(rows) == 5
    assert all(len(row.split(" | ")) == 5 and " |  |" not in row for row in rows)
    assert rows[0].startswith("| float32 against float64") and rows[1].startswith("| bfloat16 against float64")
    assert all("| pass (bar" in row for row in rows[:2])
    assert "demo, defaults, 1 epoch(s)" in rows[4]
