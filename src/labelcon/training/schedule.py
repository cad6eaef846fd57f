"""How long a run trains and at what learning rate: the epoch count (``epochs="auto"``),
passes per epoch for small data, the wall-clock budget's step estimate, and the warmup /
decay schedule that decays to 0 at the last step or at the end of the budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

from labelcon.sampling import LabelAwareBatchSampler

#: ``epochs="auto"``: the epochs of a run without a time budget, and the most of one with a budget.
AUTO_EPOCHS = 3
MAX_AUTO_EPOCHS = 10
#: ``epochs="auto"`` with a budget: before this share of the training budget is spent,
#: ``patience`` epochs without dev progress do not stop the run; twice as many do.
EARLY_STOP_SHARE = 0.5


def stop_now(bad_epochs: int, patience: int, elapsed: float, budget: float | None) -> bool:
    """Whether dev has stopped improving for good: ``patience`` epochs without progress,
    and with a ``budget`` (``epochs="auto"``) either ``EARLY_STOP_SHARE`` of it spent or
    ``2 * patience`` such epochs. On an 11-emotion tweet set, dev macro-AP at 0.580, 0.579,
    0.576 stopped a run at 6 of its 12 minutes with the learning rate still high.

    >>> stop_now(2, 2, elapsed=200.0, budget=None), stop_now(2, 2, elapsed=200.0, budget=720.0)
    (True, False)
    >>> stop_now(2, 2, elapsed=400.0, budget=720.0), stop_now(4, 2, elapsed=200.0, budget=720.0)
    (True, True)
    """
    if bad_epochs < patience:
        return False
    return budget is None or elapsed >= EARLY_STOP_SHARE * budget or bad_epochs >= 2 * patience


def steps_within_budget(done: int, total: int, elapsed: float, budget: float) -> int:
    """The step count a time-budgeted run will reach, for the progress bar's total and ETA:
    the steps done plus those the remaining budget fits at the average pace so far.

    >>> steps_within_budget(done=100, total=3000, elapsed=60.0, budget=600.0)
    1000
    """
    if done == 0 or elapsed <= 0:
        return total
    pace = elapsed / done
    return int(min(total, done + max(0.0, budget - elapsed) / pace))


def budget_ends_next_epoch(done: int, total: int, elapsed: float, budget: float, epoch_steps: int) -> bool:
    """Whether the budget will end the run before the next epoch's last step: then the
    next epoch is the final one, its learning rate decays to 0 at the budget, and a dev
    check now would only spend the budget on weights the run is about to improve.

    >>> budget_ends_next_epoch(done=100, total=300, elapsed=500.0, budget=720.0, epoch_steps=100)
    True
    >>> budget_ends_next_epoch(done=100, total=300, elapsed=200.0, budget=720.0, epoch_steps=100)
    False
    """
    return steps_within_budget(done, total, elapsed, budget) < done + epoch_steps


def epoch_limit(epochs: int | str, budgeted: bool, repeated: bool = False) -> int:
    """The most epochs a run takes: ``epochs``; for ``"auto"``, ``AUTO_EPOCHS``, or
    ``MAX_AUTO_EPOCHS`` with a time budget when an epoch is one pass over the data (not
    ``repeated`` to reach ``min_steps``), so data that ``AUTO_EPOCHS`` passes would leave
    most of the budget unused trains on while dev improves: the learning rate then decays
    over the budget and early stopping ends the run when dev stops improving. Few-shot
    data, whose epochs repeat it, keeps ``AUTO_EPOCHS``: on GoEmotions with 8 examples a
    label, going on until dev stopped improving took 10 minutes instead of 2.6 for
    macro-F1 0.344 against 0.333 (docs/benchmarks-history.md).

    >>> epoch_limit("auto", budgeted=True), epoch_limit("auto", budgeted=False), epoch_limit(5, budgeted=True)
    (10, 3, 5)
    >>> epoch_limit("auto", budgeted=True, repeated=True)
    3
    """
    if epochs != "auto":
        return int(epochs)
    return MAX_AUTO_EPOCHS if budgeted and not repeated else AUTO_EPOCHS


def passes_per_epoch(steps_per_pass: int, epochs: int, min_steps: int) -> int:
    """Passes over the data that make one epoch: 1, or more when ``epochs`` single passes
    over a small data set would take fewer than ``min_steps`` steps. Dev evaluation and
    early stopping still happen once per epoch.

    >>> passes_per_epoch(steps_per_pass=4, epochs=3, min_steps=300)  # 224 items, batch 64
    25
    >>> passes_per_epoch(steps_per_pass=967, epochs=3, min_steps=300)
    1
    """
    if epochs == 0 or steps_per_pass * epochs >= min_steps:
        return 1
    return math.ceil(min_steps / (steps_per_pass * epochs))


def epoch_batches(sampler: LabelAwareBatchSampler, epoch: int, passes: int) -> Iterator[list[int]]:
    """The batches of one epoch: ``passes`` freshly shuffled passes of the sampler."""
    for index in range(passes):
        sampler.set_epoch(epoch * passes + index)
        yield from sampler


def linear_warmup_decay(
    total_steps: int,
    warmup_ratio: float,
    time_used: Callable[[], float] | None = None,
    anneal: Callable[[], Sequence[float]] | None = None,
) -> Callable[[int], float]:
    """LR multiplier rising linearly over the warmup steps, then falling linearly to 0.

    With ``time_used`` (the fraction of a wall-clock budget spent, 0..1), progress is the
    larger of the step fraction and the time fraction, so a run that will be cut by its
    budget still warms up and decays to 0 by the end of the budget. ``anneal()``, when it
    returns ``(first, last, start_factor, ...)``: a run that stops early decays linearly
    from ``start_factor`` at step ``first`` to 0 at step ``last`` instead.

    >>> f = linear_warmup_decay(100, 0.1, anneal=lambda: (40, 50, 0.6))
    >>> round(f(40), 2), round(f(45), 2), f(50)
    (0.6, 0.3, 0.0)
    """
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if anneal is not None and (annealing := anneal()):
            first, last, start = annealing[:3]
            return start * max(0.0, (last - step) / max(1.0, last - first))
        if time_used is not None:
            step = max(step, int(time_used() * total_steps))
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor
