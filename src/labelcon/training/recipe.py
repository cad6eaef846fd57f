"""From a :class:`labelcon.config.Config` to a trained encoder: the training floor's composition.

Builds the encoder (:func:`labelcon.encoders.build_encoder`, on ``config.device``; with
``train_layers`` only its top layers train, and the cache of the frozen layers' output
is emptied after training) and the objective (``"auto"`` resolved from the label counts,
:func:`labelcon.objectives.resolve_objective`), the per-epoch dev check
(:mod:`labelcon.training.monitor`) and the second view, runs the :class:`Trainer` on
the config's :class:`TrainingSettings`, and moves the weights back toward their start with
``keep_base`` (WiSE-FT, :mod:`labelcon.training.wiseft`). Pairs, when given, train with
the pair objective of their kind (:func:`labelcon.objectives.build_pair_objective`, with
``pair_objective_params``), alone or beside the labelled items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelcon.config import Config
from labelcon.data import Dataset
from labelcon.data.pairs import PairRecords
from labelcon.data.retrieval import RetrievalSet
from labelcon.encoders import Encoder, build_encoder
from labelcon.objectives import build_objective, build_pair_objective, resolve_objective
from labelcon.training.monitor import combined_check, knn_dev_check, pair_dev_check, retrieval_dev_check
from labelcon.training.settings import TrainingSettings
from labelcon.training.trainer import Trainer
from labelcon.training.wiseft import interpolate_weights
from labelcon.views import make_view


def train_encoder(
    config: Config,
    train: Dataset,
    y_train: sp.csr_matrix,
    dev: Dataset,
    y_dev: sp.csr_matrix,
    *,
    label_texts: list[str],
    max_length: int,
    windows: str = "first",
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    show_progress: bool = False,
    pairs: PairRecords | None = None,
    dev_pairs: PairRecords | None = None,
    dev_retrieval: RetrievalSet | None = None,
    after_items: int = 0,
    encode_length: int | None = None,
) -> tuple[Encoder, str, list[dict[str, Any]], tuple[np.ndarray, np.ndarray] | None]:
    """Train an encoder on ``train`` (checked after each epoch on ``dev`` when there are
    labels, on the scored ``dev_pairs`` and on ``dev_retrieval`` when given; the best epoch
    by the labels' macro-AP, else pairs' Spearman, else nDCG@10) and on ``pairs`` when given
    (``train`` may then be empty); returns it, the objective's name and the training
    history, and the embeddings of train and dev when the best epoch's dev check made them
    with the weights returned, at the length the caller embeds at (``encode_length``, None:
    ``max_length``); else None. ``windows`` (resolved, not ``"auto"``): how the encoder reads
    long texts, with the config's ``max_windows``, ``window_stride`` and ``window_training``.
    With ``run_dir``, checkpoints go there and ``resume`` continues from the last one.
    ``after_items`` texts are embedded after training: the time budget leaves them their time
    (train and dev only until a check's embeddings can serve)."""
    cfg = config
    settings = (
        {} if cfg.train_layers is None else {"train_layers": cfg.train_layers, "layer_cache_mb": cfg.layer_cache_mb}
    )
    if windows != "first":  # long texts: a transformer reads them as windows (labelcon.encoders.windows)
        settings = {
            "windows": windows,
            "max_windows": cfg.max_windows,
            "window_stride": cfg.window_stride,
            "window_training": cfg.window_training,
        }
    texts = train.texts + (pairs.texts if pairs is not None else [])
    encoder = build_encoder(
        cfg.encoder,
        train_texts=texts,
        max_length=max_length,
        projection_dim=cfg.projection_dim,
        seed=cfg.seed,
        precision=cfg.precision,
        device=cfg.device,
        **settings,
        **cfg.encoder_params,
    )
    counts = np.bincount(y_train.indices, minlength=y_train.shape[1])
    name = resolve_objective(cfg.objective, counts, n_items=len(train), shots=cfg.shots)
    checks, select = [], None
    if cfg.epochs and y_train.shape[1]:
        checks.append(
            knn_dev_check(
                train.texts,
                y_train,
                dev.texts,
                y_dev,
                max_train=cfg.eval_max_train,
                seed=cfg.seed,
                show_progress=show_progress,
            )
        )
        select = "macro_ap"
    if cfg.epochs and dev_pairs is not None:
        checks.append(pair_dev_check(dev_pairs, show_progress=show_progress))
        select = select or "pairs_spearman"
    if cfg.epochs and dev_retrieval is not None:
        checks.append(retrieval_dev_check(dev_retrieval, show_progress=show_progress))
        select = select or "ndcg@10"
    reusable = (
        bool(checks)
        and getattr(checks[0], "complete", False)  # the labels' kNN check embedded all of train and dev
        and not cfg.keep_base
        and encode_length in (None, max_length)
    )
    pair_objective = None if pairs is None else build_pair_objective(pairs.kind, **cfg.pair_objective_params)
    trainer = Trainer(
        encoder,
        build_objective(name, temperature=cfg.temperature, **cfg.objective_params),
        TrainingSettings.from_config(cfg),
        run_dir=Path(run_dir) if run_dir is not None else None,
        evaluate=combined_check(checks),
        select_metric=select or "macro_ap",
        label_texts=label_texts,
        view=make_view(cfg.view, **cfg.view_params),
        show_progress=show_progress,
        pair_objective=pair_objective,
        pair_weight=cfg.pair_weight,
        pair_every=cfg.pair_every,
        pair_batch_size=cfg.pair_batch_size,
        after_items=after_items,
        reusable_items=len(train) + len(dev) if reusable else 0,
        length_ratio=(encode_length or max_length) / max_length,
    )
    initial = {k: v.detach().clone() for k, v in encoder.state_dict().items()} if cfg.keep_base else None
    history = trainer.fit(train.texts, y_train, pairs=pairs, resume=resume).history
    embeddings = trainer.best_embeddings if reusable else None
    if cfg.train_layers is not None:  # the frozen layers' outputs serve training only
        encoder.layer_cache.clear()
    if initial is not None:
        interpolate_weights(encoder, initial, 1.0 - cfg.keep_base)
    return encoder, name, history, embeddings
