"""The config's registry of part names holds what the parts themselves take."""

from __future__ import annotations

import inspect

import pytest

from labelcon.config import Config, ConfigError
from labelcon.heads.base import _REGISTRY
from labelcon.parts import HEAD_PARAMS


def test_the_head_registry_names_every_head_with_its_constructors_parameters() -> None:
    taken = {
        name: tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        for name, cls in _REGISTRY.items()
    }
    assert HEAD_PARAMS == taken


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"head": "svm"}, "unknown head 'svm'"),
        ({"head": "knn", "head_params": {"kk": 3}}, "head 'knn' got unknown parameters ['kk']"),
        ({"view": "shuffle"}, "unknown view 'shuffle'"),
    ],
)
def test_a_part_the_config_names_is_checked_before_anything_is_built(settings, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Config.build(settings)
