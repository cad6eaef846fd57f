"""A wall-clock budget that covers the run the user waits for, not training alone.

``max_time_minutes`` bounds training, its dev checks **and** the embedding passes that
follow training (the head's training set and dev, and test when the run scores it). The
trainer stops early enough to leave those passes their estimated time:

    reserve  = texts embedded after training * length ratio / embedding rate
    training = max(MIN_TRAINING_SHARE * budget, budget - reserve)

The embedding rate is the one the last per-epoch dev check measured (it embeds a sample
of train and dev with the same encoder); before the first check it is
``ENCODE_SPEEDUP`` times the training rate so far (a training step runs a forward and a
backward pass over each item, an embedding pass a forward alone). The length ratio is the
embedding length over the training length (at least 1: texts are embedded at 256 tokens
where they train at 128). Training keeps at least ``MIN_TRAINING_SHARE`` of the budget,
so a set too large to embed within the budget runs past it by the difference, which the
progress display says at the start.

>>> b = RunBudget(600.0, after_items=3000)
>>> b.training_seconds(0.0, encode_rate=0.0)  # nothing measured yet: no reserve
600.0
>>> b.training_seconds(train_rate=10.0, encode_rate=0.0)  # 3000 texts at 30 texts/s: 100 s reserved
500.0
>>> b.training_seconds(train_rate=10.0, encode_rate=5.0)  # the check measured 5 texts/s: half the budget is the floor
300.0
>>> b.training_seconds(train_rate=10.0, encode_rate=5.0, spared=3000)  # a dev check embedded them all
600.0
"""

from __future__ import annotations

from dataclasses import dataclass

#: Embedding a text is about this many times faster than a training step over it
#: (forward alone against forward and backward, about three times the work).
ENCODE_SPEEDUP = 3.0
#: Training keeps at least this share of the budget, however long the embedding will take.
MIN_TRAINING_SHARE = 0.5


@dataclass(frozen=True)
class RunBudget:
    """``seconds`` of wall clock for the run; ``after_items`` texts to embed once training
    ends, ``length_ratio`` times as long each as in training."""

    seconds: float
    after_items: int = 0
    length_ratio: float = 1.0

    def reserve(self, train_rate: float, encode_rate: float, spared: int = 0) -> float:
        """Seconds the embedding passes after training will take: at ``encode_rate`` texts
        per second when a dev check measured one (> 0), else at ``ENCODE_SPEEDUP`` times
        ``train_rate`` (training items per second); 0 when neither is known yet.
        ``spared``: texts of ``after_items`` that need no pass (a dev check embedded them)."""
        rate = encode_rate if encode_rate > 0 else ENCODE_SPEEDUP * train_rate
        items = max(0, self.after_items - spared)
        if rate <= 0 or not items:
            return 0.0
        return items * max(1.0, self.length_ratio) / rate

    def training_seconds(self, train_rate: float, encode_rate: float, spared: int = 0) -> float:
        """The seconds training (dev checks included) may take."""
        return max(MIN_TRAINING_SHARE * self.seconds, self.seconds - self.reserve(train_rate, encode_rate, spared))
