"""labelcon with its defaults: ``Labelcon(labels_file=...).fit(train, dev)``.

Nothing is tuned: the defaults (MiniLM encoder, the ``auto`` objective, the ``auto``
head, 3 epochs within a 12-minute budget, ...) are what is being tested. ``labels_file`` only fixes the column order.
With ``--shots N`` it is ``Labelcon(shots=N)`` on the full training split, so labelcon
draws the few-shot sample itself (``sample_shots(train, N, seed)``, the same items the
other systems get). ``seed`` is passed only when ``--seed`` differs from labelcon's
default, to keep the splits identical across systems.
"""

from __future__ import annotations

import time
from typing import Any

from labelcon import Labelcon
from labelcon.config import Config
from systems.common import Result, Task

NAME = "labelcon"
DESCRIPTION = "labelcon defaults: Labelcon().fit(train, dev) (MiniLM, auto objective, auto head)"


def labelcon_params(task: Task) -> dict[str, Any]:
    """The keywords of ``Labelcon(...)``: ``labels_file``, ``shots`` / ``seed`` when set, and
    ``--labelcon-params``."""
    params: dict[str, Any] = {"labels_file": str(task.labels_file)}
    if task.shots:
        params["shots"] = task.shots
    params.update(task.labelcon_params)
    if task.seed != Config().seed:
        params["seed"] = task.seed
    return params


def run(task: Task) -> Result:
    """Fit with the defaults on train + dev and score dev and test with the fitted head."""
    params = labelcon_params(task)
    started = time.perf_counter()
    model = Labelcon(**params).fit(task.train_full, task.dev, show_progress=task.show_progress)
    train_seconds = time.perf_counter() - started
    if tuple(model.classes_) != task.labels.names:
        raise RuntimeError("labelcon's label columns differ from the harness's label space")
    dev_scores = model.predict_proba(task.dev.texts, show_progress=task.show_progress)
    test_scores = model.predict_proba(task.test.texts, show_progress=task.show_progress)
    history = [
        {key: record[key] for key in ("epoch", "step", "seconds") if key in record}
        | {"dev_knn_macro_ap": round(record["dev"]["macro_ap"], 5)}
        for record in model.history_
        if "dev" in record
    ]
    stage = model.stage_
    notes = {
        "config": {key: value for key, value in params.items() if key != "labels_file"},
        "epochs_run": len(model.history_),
        "history": history,
        "head": stage.head.get_params() | {"type": stage.head.name},
        "head_selection_dev_macro_ap": {k: round(v, 5) for k, v in stage.selection.items()},
        "lexical_weight": stage.lexical_weight,
        "text_scorers": stage.lexical_candidate,
    }
    return Result(dev_scores, test_scores, train_seconds, notes, fallback_threshold=stage.head.fallback_threshold)
