"""Atomic output: whole files or none, no temporary leftovers, the usual file modes."""

from __future__ import annotations

import os

import pytest


def test_atomic_writes_leave_no_temporary_files_and_usual_modes(tmp_path) -> None:
    from labelcon.io import atomic_directory, atomic_open, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "b.txt") as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
