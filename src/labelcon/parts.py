"""The names of the parts a :class:`labelcon.config.Config` picks, and the parameters each
takes: what the config checks before anything is built, without importing the parts.

Heads are built by :func:`labelcon.heads.build_head`, whose classes register themselves;
tests hold :data:`HEAD_PARAMS` equal to their constructors. Views are
:data:`labelcon.views.VIEWS`, light enough to be checked by building them.

>>> check_head("knn", {"k": 5})
>>> check_head("knn", {"kk": 5})
Traceback (most recent call last):
ValueError: head 'knn' got unknown parameters ['kk']; it accepts ['k', 'temperature', 'exact']
"""

from __future__ import annotations

from typing import Any

#: The head that ``auto`` names: the prediction stage chooses one on dev.
AUTO_HEAD = "auto"
#: Each head by name, with its constructor's parameters.
HEAD_PARAMS: dict[str, tuple[str, ...]] = {
    "knn": ("k", "temperature", "exact"),
    "prototype": ("temperature",),
    "linear": ("C", "max_iter", "class_weight", "tol"),
    "label_text": ("temperature", "prior_strength"),
    "ensemble": ("members",),
    "fallback": ("main", "fallback", "columns", "threshold"),
}


def check_head(name: str, params: dict[str, Any]) -> None:
    """A ValueError when ``name`` is no head, or ``params`` holds a parameter it does not take."""
    if name not in HEAD_PARAMS:
        raise ValueError(f"unknown head {name!r}; expected one of {sorted(HEAD_PARAMS)}")
    unknown = sorted(set(params) - set(HEAD_PARAMS[name]))
    if unknown:
        raise ValueError(f"head {name!r} got unknown parameters {unknown}; it accepts {list(HEAD_PARAMS[name])}")
