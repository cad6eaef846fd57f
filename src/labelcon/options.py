"""Command-line options generated from the fields of :class:`labelcon.config.Config`.

Each field is a ``--field-name`` option whose type, help and default come from the field
itself (name, annotation, description and default are written once, in the Config):
``int``/``float``/``str`` fields take that type, ``Literal`` fields a choice, ``N | "auto"``
fields a number or ``auto``, ``bool`` fields a ``--x/--no-x`` switch, ``dict`` fields a JSON
object. Every option defaults to None, so only the flags given on the command line
override a ``--config`` file or the defaults. A few fields keep a short alias too.

>>> import click
>>> @click.command()
... @config_options
... def train(**flags): click.echo(flags["max_time_minutes"])
>>> from click.testing import CliRunner
>>> CliRunner().invoke(train, ["--max-time", "3"]).output
'3.0\\n'
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from labelcon.config import Config

#: Short aliases kept beside the generated ``--field-name``.
ALIASES = {"max_time_minutes": "--max-time"}


class AutoOr(click.ParamType):
    """``auto`` or a value of type ``kind`` (int or float)."""

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.name = f"auto|{kind.__name__.upper()}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "auto" or isinstance(value, self.kind):
            return value
        try:
            return self.kind(value)
        except ValueError:
            self.fail(f"expected 'auto' or a {'whole ' if self.kind is int else ''}number, got {value!r}", param, ctx)


class JsonObject(click.ParamType):
    """A JSON object given as one argument, e.g. ``'{"k": 20}'``."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            self.fail(f"expected a JSON object such as '{{\"k\": 20}}', got {value!r} ({error.msg})", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"expected a JSON object such as '{{\"k\": 20}}', got {value!r}", param, ctx)
        return parsed


def _param_type(annotation: Any) -> tuple[click.ParamType | type | None, bool]:
    """The click type of a field annotation, and whether it is an on/off switch."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] if _is_union(annotation) else [annotation]
    literals = [v for a in options if typing.get_origin(a) is Literal for v in typing.get_args(a)]
    plain = [a for a in options if typing.get_origin(a) is not Literal]
    if plain == [bool]:
        return None, True
    if not plain:
        return click.Choice(literals), False
    kind = plain[0]
    if typing.get_origin(kind) is dict or kind is dict:
        return JsonObject(), False
    if literals == ["auto"]:
        return AutoOr(kind), False
    return kind, False


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _help(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    shown = "none" if default is None else json.dumps(default) if isinstance(default, dict) else default
    return f"{field.description} [{shown}]"


def _option(name: str, field: FieldInfo) -> Callable[[Callable], Callable]:
    flag = "--" + name.replace("_", "-")
    kind, switch = _param_type(field.annotation)
    names = [flag, ALIASES[name]] if name in ALIASES else [flag]
    if switch:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=_help(field))
    return click.option(*names, name, type=kind, default=None, help=_help(field))


def config_options(func: Callable) -> Callable:
    """Add one option per Config field to a click command (in the Config's field order)."""
    for name, field in reversed(Config.model_fields.items()):
        func = _option(name, field)(func)
    return func


def settings_options(model: type[BaseModel]) -> Callable[[Callable], Callable]:
    """A decorator adding one option per field of ``model``, as :func:`config_options` does for Config."""

    def add(func: Callable) -> Callable:
        for name, field in reversed(model.model_fields.items()):
            func = _option(name, field)(func)
        return func

    return add


def command_line(ctx: click.Context, skip: set[str]) -> list[str]:
    """The options of ``ctx``'s command as they were given, as an argument list (``skip``:
    parameter names to leave out): what re-runs the command elsewhere."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in skip or value is None or not isinstance(param, click.Option):
            continue
        if param.is_flag:
            opts = param.opts if value else param.secondary_opts
            args += opts[:1]
        else:
            args += [param.opts[0], json.dumps(value) if isinstance(value, dict) else str(value)]
    return args
