"""Where the benchmark scripts find the shared data sets when not told."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$LABELCON_DATA`` when set, else ``../shared/data`` next to the repository."""
    return Path(os.environ["LABELCON_DATA"]) if os.environ.get("LABELCON_DATA") else REPO.parent / "shared" / "data"
