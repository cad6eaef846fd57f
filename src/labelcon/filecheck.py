"""Reading model files with errors that name the file: :func:`reading` turns whatever goes
wrong with one (missing, truncated, not parsing, values not as labelcon wrote them) into a
:class:`ModelLoadError` naming it, and :func:`expect_object` checks a parsed JSON object.

>>> try:
...     with reading("m/head.json"):
...         expect_object({"dim": "8"}, {"dim": int})
... except ModelLoadError as error:
...     print(error)
m/head.json: expected 'dim' to be a whole number, got "8"; the model directory is damaged: train again or restore it from a copy
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelcon.io import json_kind, json_type_name


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


def expect_object(
    value: Any, required: dict[str, type | tuple[type, ...]], optional: dict[str, type | tuple[type, ...]] | None = None
) -> dict[str, Any]:
    """``value`` if it is a JSON object holding every key of ``required`` (and perhaps
    those of ``optional``) with a value of the given type; else a ValueError saying what
    was expected and what came (``true`` is no number here, though Python's bool is an int)."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {json_kind(value)}")
    missing = sorted(set(required) - set(value))
    if missing:
        raise ValueError(
            f"expected an object with {', '.join(map(repr, required))}; got one without {', '.join(map(repr, missing))}"
        )
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
