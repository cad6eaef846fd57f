"""``Labelcon``: the whole flow behind one estimator (fit, predict, encode, save, load).

>>> from labelcon import Labelcon
>>> from labelcon.data import demo_paths
>>> paths = demo_paths()
>>> model = Labelcon(encoder="static", epochs=1, head="prototype").fit(paths["train"], paths["dev"], show_progress=False)
>>> len(model.predict(["my card was charged twice"], at_least_one=True)[0]) >= 1
True
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import yaml

from labelcon.config import AUTO_HEAD, Config
from labelcon.data import Dataset, LabelSpace, read_dataset, read_label_descriptions, sample_shots, train_dev_split
from labelcon.encoders import Encoder, are_texts, build_encoder, load_encoder, resolve_encode_length, resolve_max_length
from labelcon.heads import FallbackHead, Head, KNNHead, LabelTextHead, Thresholds, build_head, select_on_dev
from labelcon.heads.knn import QUERY_BLOCK
from labelcon.io import atomic_directory, atomic_open, read_json, write_json
from labelcon.lexical import LexicalKNN, mix_scores
from labelcon.metrics import average_precision_per_label, concat_top_k, evaluate_blocks, sparse_top_k, top_k
from labelcon.metrics import evaluate as evaluate_metrics
from labelcon.objectives import build_objective, resolve_objective
from labelcon.training import Trainer, seed_everything
from labelcon.training.distributed import is_main_process

DataLike = Dataset | str | os.PathLike | tuple[Sequence[str], Sequence[Sequence[str]]]

#: Name of the file that marks a directory as a saved labelcon model.
MODEL_FILE = "labelcon.json"
ENCODE_BATCH = 128
#: Entries of one block of dense scores [items, C] in predict, top_k and evaluate (32 MB of float32).
SCORE_BLOCK = 1 << 23
#: Largest items x labels that evaluate scores as one dense matrix (200 MB of float32).
DENSE_EVALUATION = 50_000_000
#: ``lexical="auto"``: the weights of the TF-IDF kNN vote tried on dev.
LEXICAL_WEIGHTS = (0.0, 0.25, 0.5)


class _Inputs(NamedTuple):
    """What the scores of some texts are made from: their embeddings [n, D] and, when the
    model mixes in the lexical vote, its sparse scores [n, C]."""

    embeddings: np.ndarray
    votes: sp.csr_matrix | None


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` or ``load``."""


class Labelcon:
    """Contrastively trained encoder + a label head with per-label thresholds.

    ``encoder``, ``objective`` and ``head`` name the parts (see :class:`labelcon.config.Config`
    for every other setting, which can be passed as a keyword or through ``config``).
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
        values = config.model_dump() if config is not None else {}
        values.update({k: v for k, v in {"encoder": encoder, "objective": objective, "head": head}.items() if v})
        values.update(params)
        self.config = Config.build(values, source="Labelcon()")
        self.encoder_: Encoder | None = None
        self.head_: Head | None = None
        self.thresholds_: Thresholds | None = None
        self.labels_: LabelSpace | None = None
        self.label_texts_: list[str] = []
        self.at_least_one_: bool = bool(self.config.at_least_one)
        self.history_: list[dict[str, Any]] = []
        self.head_selection_: dict[str, float] = {}
        self.lexical_: LexicalKNN | None = None
        self.lexical_weight_: float = 0.0
        self.objective_: str | None = None  # the objective trained with ("auto" resolved)
        self.metrics_: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ data
    def read(self, data: DataLike) -> Dataset:
        """Turn a path, a :class:`Dataset` or a ``(texts, label_sets)`` pair into a Dataset."""
        if isinstance(data, Dataset):
            return data
        if isinstance(data, tuple) and len(data) == 2:
            texts, label_sets = data
            if len(texts) != len(label_sets):
                raise ValueError(f"got {len(texts)} texts but {len(label_sets)} label sets")
            return Dataset(texts=list(texts), labels=[tuple(dict.fromkeys(ls)) for ls in label_sets], source=None)
        if isinstance(data, (str, os.PathLike)):
            cfg = self.config
            return read_dataset(data, text_field=cfg.text_field, labels_field=cfg.labels_field, label_sep=cfg.label_sep)
        raise TypeError(f"expected a path, a Dataset or a (texts, label_sets) pair, got {type(data).__name__}")

    def _label_matrix(self, data: Dataset, ignore_unknown: bool | None = None) -> tuple[sp.csr_matrix, Counter]:
        ignore = self.config.ignore_unknown_labels if ignore_unknown is None else ignore_unknown
        if ignore:
            return self.labels.encode(data.labels, unknown="ignore", return_unknown=True)
        return self.labels.encode(data.labels, unknown="error"), Counter()

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: DataLike,
        dev: DataLike | None = None,
        *,
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        show_progress: bool = True,
    ) -> "Labelcon":
        """Train the encoder, fit the head on train and calibrate thresholds on dev.

        Without ``dev``, a seeded carve-out of ``config.dev_fraction`` of train serves as
        dev (:func:`labelcon.data.train_dev_split`). With ``out_dir``, training writes
        resumable checkpoints there and the fitted model is saved there at the end.
        Under ``torchrun`` every process calls ``fit``; they train together, then rank 0
        alone fits the head, calibrates and saves, and the others return without a head.
        """
        cfg = self.config
        seed_everything(cfg.seed)
        train_set = self.read(train)
        dev_set = self.read(dev) if dev is not None else None
        if dev_set is None:
            train_set, dev_set = train_dev_split(train_set, dev_fraction=cfg.dev_fraction, seed=cfg.seed)
        if cfg.shots:
            train_set = sample_shots(train_set, cfg.shots, seed=cfg.seed)
        self.labels_ = LabelSpace.from_label_sets(train_set.labels, labels_file=cfg.labels_file)
        self.label_texts_ = self._label_texts(self.labels.names)
        self.at_least_one_ = cfg.at_least_one if cfg.at_least_one is not None else all(train_set.labels)
        y_train, _ = self._label_matrix(train_set)
        y_dev, unknown_dev = self._label_matrix(dev_set)

        max_length = resolve_max_length(cfg.max_length, train_set.texts)
        self.encoder_ = build_encoder(
            cfg.encoder, train_texts=train_set.texts, max_length=max_length,
            projection_dim=cfg.projection_dim, seed=cfg.seed, precision=cfg.precision, **cfg.encoder_params,
        )
        self.objective_ = resolve_objective(cfg.objective, np.bincount(y_train.indices, minlength=y_train.shape[1]))
        objective = build_objective(self.objective_, temperature=cfg.temperature, **cfg.objective_params)
        run_dir = Path(out_dir) if out_dir is not None else None
        if run_dir is not None and is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_open(run_dir / "config.yaml") as handle:
                handle.write(cfg.to_yaml())

        eval_rows = np.random.default_rng(cfg.seed).permutation(len(train_set))[: cfg.eval_max_train]
        dev_rows = _dense_rows(len(dev_set), len(self.labels), cfg.seed)

        def dev_check(encoder: Encoder) -> dict[str, float]:
            """kNN over a sample of train scored on dev (on a sample of dev too when dev x
            labels exceeds ``DENSE_EVALUATION``): cheap enough to run every epoch."""
            ref = encoder.encode([train_set.texts[i] for i in eval_rows], batch_size=ENCODE_BATCH,
                                 show_progress=show_progress)
            head = build_head("knn").fit(ref, y_train[eval_rows])
            scores = head.predict_scores(encoder.encode([dev_set.texts[i] for i in dev_rows],
                                                        batch_size=ENCODE_BATCH, show_progress=show_progress))
            return evaluate_metrics(y_dev[dev_rows], scores, scores >= 0.5)

        trainer = Trainer(
            self.encoder_, objective, cfg, run_dir=run_dir, evaluate=dev_check if cfg.epochs else None,
            label_texts=self.label_texts_, show_progress=show_progress,
        )
        initial = {k: v.detach().clone() for k, v in self.encoder_.state_dict().items()} if cfg.keep_base else None
        state = trainer.fit(train_set.texts, y_train, resume=resume)
        self.history_ = state.history
        if initial is not None:
            interpolate_weights(self.encoder_, initial, 1.0 - cfg.keep_base)
        if not is_main_process():  # under torchrun, rank 0 alone fits the head, evaluates and saves
            return self

        encode_length = resolve_encode_length(cfg.encode_max_length, train_set.texts, max_length)
        if encode_length is not None:  # text encoders: embed for the head (and later predictions) at this length
            self.encoder_.max_length = encode_length
        dev_inputs = self._fit_head(train_set.texts, y_train, dev_set.texts, y_dev, show_progress)
        dev_metrics = self._evaluate_inputs(dev_inputs, y_dev)
        if unknown_dev:
            dev_metrics["unknown_labels"] = sum(unknown_dev.values())
        self.metrics_ = {"dev": dev_metrics}
        if run_dir is not None:
            self.save(run_dir)
        return self

    def _fit_head(self, train_texts, y_train, dev_texts, y_dev, show_progress: bool) -> _Inputs:
        """Fit the head (and the lexical vote) on train and the thresholds on dev; returns dev's inputs."""
        cfg = self.config
        train_emb = self.encode(train_texts, show_progress=show_progress)
        dev_emb = self.encode(dev_texts, show_progress=show_progress)
        if cfg.head == AUTO_HEAD:  # Config has checked the head and its parameters
            self.head_, self.head_selection_ = select_on_dev(
                train_emb, y_train, dev_emb, y_dev, min_positives=cfg.min_positives, show_progress=show_progress
            )
        else:
            head = build_head(cfg.head, **cfg.head_params)
            if isinstance(head, LabelTextHead):
                self.head_ = head.fit(train_emb, y_train, label_embeddings=self.encode(self.label_texts_))
            else:
                self.head_ = head.fit(train_emb, y_train)
        dev = self._fit_lexical(train_texts, y_train, dev_texts, y_dev, dev_emb, show_progress)
        fallback = "global" if self.rare_label_threshold is None else self.rare_label_threshold
        if y_dev.shape[0] * y_dev.shape[1] <= DENSE_EVALUATION:
            self.thresholds_ = Thresholds.calibrate(self._scores(dev), y_dev,
                                                    min_positives=cfg.min_positives, fallback=fallback)  # fmt: skip
        else:  # many labels: the dev scores a block of rows at a time, never [n_dev, C]
            self.thresholds_ = Thresholds.calibrate_blocks(lambda: self._score_blocks(dev), y_dev,
                                                           min_positives=cfg.min_positives, fallback=fallback)  # fmt: skip
        return dev

    def _fit_lexical(self, train_texts, y_train, dev_texts, y_dev, dev_emb, show_progress: bool) -> _Inputs:
        """Fit the TF-IDF kNN vote of :mod:`labelcon.lexical` and set its weight: the
        configured one, or for ``"auto"`` the one of ``LEXICAL_WEIGHTS`` whose mix has the
        best dev macro-AP (on a seeded sample of dev rows when dev x labels exceeds
        ``DENSE_EVALUATION``; each weight's figure is kept in ``head_selection_``).
        Inputs that are not texts, or weight 0, leave the head's scores alone."""
        setting = self.config.lexical
        self.lexical_, self.lexical_weight_ = None, 0.0
        if setting == 0 or not are_texts(train_texts):
            return _Inputs(dev_emb, None)
        lexical = LexicalKNN().fit(train_texts, y_train)
        votes = lexical.sparse_scores(dev_texts, show_progress=show_progress)
        weight = float(setting) if setting != "auto" else self._best_lexical_weight(dev_emb, votes, y_dev)
        if weight == 0:
            return _Inputs(dev_emb, None)
        self.lexical_, self.lexical_weight_ = lexical, weight
        return _Inputs(dev_emb, votes)

    def _best_lexical_weight(self, dev_emb: np.ndarray, votes: sp.csr_matrix, y_dev: sp.csr_matrix) -> float:
        rows = _dense_rows(len(dev_emb), y_dev.shape[1], self.config.seed)
        scores, votes, y = self._head().predict_scores(dev_emb[rows]), votes[rows], y_dev[rows]
        keep = self._unmixed_columns()
        ap = {w: float(np.nanmean(average_precision_per_label(y, mix_scores(scores, votes, w, keep))))
              for w in LEXICAL_WEIGHTS}  # fmt: skip
        self.head_selection_.update({f"lexical weight {w:g}: dev macro-AP": value for w, value in ap.items()})
        return max(ap, key=ap.get)

    @property
    def rare_label_threshold(self) -> float | None:
        """The one threshold the ``auto`` head brings for labels too rare in dev for their own
        (:class:`labelcon.heads.FallbackHead`), or None."""
        return self.head_.threshold if isinstance(self.head_, FallbackHead) else None

    def _unmixed_columns(self) -> list[int]:
        """Label columns the lexical vote leaves alone: those a FallbackHead scores for its own threshold."""
        return self.head_.columns if isinstance(self.head_, FallbackHead) else []

    def _label_texts(self, names: Sequence[str]) -> list[str]:
        """What label-text heads and objectives embed: the description when one is given, else the name."""
        descriptions = read_label_descriptions(self.config.label_descriptions) if self.config.label_descriptions else {}
        return [descriptions.get(name, name) for name in names]

    def add_labels(self, names: Sequence[str], texts: Sequence[str] | None = None) -> "Labelcon":
        """Add labels never seen in training (label-text head only): they are predicted from
        the similarity of items to ``texts`` (default: the names), with the global threshold.

        >>> model.add_labels(["gift card"], ["questions about buying or redeeming gift cards"])  # doctest: +SKIP
        """
        if not isinstance(self.head_, LabelTextHead):
            raise ValueError(f"add_labels needs the label_text head; this model's head is {self.config.head!r}")
        texts = list(names if texts is None else texts)
        if len(texts) != len(names):
            raise ValueError(f"got {len(names)} names but {len(texts)} texts")
        clash = [name for name in names if name in self.labels.names]
        if clash:
            raise ValueError(f"labels already known: {clash}")
        self.head_.add_labels(self.encode(texts))
        if self.lexical_ is not None:  # no training text holds the new labels: they get no votes
            self.lexical_.add_label_columns(len(names))
        self.labels_ = LabelSpace([*self.labels.names, *names])
        self.label_texts_ = [*self.label_texts_, *texts]
        assert self.thresholds_ is not None
        fallback = np.full(len(names), self.thresholds_.global_threshold, dtype=np.float32)
        self.thresholds_ = Thresholds(np.concatenate([self.thresholds_.thresholds, fallback]),
                                      np.concatenate([self.thresholds_.per_label, np.zeros(len(names), bool)]),
                                      self.thresholds_.global_threshold)
        return self

    # ------------------------------------------------------------------ inference
    @property
    def labels(self) -> LabelSpace:
        if self.labels_ is None:
            raise NotFittedError("this Labelcon model is not fitted yet: call fit() or Labelcon.load()")
        return self.labels_

    @property
    def classes_(self) -> list[str]:
        """Label names in column order of :meth:`predict_proba`."""
        return list(self.labels.names)

    def encode(self, texts: Sequence[str], *, normalize: bool = True, show_progress: bool = False) -> np.ndarray:
        """Embeddings [n, D] (L2-normalised by default) of ``texts``."""
        if self.encoder_ is None:
            raise NotFittedError("this Labelcon model is not fitted yet: call fit() or Labelcon.load()")
        texts = _as_texts(texts)
        return self.encoder_.encode(texts, batch_size=ENCODE_BATCH, normalize=normalize, show_progress=show_progress)

    def predict_proba(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Scores [n, C] in [0, 1], columns in :attr:`classes_` order: one dense matrix, so for
        few labels; :meth:`predict`, :meth:`top_k` and :meth:`evaluate` never build it.
        With the lexical vote on (``lexical_weight_`` > 0) they are the head's scores mixed
        with it (:func:`labelcon.lexical.mix_scores`)."""
        return self._scores(self._inputs(texts, show_progress))

    def predict(self, texts: Sequence[str], *, at_least_one: bool | None = None) -> list[list[str]]:
        """Label sets: every label whose score clears its calibrated threshold.

        Scores are made and thresholded ``SCORE_BLOCK // C`` items at a time (all at once
        for few labels), so memory stays bounded however many items and labels there are.
        """
        return self._label_sets(self._decisions(self._inputs(texts), at_least_one))

    def top_k(self, texts: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` highest-scoring labels of each text with their scores, best first
        (blocked, never [n, C] at once)."""
        return self._ranked(self._inputs(texts), k)

    def predict_with_top_k(
        self, texts: Sequence[str], k: int = 5, *, at_least_one: bool | None = None
    ) -> tuple[list[list[str]], list[list[tuple[str, float]]]]:
        """``(predict(texts), top_k(texts, k))``, encoding the texts once."""
        inputs = self._inputs(texts)
        return self._label_sets(self._decisions(inputs, at_least_one)), self._ranked(inputs, k)

    def decide(self, scores: np.ndarray, at_least_one: bool | None = None) -> np.ndarray:
        """Boolean [n, C] decisions from scores with the calibrated per-label thresholds."""
        assert self.thresholds_ is not None
        one = self.at_least_one_ if at_least_one is None else at_least_one
        return self.thresholds_.apply(scores, at_least_one=one)

    def _head(self) -> Head:
        if self.head_ is None:
            raise NotFittedError("this Labelcon model is not fitted yet: call fit() or Labelcon.load()")
        return self.head_

    def _inputs(self, texts: Sequence[str], show_progress: bool = False) -> _Inputs:
        texts = _as_texts(texts)
        votes = None if self.lexical_ is None else self.lexical_.sparse_scores(texts, show_progress=show_progress)
        return _Inputs(self.encode(texts, show_progress=show_progress), votes)

    def _scores(self, inputs: _Inputs, rows: slice = slice(None)) -> np.ndarray:
        """Dense scores of ``inputs``' ``rows``: the head's, mixed with the lexical vote when on."""
        scores = self._head().predict_scores(inputs.embeddings[rows])
        if inputs.votes is None:
            return scores
        return mix_scores(scores, inputs.votes[rows], self.lexical_weight_, self._unmixed_columns())

    def _score_blocks(self, inputs: _Inputs) -> Iterator[np.ndarray]:
        """Dense scores of consecutive blocks of rows, each at most ``SCORE_BLOCK`` entries."""
        step = max(1, SCORE_BLOCK // max(self._head().n_labels_, 1))
        for start in range(0, len(inputs.embeddings), step):
            yield self._scores(inputs, slice(start, start + step))

    def _decisions(self, inputs: _Inputs, at_least_one: bool | None) -> sp.csr_matrix:
        """:meth:`decide` over :meth:`_score_blocks`, stacked as a boolean CSR matrix [n, C]."""
        empty = sp.csr_matrix((0, self._head().n_labels_), dtype=bool)
        blocks = [sp.csr_matrix(self.decide(s, at_least_one)) for s in self._score_blocks(inputs)]
        return sp.vstack([empty, *blocks], format="csr")

    def _label_sets(self, decisions: sp.csr_matrix) -> list[list[str]]:
        names, bounds = self.labels.names, decisions.indptr
        return [[names[c] for c in decisions.indices[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _ranked(self, inputs: _Inputs, k: int) -> list[list[tuple[str, float]]]:
        head, x, votes = self._head(), inputs.embeddings, inputs.votes
        if votes is None:
            idx, values = head.predict_top_k(x, k)
        elif isinstance(head, KNNHead):  # both votes sparse: their mix is too, whatever C is
            w, step = self.lexical_weight_, QUERY_BLOCK
            parts = [sparse_top_k((1 - w) * head.sparse_scores(x[i : i + step]) + w * votes[i : i + step], k)
                     for i in range(0, len(x), step)]  # fmt: skip
            idx, values = concat_top_k(parts, k)
        else:
            idx, values = concat_top_k([top_k(scores, k) for scores in self._score_blocks(inputs)], k)
        names = self.labels.names
        return [[(names[c], float(v)) for c, v in zip(*row, strict=True)] for row in zip(idx, values, strict=True)]

    def evaluate(self, data: DataLike, *, ignore_unknown_labels: bool | None = None) -> dict[str, Any]:
        """Metrics of :func:`labelcon.metrics.evaluate` on a labelled data set.

        Up to ``DENSE_EVALUATION`` items x labels, the scores are one dense matrix and every
        metric is reported. Above it, they are taken ``SCORE_BLOCK`` entries at a time
        (:func:`labelcon.metrics.evaluate_blocks`): the same F1s, hamming loss, P@k and LRAP,
        but no ``macro_ap`` (it ranks each label over all items), and ``"skipped": ["macro_ap"]``.
        Labels unseen in training raise an error, or with ``ignore_unknown_labels`` are
        dropped and counted in ``unknown_labels``.
        """
        dataset = self.read(data)
        y_true, unknown = self._label_matrix(dataset, ignore_unknown_labels)
        metrics = self._evaluate_inputs(self._inputs(dataset.texts), y_true)
        if unknown:
            metrics["unknown_labels"] = sum(unknown.values())
        return metrics

    def _evaluate_inputs(self, inputs: _Inputs, y_true: sp.csr_matrix) -> dict[str, Any]:
        if y_true.shape[0] * y_true.shape[1] <= DENSE_EVALUATION:
            scores = self._scores(inputs)
            return evaluate_metrics(y_true, scores, self.decide(scores, None))
        return evaluate_blocks(y_true, ((s, self.decide(s, None)) for s in self._score_blocks(inputs)))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write config, labels, encoder, head, thresholds and metrics into ``directory``."""
        if self.head_ is None or self.encoder_ is None or self.thresholds_ is None:
            raise NotFittedError("nothing to save: the model is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_directory(directory / "encoder") as tmp:
            self.encoder_.save(tmp)
        with atomic_directory(directory / "head") as tmp:
            self.head_.save(tmp)
        if self.lexical_ is not None:
            with atomic_directory(directory / "lexical") as tmp:
                self.lexical_.save(tmp)
        write_json(directory / "labels.json", self.labels.to_json())
        write_json(directory / "label_texts.json", self.label_texts_)
        write_json(directory / "thresholds.json", self.thresholds_.to_json())
        write_json(directory / "history.json", self.history_)
        with atomic_open(directory / "config.yaml") as handle:
            handle.write(self.config.to_yaml())
        if self.metrics_:
            path = directory / "metrics.json"
            existing = read_json(path) if path.exists() else {}
            write_json(path, {**existing, **self.metrics_})
        write_json(directory / MODEL_FILE, {"format": 1, "labels": len(self.labels), "at_least_one": self.at_least_one_,
                                            "head_selection": self.head_selection_, "objective": self.objective_,
                                            "lexical_weight": self.lexical_weight_})
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Labelcon":
        """Load a model saved by :meth:`save` (a ``labelcon train`` run directory)."""
        directory = Path(directory)
        if not (directory / MODEL_FILE).exists():
            raise FileNotFoundError(
                f"{directory}: not a labelcon model directory (no {MODEL_FILE}); "
                "expected the --out directory of `labelcon train` or a path given to Labelcon.save()"
            )
        config = Config.build(yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8")),
                              source=str(directory / "config.yaml"))
        model = cls(config=config)
        model.encoder_ = load_encoder(directory / "encoder")
        model.head_ = Head.load(directory / "head")
        model.labels_ = LabelSpace.from_json(read_json(directory / "labels.json"))
        # label texts and at_least_one came with format 1's later runs; older ones used names and True
        texts = directory / "label_texts.json"
        model.label_texts_ = read_json(texts) if texts.exists() else list(model.labels_.names)
        meta = read_json(directory / MODEL_FILE)
        model.at_least_one_ = bool(meta.get("at_least_one", True))
        model.head_selection_ = meta.get("head_selection", {})
        model.objective_ = meta.get("objective")
        model.lexical_weight_ = float(meta.get("lexical_weight", 0.0))  # runs before the lexical vote have none
        model.lexical_ = LexicalKNN.load(directory / "lexical") if model.lexical_weight_ else None
        model.thresholds_ = Thresholds.from_json(read_json(directory / "thresholds.json"))
        history = directory / "history.json"
        model.history_ = read_json(history) if history.exists() else []
        metrics = directory / "metrics.json"
        model.metrics_ = read_json(metrics) if metrics.exists() else {}
        return model


def interpolate_weights(encoder: Encoder, initial: dict[str, Any], weight: float) -> None:
    """Move ``encoder``'s floating-point weights to ``(1 - weight) * initial + weight * trained``
    in place: weight-space ensembling of the fine-tuned and the starting model (WiSE-FT,
    Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"), which keeps more of what
    the starting model did well, such as general sentence similarity, for some task accuracy.

    >>> import torch
    >>> layer = torch.nn.Linear(1, 1, bias=False)
    >>> start = {k: torch.zeros_like(v) for k, v in layer.state_dict().items()}
    >>> with torch.no_grad(): _ = layer.weight.fill_(1.0)
    >>> interpolate_weights(layer, start, 0.25); layer.weight.item()
    0.25
    """
    trained = encoder.state_dict()
    encoder.load_state_dict({key: initial[key].lerp(value, weight) if value.is_floating_point() else value
                             for key, value in trained.items()})  # fmt: skip


def _dense_rows(n_items: int, n_labels: int, seed: int) -> np.ndarray:
    """A seeded sample of row indices, sorted, small enough that its scores [rows, n_labels]
    stay within ``DENSE_EVALUATION`` entries (all rows when they fit)."""
    return np.sort(np.random.default_rng(seed).permutation(n_items)[: DENSE_EVALUATION // n_labels])


def _as_texts(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, got a single string; wrap it in a list")
    return list(texts)
