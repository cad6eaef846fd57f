"""labelcon: contrastive representation learning with multi-label supervision.

>>> from labelcon import Labelcon                                      # doctest: +SKIP
>>> model = Labelcon().fit("train.jsonl", "dev.jsonl")                 # doctest: +SKIP
>>> model.predict(["the parcel never arrived and nobody answers"])     # doctest: +SKIP
[['shipping', 'complaint']]
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Labelcon", "Config", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `labelcon --help` does not pay for torch and transformers.
    if name == "Labelcon":
        from labelcon.estimator import Labelcon

        return Labelcon
    if name == "Config":
        from labelcon.config import Config

        return Config
    raise AttributeError(f"module 'labelcon' has no attribute {name!r}")
