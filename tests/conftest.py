"""The tests' fixtures; what they share besides is in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_items, write_jsonl


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toy")
    return {
        "train": write_jsonl(root / "train.jsonl", make_items(160, 0)),
        "dev": write_jsonl(root / "dev.jsonl", make_items(60, 1)),
        "test": write_jsonl(root / "test.jsonl", make_items(60, 2)),
    }
