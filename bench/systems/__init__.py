"""The systems ``bench/compare.py`` compares, one small module each (see ``systems.common``).

Modules are imported only when their system is asked for, so a run without SetFit does
not need the ``setfit`` package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: System name -> module, in the order the results table lists them.
SYSTEMS = {
    "tfidf": "systems.tfidf",
    "linear": "systems.linear",
    "frozen": "systems.frozen",
    "bce": "systems.bce",
    "setfit": "systems.setfit_system",
    "labelcon": "systems.labelcon_system",
}


def load_system(name: str) -> ModuleType:
    """The module of system ``name`` (it has ``NAME``, ``DESCRIPTION`` and ``run(task)``)."""
    if name not in SYSTEMS:
        raise KeyError(f"unknown system {name!r}; expected one of {', '.join(SYSTEMS)}")
    return importlib.import_module(SYSTEMS[name])
