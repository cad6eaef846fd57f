"""Model directories published whole: a reader sees the old model or the new one, never a mix.

A saved model is a directory ``D`` holding ``labelcon.json``, a pointer to the current
version, and that version's folder ``model.N/`` (the encoder, the prediction stage's files,
``config.yaml``, ``model.json``); an export keeps its encoder elsewhere in ``D``, in the
folder and format the pointer names (:func:`encoder_location`). :func:`publish` writes
version N+1 aside, renames it into place, switches the pointer with one atomic rename, and
then removes older versions; run outputs (``metrics.json``, ``history.json``, predictions,
checkpoints, the search index, the model card) sit beside them in ``D``.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> _ = publish(root, lambda tmp: (tmp / "weights.txt").write_text("1"), {"objective": "simcse"})
>>> folder, meta = resolve(root)
>>> folder.name, meta["format"], (folder / "weights.txt").read_text()
('model.1', 2, '1')

A training run owns its directory (:func:`training_run`): labelcon writes only into a new
or empty directory or one of its own runs; a lock file keeps a second writer out;
``run.json`` says whether the run is ``running`` (interrupted, if no process holds the
lock), ``finished``, or ``failed`` (it raised an error before it saved anything to resume
from, as for an encoder that does not load), with the settings, a fingerprint of the data
it started with and the machine it ran on.
A finished run is not trained again without ``overwrite``, which first removes every
output of the earlier run; an interrupted one resumes only with the same data and settings;
a failed one holds nothing to keep, so the next run into the directory starts afresh.

Loading a model reads each of its files inside :func:`reading`, so that whatever goes
wrong with one (missing, truncated, not parsing, values not as labelcon wrote them)
raises a :class:`ModelLoadError` that names that file:

>>> _ = (root / "labelcon.json").write_text('{"format": 2, "model": ')
>>> try:
...     resolve(root)
... except ModelLoadError as error:
...     print(str(error).replace(str(root), "D"))
D/labelcon.json: not valid JSON (Expecting value at line 1, column 24); the model directory is damaged: train again or restore it from a copy
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from labelcon.config import Config
from labelcon.io import atomic_open, json_kind, json_type_name, read_json, write_json
from labelcon.machine import describe as describe_machine

if TYPE_CHECKING:
    from labelcon.encoders import Encoder

#: The file that marks a directory as a saved labelcon model.
MODEL_FILE = "labelcon.json"
FORMAT = 2
_VERSION = re.compile(r"model\.(\d+)")
RUN_FILE = "run.json"
LOCK_FILE = ".labelcon.lock"
#: What a training run writes into its directory: what ``overwrite`` removes.
CHECKPOINT_FILE = "checkpoint.pt"
RUN_OUTPUTS = (MODEL_FILE, RUN_FILE, "config.yaml", CHECKPOINT_FILE, "metrics.json", "history.json",
               "predictions_test.jsonl", "report.html", "report.md", "README.md", "index")  # fmt: skip
#: Settings an interrupted run may resume with changed (a checkpoint resumes on any device).
RESUMABLE_CHANGES = frozenset({"max_time_minutes", "device"})
#: Directories this process holds the lock of, with how deeply (the lock is re-entrant).
_HELD: dict[Path, int] = {}


class NotAModelError(FileNotFoundError):
    """A directory that holds no saved labelcon model."""


class RunDirectoryError(ValueError):
    """A run directory that a training run may not write into as asked."""


class ModelLoadError(ValueError):
    """A saved model with a file that is missing, unreadable, or holds values other than
    labelcon wrote; the message names the file."""


#: The way out that a :class:`ModelLoadError` offers.
DAMAGED = "the model directory is damaged: train again or restore it from a copy"


def damaged(path: str | os.PathLike, problem: str) -> ModelLoadError:
    """The error for the model file ``path`` and what is wrong with it."""
    return ModelLoadError(f"{path}: {problem}; {DAMAGED}")


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn any failure of the block, which reads the model file ``path``, into a
    :class:`ModelLoadError` naming it; a :class:`ModelLoadError` passes unchanged."""
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as error:
        raise damaged(path, _problem(path, error)) from error


def _problem(path: str | os.PathLike, error: Exception) -> str:
    """What ``error``, raised while reading ``path``, says is wrong with it."""
    text = str(error)
    if isinstance(error, FileNotFoundError):
        return "missing" if Path(error.filename or path) == Path(path) else f"{error.filename} is missing"
    if text.startswith(f"{path}: "):  # the message names the file already (read_json, Config.from_yaml)
        return text[len(f"{path}: ") :]
    if isinstance(error, KeyError):
        return f"lacks the entry {error.args[0]!r}" if error.args else "lacks an entry"
    if isinstance(error, ValueError):
        return text
    return f"cannot be read ({type(error).__name__}: {text})"


def expect_object(value: Any, required: dict[str, type | tuple[type, ...]],
                  optional: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:  # fmt: skip
    """``value`` if it is a JSON object holding every key of ``required`` (and perhaps
    those of ``optional``) with a value of the given type; else a ValueError saying what
    was expected and what came (``true`` is no number here, though Python's bool is an int)."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {json_kind(value)}")
    missing = sorted(set(required) - set(value))
    if missing:
        raise ValueError(f"expected an object with {', '.join(map(repr, required))}; "
                         f"got one without {', '.join(map(repr, missing))}")  # fmt: skip
    for key, kinds in {**(optional or {}), **required}.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if key in value and (not isinstance(value[key], kinds) or isinstance(value[key], bool) and bool not in kinds):
            shown = [kind for kind in kinds if kind is not int or float not in kinds]  # a number covers ints
            names = " or ".join(json_type_name(kind) for kind in shown)
            raise ValueError(f"expected {key!r} to be {names}, got {_shown(value[key])}")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _versions(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.fullmatch(p.name)) and p.is_dir())


def publish(directory: str | os.PathLike, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Write a new model version with ``write(folder)``, make it current, and return its folder.

    ``meta`` joins the pointer file (``format``, ``model`` and the version's random ``id``
    are set here). Older versions
    are removed after the switch; a reader still loading one retries (see :func:`load_current`).
    """
    directory = Path(directory)
    with locked(directory):
        return _publish(directory, write, meta)


def _publish(directory: Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    versions = _versions(directory)
    name = f"model.{(versions[-1] if versions else 0) + 1}"
    staging = directory / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        os.rename(staging, directory / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_json(directory / MODEL_FILE, {**meta, "format": FORMAT, "model": name, "id": uuid.uuid4().hex[:12]})
    _remove(directory, [f"model.{v}" for v in versions])
    return directory / name


def resolve(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The folder of the current model in ``directory`` and the pointer file's contents."""
    directory = Path(directory)
    pointer = directory / MODEL_FILE
    expected = "expected the --out directory of `labelcon train` or a path given to Labelcon.save()"
    if not directory.is_dir():
        found = "is not a directory" if directory.exists() else "does not exist"
        raise NotAModelError(f"{directory}: {found}; {expected}")
    if not pointer.is_file():
        raise NotAModelError(f"{directory}: not a labelcon model directory (no {MODEL_FILE}); {expected}")
    with reading(pointer):
        meta = expect_object(read_json(pointer), {"format": int})
        if meta["format"] != FORMAT:
            raise ModelLoadError(f"{pointer}: expected a model pointer of format {FORMAT}, got format "
                                 f"{meta['format']!r}; another labelcon version wrote it")  # fmt: skip
        name = meta.get("model")
        if not isinstance(name, str) or not _VERSION.fullmatch(name):
            raise ValueError(f"expected field 'model' to name a model.N folder, got {name!r}")
    return directory / name, meta


def version_name(folder: Path, meta: dict[str, Any]) -> str:
    """The name of the model version in ``folder``: ``model.N-ID``, where ``ID`` is drawn
    at each :func:`publish` (``--overwrite`` starts counting at ``model.1`` again, so the
    folder's name alone does not tell two trainings apart)."""
    return f"{folder.name}-{meta['id']}" if isinstance(meta.get("id"), str) else folder.name


def encoder_location(folder: Path, meta: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Where the encoder of the model version in ``folder`` is and how it is saved: the
    pointer's ``encoder`` entry (``{"path": ..., "format": ...}``, the path relative to the
    model directory: an export keeps its encoder where other tools look for it), else
    ``folder/encoder`` in labelcon's format. A path leading out of the directory is refused."""
    entry = meta.get("encoder")
    if entry is None:
        return folder / "encoder", {"format": "labelcon"}
    directory = folder.parent
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not (directory / relative).resolve().is_relative_to(directory.resolve()):
        raise ValueError(f"{directory / MODEL_FILE}: field 'encoder' must name a folder inside the model directory "
                         f"as {{\"path\": ..., \"format\": ...}}, got {entry!r}")  # fmt: skip
    return directory / relative, entry


def load_current(directory: str | os.PathLike, load: Callable[[Path, dict[str, Any]], Any], attempts: int = 3) -> Any:
    """``load(folder, meta)`` on the current model; when a new version is published while
    it reads (its folder removed under it), it reads the newer one instead. A pointer to
    a folder that is not there raises a :class:`ModelLoadError` naming the pointer."""
    folder, meta = resolve(directory)
    for attempt in range(attempts):
        try:
            return load(folder, meta)
        except (OSError, ModelLoadError):
            newer = resolve(directory)
            if newer[0] == folder and not folder.is_dir():
                raise damaged(Path(directory) / MODEL_FILE, f"its field 'model' names {folder.name}, "
                              f"which is not in {directory}") from None  # fmt: skip
            if newer[0] == folder or attempt == attempts - 1:
                raise
            folder, meta = newer


def read_config(path: Path) -> Config:
    """A model's ``config.yaml``; a failure names it (:func:`reading`)."""
    with reading(path):
        return Config.from_yaml(path)


def read_encoder(directory: Path, entry: dict[str, Any] | None = None, *, device: str = "cpu") -> Encoder:
    """The encoder in ``directory``, saved in the format ``entry["format"]`` (labelcon's own
    by default, loaded onto ``device``; exports in other formats run where their runtime
    puts them; see :func:`encoder_location`); a failure names the file behind it. For
    labelcon's format: ``encoder.json`` when its fields are not as written, else the first
    JSON or safetensors file there that does not parse, else the folder and ``encoder.json``
    (a file missing, or settings that do not fit the files)."""
    from labelcon.encoders import load_encoder, load_encoder_as
    from labelcon.encoders.base import ENCODER_FILE, ENCODER_TYPES

    if entry is not None and entry.get("format", "labelcon") != "labelcon":
        with reading(directory):
            return load_encoder_as(directory, entry)

    meta_path = directory / ENCODER_FILE
    with reading(meta_path):
        meta = expect_object(read_json(meta_path), {"type": str, "config": dict}, {"dim": int})
        if meta["type"] not in ENCODER_TYPES:
            raise ValueError(f"expected 'type' to be one of {sorted(ENCODER_TYPES)}, got {meta['type']!r}")
    try:
        encoder = load_encoder(directory, device=device)
    except Exception as error:
        if isinstance(error, FileNotFoundError) and error.filename:
            raise damaged(error.filename, "missing") from error
        cause = f"{type(error).__name__}: {error}"
        broken = _unparsable(directory)
        if broken is not None:
            raise damaged(broken, f"cannot be read ({cause})") from error
        raise damaged(directory, f"cannot be loaded from its files and the settings in {ENCODER_FILE} ({cause})") from error
    if meta.get("dim", encoder.dim) != encoder.dim:
        raise damaged(meta_path, f"says dim {meta['dim']}, but the encoder it describes makes {encoder.dim}")
    return encoder


def _unparsable(directory: Path) -> Path | None:
    """The first JSON or safetensors file under ``directory`` that does not parse."""
    from safetensors import safe_open

    for path in sorted(directory.rglob("*")):
        try:
            if path.suffix == ".json":
                json.loads(path.read_bytes())
            elif path.suffix == ".safetensors":
                with safe_open(path, "np"):
                    pass
        except Exception:
            return path
    return None


@contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold ``directory``'s lock file (creating the directory) or fail at once when another
    process holds it; re-entrant within this process."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with open(directory / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(f"{directory}: another labelcon process is writing this run directory; "
                                    "wait for it to end or choose another --out") from None  # fmt: skip
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def training_run(directory: str | os.PathLike, *, config: dict[str, Any], data: dict[str, Any], resume: bool,
                 overwrite: bool) -> Iterator[bool]:  # fmt: skip
    """Own ``directory`` for one training run (see the module docstring) and yield whether
    it resumes an interrupted run; ``run.json`` says ``finished`` once the body returns.
    ``config``: the run's settings; ``data``: fingerprints of what it trains on."""
    directory = Path(directory)
    _check_owned(directory)
    with locked(directory):
        state = _run_state(directory)
        status = None if state is None else state.get("status")
        how = "pass --overwrite (Python: overwrite=True) to train it again from the start, or choose another --out"
        if status == "finished" and (resume or not overwrite):
            raise RunDirectoryError(f"{directory}: holds a finished run; {'nothing to resume; ' if resume else ''}{how}")
        if status == "running" and not (resume or overwrite):
            raise RunDirectoryError(f"{directory}: holds an interrupted run; pass --resume (Python: resume=True) to "
                                    f"continue it, or --overwrite to start again")  # fmt: skip
        resuming = status == "running" and resume
        if resuming:
            _check_same(directory, state, config, data)
        else:
            _remove(directory, [*RUN_OUTPUTS, *(f"model.{v}" for v in _versions(directory))])
        _remove(directory, [p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")])
        settings = json.loads(json.dumps(config))
        record = {"config": settings, "data": data, "machine": describe_machine()}
        write_json(directory / RUN_FILE, {"status": "running", **record})
        with atomic_open(directory / "config.yaml") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        try:
            yield resuming
        except Exception as error:
            if not (directory / CHECKPOINT_FILE).is_file():
                write_json(directory / RUN_FILE, {"status": "failed", "error": f"{type(error).__name__}: {error}",
                                                  **record})  # fmt: skip
            raise
        write_json(directory / RUN_FILE, {"status": "finished", **record})


def _check_owned(directory: Path) -> None:
    if not directory.exists():
        above = next(parent for parent in directory.parents if parent.exists())
        if not above.is_dir():
            raise RunDirectoryError(f"{directory}: cannot be made: {above} is a file, not a directory; "
                                    "choose another --out")  # fmt: skip
        return
    if not directory.is_dir():
        raise RunDirectoryError(f"{directory}: exists and is not a directory; choose another --out")
    entries = sorted(p.name for p in directory.iterdir() if p.name != LOCK_FILE)
    if entries and not ((directory / RUN_FILE).is_file() or (directory / MODEL_FILE).is_file()):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(f"{directory}: is not empty ({shown}) and holds no labelcon run; labelcon writes only "
                                "into a new or empty directory or one of its own runs: choose another --out")  # fmt: skip


def _run_state(directory: Path) -> dict[str, Any] | None:
    """``run.json``; a model directory without one (saved by ``save`` or an older labelcon) counts as finished."""
    path = directory / RUN_FILE
    if path.is_file():
        try:
            state = read_json(path)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(f"{path}: not readable ({error}); pass --overwrite to start the run again") from None
        if isinstance(state, dict) and state.get("status") == "failed":
            return None
        if isinstance(state, dict) and state.get("status") in ("running", "finished"):
            return state
        raise RunDirectoryError(f"{path}: expected a run state with status 'running', 'finished' or 'failed'; "
                                "pass --overwrite to start the run again")  # fmt: skip
    return {"status": "finished"} if (directory / MODEL_FILE).is_file() else None


def _check_same(directory: Path, state: dict[str, Any], config: dict[str, Any], data: dict[str, Any]) -> None:
    """An interrupted run resumes with the data and settings it started with."""
    before, now = state.get("config", {}), json.loads(json.dumps(config))
    changed = [f"{key}: {before.get(key)!r} in the run, {now[key]!r} now" for key in now
               if key not in RESUMABLE_CHANGES and before.get(key) != now[key]]  # fmt: skip
    for name, print_now in data.items():
        then = state.get("data", {}).get(name)
        if then is None or then.get("sha256") != print_now.get("sha256"):
            changed.append(f"{name} data: {_describe(then)} in the run, {_describe(print_now)} now")
    if changed:
        raise RunDirectoryError(f"{directory}: --resume continues a run with the data and settings it started with; "
                                f"these differ: {'; '.join(changed)}")  # fmt: skip


def _describe(fingerprint: dict[str, Any] | None) -> str:
    if not fingerprint:
        return "none"
    source = f" from {fingerprint['source']}" if fingerprint.get("source") else ""
    return f"{fingerprint['items']} items{source} (sha256 {fingerprint['sha256'][:12]})"


def _remove(directory: Path, names: Sequence[str]) -> None:
    for name in names:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
