"""``Labelcon``: reading -> training -> the prediction stage, behind one estimator.

>>> from labelcon import Labelcon
>>> from labelcon.data import demo_paths
>>> paths = demo_paths()
>>> model = Labelcon(encoder="static", epochs=1, head="prototype")
>>> model = model.fit(paths["train"], paths["dev"], show_progress=False)
>>> len(model.predict(["my card was charged twice"], at_least_one=True)[0]) >= 1
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from labelcon.card import write_card
from labelcon.config import Config
from labelcon.data import Dataset, LabelSpace, as_dataset, label_texts, sample_shots, train_dev_split
from labelcon.data.pairs import PairRecords, as_pair_records
from labelcon.data.retrieval import RetrievalSet
from labelcon.embedding_metrics import pair_correlations, retrieval_metrics
from labelcon.encoders import (
    Encoder,
    WindowEmbeddings,
    are_texts,
    read_encoder,
    resolve_encode_length,
    resolve_max_length,
    resolve_windows,
)
from labelcon.io import read_json, write_json
from labelcon.modeldir import MODEL_FILE, encoder_location, load_current, publish, read_config, version_name
from labelcon.prediction import EMBEDDING, META_FILE, Features, PredictionStage, Ranked, StageSettings, WindowFeatures
from labelcon.run_outputs import write_run_outputs
from labelcon.search import SearchIndex, SearchMixin, load_index, save_index
from labelcon.training import seed_everything
from labelcon.training.distributed import is_main_process
from labelcon.training.recipe import train_encoder
from labelcon.training_run import training_run

DataLike = Dataset | str | os.PathLike | tuple[Sequence[str], Sequence[Sequence[str]]]
#: Pairs as a file path, a Hugging Face ``datasets.Dataset`` or :class:`PairRecords`.
PairsLike = PairRecords | str | os.PathLike | Any


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` or ``load``."""


class Labelcon(SearchMixin):
    """Contrastively trained encoder + the prediction stage (head, lexical vote, thresholds).

    ``encoder``, ``objective`` and ``head`` name the parts; every other setting of
    :class:`labelcon.config.Config` is a keyword too, or comes in ``config``. The
    scikit-learn contract holds: ``get_params``/``set_params``, so ``sklearn.base.clone`` works.
    Similar-item search (``index``, ``search``) comes from :class:`labelcon.search.SearchMixin`.
    """

    def __init__(
        self,
        encoder: str | None = None,
        objective: str | None = None,
        head: str | None = None,
        *,
        config: Config | None = None,
        **params: Any,
    ) -> None:
        given = {k: v for k, v in {"encoder": encoder, "objective": objective, "head": head}.items() if v}
        self.config = Config.build({**(config.model_dump() if config else {}), **given, **params}, source="Labelcon()")
        # the objects as given, for get_params (clone checks that they come back unchanged)
        self._params = {**self.config.model_dump(), **given, **params}
        self.encoder_: Encoder | None = None
        self.stage_: PredictionStage | None = None
        self.objective_: str | None = None  # the objective trained with ("auto" resolved)
        self.history_: list[dict[str, Any]] = []
        self.metrics_: dict[str, dict[str, Any]] = {}
        self.index_: SearchIndex | None = None  # what search() searches; save() stores it
        self.version_: str | None = None  # the model version loaded or saved last (modeldir.version_name)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every setting by name (the fields of :class:`labelcon.config.Config`)."""
        return dict(self._params)

    def set_params(self, **params: Any) -> Labelcon:
        """Change settings; they are validated now and apply to the next ``fit``."""
        self.config = Config.build({**self.config.model_dump(), **params}, source="Labelcon.set_params()")
        self._params.update(params)
        return self

    # ------------------------------------------------------------------ reading
    def read(self, data: DataLike) -> Dataset:
        """Turn a path, a :class:`Dataset` or a ``(texts, label_sets)`` pair into a Dataset."""
        cfg = self.config
        return as_dataset(data, text_field=cfg.text_field, labels_field=cfg.labels_field, label_sep=cfg.label_sep)

    def _evaluate(self, features: Features, data: Dataset, ignore: bool | None = None) -> dict[str, Any]:
        """The stage's metrics on ``data``; its labels outside the label space (allowed by
        ``ignore_unknown_labels``) count as misses and are reported by name, most frequent first."""
        y_true, unknown = data.label_matrix(
            self.labels, ignore_unknown=self.config.ignore_unknown_labels if ignore is None else ignore
        )
        missed = data.label_matrix(LabelSpace(sorted(unknown)), ignore_unknown=True)[0] if unknown else None
        metrics = self._stage().evaluate(features, y_true, missed=missed)
        if unknown:
            metrics.update(
                unknown_labels=sum(unknown.values()), unknown_label_names=[n for n, _ in unknown.most_common(20)]
            )
        return metrics

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: DataLike | None = None,
        dev: DataLike | None = None,
        *,
        test: DataLike | None = None,
        pairs: PairsLike | None = None,
        dev_pairs: PairsLike | None = None,
        dev_retrieval: RetrievalSet | None = None,
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> Labelcon:
        """Train the encoder, then fit the prediction stage on train and calibrate it on dev.

        Without ``dev``, a seeded carve-out of ``config.dev_fraction`` of train serves as
        dev (:func:`labelcon.data.train_dev_split`). ``pairs`` (a file, a Hugging Face
        dataset or :class:`~labelcon.data.pairs.PairRecords`, read with ``pair_fields`` and
        ``pair_score_field``) train beside the labelled items, or alone without ``train``
        (an encoder only, as for unlabelled data). Scored ``dev_pairs`` (read the same way)
        add ``pairs_pearson`` and ``pairs_spearman`` to the dev metrics, and ``dev_retrieval``
        (:func:`labelcon.data.retrieval.read_retrieval`) adds ``ndcg@10``, ``mrr@10`` and
        ``recall@k``; both are checked after every epoch too (in ``history_``), and without
        labels the best epoch is kept by ``pairs_spearman``, else by ``ndcg@10``.

        With ``out_dir``, the run owns that directory
        (:func:`labelcon.training_run.training_run`: ``resume`` an interrupted run,
        ``overwrite`` a finished one), writes resumable checkpoints there, saves the model
        there and writes the run's outputs beside it (:mod:`labelcon.run_outputs`: with
        ``test``, its metrics and predictions; the model card; the report), exactly as
        ``labelcon train --out`` does. Without ``out_dir``, ``test`` is evaluated into
        ``metrics_["test"]``. Under ``torchrun`` every process trains; rank 0 alone fits
        the stage, evaluates and saves.
        """
        cfg = self.config
        seed_everything(cfg.seed)
        if train is None and pairs is None:
            raise ValueError("fit needs training data: train= (labelled items), pairs= (text pairs), or both")
        if train is None and dev is not None:
            raise ValueError("dev= calibrates the label head of train= data; without train= there is none")
        pair_records, dev_pair_records = (
            None if data is None else as_pair_records(data, fields=cfg.pair_fields, score_field=cfg.pair_score_field)
            for data in (pairs, dev_pairs)
        )
        test_set = self.read(test) if test is not None else None  # a bad file fails now, not after training
        if train is None:
            train_file = train_set = Dataset([], [])
            dev_set = Dataset([], [])
        else:
            train_file = self.read(train)
            train_set, dev_set = (
                train_dev_split(train_file, cfg.dev_fraction, cfg.seed) if dev is None else (train_file, self.read(dev))
            )
        # the labels of every item of the training file, those a carve-out moved to dev included:
        # a label whose one item went to dev is a label of the model, with no training positives
        labels = LabelSpace.from_label_sets(train_file.labels, labels_file=cfg.labels_file)
        if cfg.shots:
            train_set = sample_shots(train_set, cfg.shots, seed=cfg.seed)
        texts = label_texts(labels.names, cfg.label_descriptions)
        (y_train, _), (y_dev, _) = (
            d.label_matrix(labels, ignore_unknown=cfg.ignore_unknown_labels) for d in (train_set, dev_set)
        )
        all_texts = train_set.texts + (pair_records.texts if pair_records is not None else [])
        max_length = resolve_max_length(cfg.max_length, all_texts)
        encode_length = resolve_encode_length(cfg.encode_max_length, all_texts, max_length)
        # embedded after training, within the time budget: train and dev for the stage, and test
        after_items = (len(train_set) + len(dev_set) + (len(test_set) if test_set else 0)) if len(labels) else 0
        windows = (
            resolve_windows(cfg.windows, all_texts, encode_length)
            if encode_length is not None and cfg.encoder not in ("static", "mlp") and cfg.train_layers is None
            else "first"
        )
        owned = out_dir is not None and is_main_process()
        fingerprints = {"train": train_set.fingerprint(), "dev": dev_set.fingerprint()}
        if pair_records is not None:
            fingerprints["pairs"] = pair_records.fingerprint()
        with (
            training_run(out_dir, config=cfg.model_dump(), resume=resume, overwrite=overwrite, data=fingerprints)
            if owned
            else nullcontext(resume) as resuming
        ):
            self.encoder_, self.objective_, self.history_, checked = train_encoder(
                cfg,
                train_set,
                y_train,
                dev_set,
                y_dev,
                label_texts=texts,
                max_length=max_length,
                windows=windows,
                run_dir=out_dir,
                resume=resuming,
                show_progress=show_progress,
                pairs=pair_records,
                dev_pairs=dev_pair_records,
                dev_retrieval=dev_retrieval,
                after_items=after_items,
                encode_length=encode_length,
            )
            if not is_main_process():  # under torchrun, rank 0 alone fits the stage, evaluates and saves
                return self
            if encode_length is not None:  # text encoders: embed for the stage (and later predictions) at this length
                self.encoder_.max_length = encode_length
            self.stage_, self.metrics_, self.index_ = None, {}, None  # a new encoder: index again
            if len(labels):  # unlabelled data (simcse) trains an encoder only
                tic = time.monotonic()
                # dev's windows, for a stage that may score each window: dev items read in several windows
                windowed_dev = (
                    cfg.score_pooling != EMBEDDING
                    and self._reads_windows()
                    and any(w.rank for w in self.encoder_.window_spans(dev_set.texts))
                )
                if checked is not None:  # the best dev check embedded both with these weights
                    train_features, dev_features = (
                        Features(z, data.texts if are_texts(data.texts) or not data.texts else None)
                        for z, data in zip(checked, (train_set, dev_set), strict=True)
                    )
                    if windowed_dev:
                        windows = self._window_features(dev_set.texts, show_progress)
                        dev_features = replace(dev_features, windows=windows)
                else:
                    dev_features, train_features = (
                        self._windowed_features(dev_set.texts, show_progress)
                        if windowed_dev
                        else self._features(dev_set.texts, show_progress, as_trained=True),
                        self._features(train_set.texts, show_progress, as_trained=True),
                    )
                self.stage_ = PredictionStage.fit(
                    labels,
                    train_features,
                    y_train,
                    dev_features,
                    y_dev,
                    StageSettings.from_config(cfg),
                    label_texts=texts,
                    embed=self.encode,
                    show_progress=show_progress,
                    at_least_one=cfg.at_least_one if cfg.at_least_one is not None else all(train_set.labels),
                    timings={"embedding train and dev": time.monotonic() - tic},
                )
                self.stage_.window_embedder = self._window_features if self._reads_windows() else None
                self.metrics_ = {"dev": self._evaluate(dev_features, dev_set)}
            if dev_pair_records is not None:
                self.metrics_.setdefault("dev", {}).update(self.evaluate_pairs(dev_pair_records))
            if dev_retrieval is not None:
                self.metrics_.setdefault("dev", {}).update(self.evaluate_retrieval(dev_retrieval))
            if out_dir is not None:
                self.save(out_dir)
        if out_dir is not None:
            write_run_outputs(self, Path(out_dir), test_set)
        elif test_set is not None and self.stage_ is not None:
            self.metrics_["test"] = self.evaluate(test_set)
        return self

    # ------------------------------------------------------------------ prediction
    def _stage(self) -> PredictionStage:
        if self.stage_ is None:
            if self.encoder_ is not None:
                raise NotFittedError(
                    "this model was trained without labels: it embeds texts (encode) but predicts no labels"
                )
            raise NotFittedError("this Labelcon model is not fitted yet: call fit() or Labelcon.load()")
        return self.stage_

    @property
    def labels(self) -> LabelSpace:
        return self._stage().labels

    @property
    def classes_(self) -> list[str]:
        """Label names in column order of :meth:`predict_proba`."""
        return list(self.labels.names)

    def encode(self, texts: Sequence[str], *, normalize: bool = True, show_progress: bool = False) -> np.ndarray:
        """Embeddings [n, D] (L2-normalised by default) of ``texts``."""
        return self._features(texts, show_progress, normalize=normalize).embeddings

    def _features(
        self, items: Sequence[str], show_progress: bool = False, as_trained: bool = False, normalize: bool = True
    ) -> Features:
        """``items`` embedded; ``as_trained`` (for the head's training set and dev, read
        only in fit): see :meth:`Encoder.encode`."""
        items = self._items(items)
        z = self.encoder_.encode(items, None, normalize, show_progress, as_trained)
        return Features(z, items if are_texts(items) or not items else None)

    def _items(self, items: Sequence[str]) -> list[str]:
        """``items`` as a list, once the model has an encoder to embed them."""
        if self.encoder_ is None:
            raise NotFittedError("this Labelcon model is not fitted yet: call fit() or Labelcon.load()")
        if isinstance(items, str):
            raise TypeError("expected a list of texts, got a single string; wrap it in a list")
        return list(items)

    def features(self, texts: Sequence[str], *, show_progress: bool = False) -> Features:
        """``texts`` as the prediction stage scores them: embedded (L2-normalised, as
        :meth:`encode` embeds them) and, when the stage scores each window of a text
        (``score_pooling`` other than ``"embedding"``) and the encoder reads windows, with
        their windows too, from one :meth:`~labelcon.encoders.Encoder.encode_windows` pass,
        whose item vectors are :meth:`encode`'s bit for bit; so no text is embedded twice."""
        if self._stage().score_pooling == EMBEDDING or not self._reads_windows():
            return self._features(texts, show_progress)
        return self._windowed_features(texts, show_progress)

    def _windowed_features(self, texts: Sequence[str], show_progress: bool = False) -> Features:
        """``texts`` embedded with their windows, in one pass of ``encode_windows``."""
        embedded = self.encoder_.encode_windows(texts := self._items(texts), show_progress=show_progress)
        return Features(embedded.items, texts, _window_rows(embedded))

    def _reads_windows(self) -> bool:
        """Whether the encoder reads a long text as several windows (and so can embed each of them)."""
        return getattr(self.encoder_, "windows", "first") != "first"

    def _window_features(self, texts: list[str], show_progress: bool = False) -> WindowFeatures:
        """The windows of ``texts``, each embedded (:meth:`~labelcon.encoders.Encoder.encode_windows`)."""
        return _window_rows(self.encoder_.encode_windows(texts, show_progress=show_progress))

    def predict_proba(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Scores [n, C] in [0, 1], columns in :attr:`classes_` order: one dense matrix, so for
        few labels; :meth:`predict`, :meth:`top_k` and :meth:`evaluate` never build it."""
        return self._stage().scores(self.features(texts, show_progress=show_progress), show_progress=show_progress)

    def predict(self, texts: Sequence[str], *, at_least_one: bool | None = None) -> list[list[str]]:
        """Label sets: every label whose score clears its calibrated threshold (scored a block at a time)."""
        return self._stage().label_sets(self.features(texts), at_least_one=at_least_one)

    def top_k(self, texts: Sequence[str], k: int = 5) -> Ranked:
        """The ``k`` highest-scoring labels of each text with their scores, best first."""
        return self._stage().top_k(self.features(texts), k)

    def predict_with_top_k(
        self, texts: Sequence[str], k: int = 5, *, at_least_one: bool | None = None
    ) -> tuple[list[list[str]], Ranked]:
        """``(predict(texts), top_k(texts, k))``, encoding the texts once."""
        return self._stage().predict(self.features(texts), k, at_least_one=at_least_one)

    def add_labels(self, names: Sequence[str], texts: Sequence[str] | None = None) -> Labelcon:
        """Add labels never seen in training (heads that embed label texts: ``label_text``),
        predicted from the similarity of items to ``texts`` (default: the names)."""
        texts = list(names if texts is None else texts)
        self._stage().add_labels(list(names), texts, self.encode(texts))
        return self

    def evaluate(self, data: DataLike, *, ignore_unknown_labels: bool | None = None) -> dict[str, Any]:
        """Metrics of :meth:`PredictionStage.evaluate` on a labelled data set; labels unseen in
        training raise an error, or with ``ignore_unknown_labels`` count as misses."""
        dataset = self.read(data)
        return self._evaluate(self.features(dataset.texts), dataset, ignore_unknown_labels)

    def evaluate_pairs(
        self, pairs: PairsLike, *, fields: str | None = None, score_field: str | None = None
    ) -> dict[str, float]:
        """``pairs_pearson`` and ``pairs_spearman``: correlations of the cosine of each
        scored pair's embeddings with its gold score (:func:`labelcon.embedding_metrics.pair_correlations`).
        Columns: ``fields`` and ``score_field``, by default the run's ``pair_fields`` and
        ``pair_score_field`` when it trained on scored pairs, else ``text1,text2`` and ``score``."""
        cfg = self.config
        scored = cfg.pair_score_field is not None
        fields = fields or (cfg.pair_fields if scored else "text1,text2")
        records = as_pair_records(pairs, fields=fields, score_field=score_field or cfg.pair_score_field or "score")
        first, second = (self.encode(column) for column in records.columns)
        return pair_correlations(first, second, records.scores)

    def evaluate_retrieval(self, data: RetrievalSet) -> dict[str, float]:
        """``ndcg@10``, ``mrr@10`` and ``recall@k`` of the queries against the corpus by
        cosine (:func:`labelcon.embedding_metrics.retrieval_metrics`)."""
        return retrieval_metrics(self.encode(data.queries), self.encode(data.corpus), data.relevant)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Publish the model into ``directory`` as a whole (:func:`labelcon.modeldir.publish`),
        with ``history.json``, ``metrics.json``, the search index (``index/``) and the model
        card (``README.md``, :mod:`labelcon.card`) beside it."""
        if self.encoder_ is None:
            raise NotFittedError("nothing to save: the model is not fitted")
        directory = Path(directory)

        def write(folder: Path) -> None:
            self.encoder_.save(folder / "encoder")
            if self.stage_ is not None:
                self.stage_.save(folder)
            (folder / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")

        folder = publish(
            directory, write, {"objective": self.objective_, "labels": len(self.stage_.labels) if self.stage_ else 0}
        )
        self.version_ = version_name(folder, read_json(directory / MODEL_FILE))
        if self.index_ is not None:
            save_index(directory, self.index_)
        write_json(directory / "history.json", self.history_)
        if self.metrics_:
            path = directory / "metrics.json"
            write_json(path, {**(read_json(path) if path.exists() else {}), **self.metrics_})
        write_card(directory, self, run_dir=directory)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "auto") -> Labelcon:
        """Load a model saved by :meth:`save` (a ``labelcon train`` run directory)
        or an export of one (:mod:`labelcon.export`), onto ``device``
        (:func:`labelcon.device.resolve_device`: ``auto`` takes a GPU when there is one, so a
        model trained on a GPU loads on a machine without one); its ``config`` stays the one
        it trained with."""
        model = load_current(directory, lambda folder, meta: cls._load_version(folder, meta, device))
        for name in ("history", "metrics"):
            path = Path(directory) / f"{name}.json"
            setattr(model, f"{name}_", read_json(path) if path.exists() else ([] if name == "history" else {}))
        model.index_ = load_index(directory)
        return model

    @classmethod
    def _load_version(cls, folder: Path, meta: dict[str, Any], device: str) -> Labelcon:
        """One model version; a file of it that is missing, unreadable or does not fit the
        others raises :class:`labelcon.filecheck.ModelLoadError` naming that file."""
        model = cls(config=read_config(folder / "config.yaml"))
        model.encoder_ = read_encoder(*encoder_location(folder, meta), device=device)
        model.objective_ = meta.get("objective")
        model.version_ = version_name(folder, meta)
        if meta.get("labels") or (folder / META_FILE).exists():  # a model of unlabelled texts has no stage
            model.stage_ = PredictionStage.load(folder, dim=model.encoder_.dim).to(device)
            model.stage_.window_embedder = model._window_features if model._reads_windows() else None
        return model


def _window_rows(embedded: WindowEmbeddings) -> WindowFeatures:
    """The windows of ``encode_windows``' answer, as the stage scores them."""
    return WindowFeatures(embedded.windows, np.array([span.owner for span in embedded.spans], dtype=np.int64))
