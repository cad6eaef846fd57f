"""Which value checks the objectives run.

Called on their own, the objectives check the values of their inputs: labels hold only
0 and 1 (:func:`labelcon.objectives.relations.check_labels`), embeddings are finite
(:func:`labelcon.objectives.kernel.normalise`). Each such check reads a tensor's value
back to the host, which on a GPU waits for every kernel queued before it. A training
loop that has checked its label matrix once for the whole data set, and watches the
loss itself, runs its steps inside :func:`trusted_inputs`, where those value checks are
skipped (shape and type checks, which read no values, still run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_TRUSTED: ContextVar[bool] = ContextVar("labelcon_trusted_inputs", default=False)


@contextmanager
def trusted_inputs() -> Iterator[None]:
    """Within this block the objectives skip the value checks of their inputs (see the
    module docstring); the caller answers for labels in {0, 1} and finite embeddings."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def values_checked() -> bool:
    """Whether the objectives check their inputs' values here (outside :func:`trusted_inputs`)."""
    return not _TRUSTED.get()
