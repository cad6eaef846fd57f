"""Atomic output: whole files or none, no temporary leftovers, the usual file modes."""

from __future__ import annotations

import os
import signal

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


def test_read_json_names_the_file_and_where_it_breaks(tmp_path) -> None:
    import re

    from labelcon.io import read_json

    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ValueError, match=re.escape(f"{path}: not valid JSON (Expecting value at line 2, column 7)")):
        read_json(path)
    path.write_text('{"a": "cut')
    with pytest.raises(ValueError, match=r"\(Unterminated string starting at line 1, column 7\)"):
        read_json(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match=re.escape(f"{path}: not valid JSON (byte 7 is not UTF-8")):
        read_json(path)


class _InterruptsWhilePickled:
    """Sends this process SIGINT while ``torch.save`` pickles it: a Ctrl-C in the middle of a write."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return (dict, ())


def test_a_ctrl_c_during_a_checkpoint_write_interrupts_after_the_file_is_in_place(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from labelcon.io import atomic_torch_save

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 7, "weights": torch.ones(1000), "marker": _InterruptsWhilePickled()}, path)
    back = torch.load(path, weights_only=False)
    assert back["step"] == 7 and back["weights"].sum() == 1000  # written whole, then interrupted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


def test_a_held_interrupt_goes_to_the_handler_in_place(tmp_path) -> None:
    from labelcon.io import interrupts_held

    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            assert seen == []  # held while the body runs
        assert seen == [signal.SIGINT]  # then handed over, and no KeyboardInterrupt of its own
    finally:
        signal.signal(signal.SIGINT, previous)
