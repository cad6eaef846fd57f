"""Run configuration: one validated object shared by the CLI, the estimator and the trainer.

Values come, in increasing priority, from the defaults below, a YAML file
(``--config FILE.yaml``) and explicit arguments or command-line flags.

>>> cfg = Config(epochs=2, encoder="static")
>>> cfg.resolved_lr()
0.01
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from labelcon.data.pairs import parse_fields
from labelcon.parts import AUTO_HEAD, check_head, check_pair_objective
from labelcon.views import make_view

#: The device names ``--device`` takes (:mod:`labelcon.device` says what each means).
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(ValueError):
    """A device name that is not one labelcon knows, or a device this machine does not have."""


def check_device_name(name: str) -> str:
    """``name`` when it is a device name of :mod:`labelcon.device` (whatever the machine has)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise DeviceError(f"expected a device name ({DEVICE_CHOICES}), got {name!r}")
    return name


#: A device name of :mod:`labelcon.device` (whatever this machine has).
DeviceName = Annotated[str, AfterValidator(check_device_name)]
DEVICE_HELP = (
    "auto (a CUDA GPU, else Apple MPS, else the CPU) | cpu | cuda (this process's GPU: cuda:LOCAL_RANK "
    "under torchrun) | cuda:N | mps"
)

#: Fields that take ``"auto"`` or a count, with the least count each allows.
AUTO_OR_AT_LEAST = {"epochs": 0, "max_length": 4, "encode_max_length": 4, "nproc": 1}


#: Pydantic's bound errors, as the comparison they ask for.
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def refusal(err: dict[str, Any]) -> str:
    """What a pydantic error on one value asks for, and what came: ``must be >= 0, got -1``."""
    if err["type"] in _BOUNDS:
        bound = next(iter(err["ctx"].values()))
        wanted = f"must be {_BOUNDS[err['type']]} {format(bound, 'g') if isinstance(bound, float) else bound}"
    else:
        wanted = error_message(err)
    return f"{wanted}, got {err.get('input')!r}"


def error_message(err: dict[str, Any]) -> str:
    """A pydantic error's message, without the "Value error, " prefix pydantic puts before
    the text of a ``ValueError`` raised by a validator."""
    return str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]


class ConfigError(ValueError):
    """A configuration file or value that is not what labelcon expects."""


class Config(BaseModel):
    """Everything that defines a training run. Saved as ``config.yaml`` in the run directory."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    encoder: str = Field(
        "minilm", description="minilm | mpnet (labelcon[mpnet]) | static | a Hugging Face model name or local path"
    )
    objective: str = Field(
        "auto",
        description="auto (label_contrast when the median label has <= 10 training items, else "
        "supcon-jaccard) | supcon-jaccard | supcon-any | supcon-all | mulsupcon | mulsupcon-moco (MulSupCon's MoCo "
        "form: each item's momentum key of its second view is a positive; with --queue-size) | label_contrast | simcse",
    )
    head: str = Field(
        "auto", description="auto (linear, knn or both, picked on dev) | linear | knn | prototype | label_text"
    )
    view: str = Field(
        "dropout",
        description="second view of each text for simcse: dropout | word_deletion | word_repetition | "
        "span_crop (see labelcon.views)",
    )
    temperature: float = Field(0.1, gt=0, description="temperature of the contrastive objective")
    projection_dim: int | None = Field(None, gt=0, description="add a linear projection to this many dimensions")
    train_layers: int | None = Field(
        None,
        description="transformer encoders: fine-tune only the top N layers (and the projection); the "
        "layers below are frozen and their output is computed once per text and kept in memory "
        "(--layer-cache-mb), so each step runs the top N layers only: faster on a CPU. Default: all layers",
    )
    layer_cache_mb: int = Field(
        2048,
        ge=0,
        description="with --train-layers: memory (MB) keeping the frozen layers' output per text; "
        "texts beyond it are recomputed whenever they come",
    )
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="extra encoder arguments (JSON)")
    objective_params: dict[str, Any] = Field(default_factory=dict, description="extra objective arguments (JSON)")
    head_params: dict[str, Any] = Field(default_factory=dict, description="arguments of a named head (JSON)")
    view_params: dict[str, Any] = Field(
        default_factory=dict, description='arguments of the view (JSON), e.g. {"p": 0.2}'
    )

    # optimisation
    epochs: int | Literal["auto"] = Field(
        "auto",
        description="passes over the training data; auto: 3, or with a time budget as many as it holds "
        "(at most 10) while dev improves (--patience), unless epochs repeat few-shot data (--min-steps)",
    )
    batch_size: int = Field(64, ge=2, description="items per training batch")
    mini_batch_size: int | None = Field(None, ge=1, description="GradCache chunk size for batches larger than memory")
    max_length: int | Literal["auto"] = Field(
        "auto", description="tokens per text when training; auto: 64, or 128 when the training texts are longer"
    )
    encode_max_length: int | Literal["auto"] = Field(
        "auto",
        description="tokens per text when embedding after training (head, predictions); "
        "auto: max_length, or 256 for longer texts",
    )
    windows: Literal["auto", "first", "mean", "max"] = Field(
        "auto",
        description="texts longer than the window (max_length in training, encode_max_length after): first "
        "reads the first window only; mean/max pool the embeddings of its windows; auto: mean when a tenth of the "
        "training texts are longer than the window, else first",
    )
    max_windows: int = Field(8, ge=1, description="windows read per text at most (with --windows mean/max)")
    window_stride: int = Field(32, ge=0, description="tokens that neighbouring windows of a text share")
    window_training: Literal["sample", "all"] = Field(
        "sample",
        description="with windows, what training embeds of a text: sample (one window drawn per step, with the "
        "text's labels) or all (its windows pooled, gradients through each)",
    )
    lr: float | None = Field(None, gt=0, description="learning rate; default: 5e-5 for transformers, 1e-2 for static")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    max_time_minutes: float | None = Field(
        15.0,
        ge=0,
        description="time budget of the run in minutes (0: no limit): training and its dev checks, and the "
        "embedding of train, dev and test that follows, whose time training leaves free (estimated from the "
        "measured speed; training keeps at least half the budget)",
    )
    keep_base: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="after training, move the encoder's weights this share of the way back to "
        "its starting weights (WiSE-FT): keeps general similarity for some task accuracy",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="transformer encoders: auto: bfloat16 autocast where the hardware has it natively "
        "(float16 with a gradient scaler on older CUDA GPUs); float32; bfloat16 (see labelcon.device)",
    )
    min_steps: int = Field(
        100, ge=0, description="small data (few-shot): each epoch repeats the data until the run takes this many steps"
    )
    patience: int = Field(2, ge=1, description="epochs without dev improvement before stopping")
    seed: int = Field(13, ge=0, description="random seed of the whole run")
    checkpoint_minutes: float = Field(
        5.0,
        ge=0,
        description="minutes of training between resumable checkpoints, besides the one at each "
        "epoch's end (0: after every step)",
    )

    # data
    text_field: str = Field("text", description="field/column holding the text")
    labels_field: str | None = Field(
        "labels",
        description="field/column holding the labels; '' (Python: None): the texts are unlabelled (for simcse)",
    )
    label_sep: str | None = Field(None, description="separator when the labels are one string, e.g. ','")
    labels_file: str | None = Field(None, description="file with one label per line: the label space and its order")
    label_descriptions: str | None = Field(None, description="TSV label<TAB>text for label_text heads/objectives")
    dev_fraction: float = Field(0.1, gt=0, lt=1, description="carve-out of train used as dev when no dev file is given")
    ignore_unknown_labels: bool = Field(
        False, description="count dev/test labels unseen in training as misses (reported by name) instead of failing"
    )
    shots: int | None = Field(None, ge=1, description="train on N examples per label (few-shot)")

    # pairs (--pairs FILE): text tuples or scored pairs, alone or beside the labelled items
    pair_fields: str = Field(
        "anchor,positive",
        description="text columns of the --pairs records, comma-separated: anchor, positive, "
        "then any hard negatives (in-batch contrast, supervised SimCSE); with --pair-score-field the two texts of "
        "a scored pair (CoSENT)",
    )
    pair_score_field: str | None = Field(
        None,
        description="column holding each pair's gold similarity: the --pairs records are scored pairs "
        "(text1, text2, score), trained with CoSENT",
    )
    pair_weight: float = Field(
        1.0, gt=0, description="weight of the pair loss added to the label loss of the steps that take a pair batch"
    )
    pair_every: int = Field(
        1,
        ge=1,
        description="beside labelled items, a pair batch every this many label steps (steps 0, k, 2k, ...): "
        "pairs then cost a bounded share of the time budget",
    )
    pair_batch_size: int | None = Field(None, ge=2, description="records per pair batch; default: --batch-size")
    pair_objective_params: dict[str, Any] = Field(
        default_factory=dict,
        description="arguments of the pair objective (JSON): temperature (0.05), "
        "hard_negative_weight (0: SimCSE's log-weight of an anchor's own hard negatives), symmetric; scale (20) "
        "for scored pairs",
    )

    # prediction
    at_least_one: bool | None = Field(
        None, description="predict at least one label per item; default: when every training item has one"
    )
    min_positives: int = Field(3, ge=1, description="dev positives a label needs for a threshold of its own")
    target_metric: Literal["auto", "macro", "micro", "samples"] = Field(
        "auto",
        description="the F1 the run is judged by, which picks the head, the lexical weight (by the "
        "matching dev ranking figure: macro-AP, micro-AP, LRAP) and the decision rule (per-label thresholds, "
        "one global threshold, top-k or rank-capped thresholds, by dev F1); auto: macro up to 2,000 labels, "
        "micro above (docs/choosing.md)",
    )
    lexical: float | Literal["auto"] = Field(
        "auto",
        description="texts: weight of a TF-IDF kNN vote mixed into the head's scores, 0-1 (0: off); "
        "auto: 0, 0.25 or 0.5, whichever ranks dev best (--target-metric)",
    )
    lexical_scorer: Literal["knn", "dense_sparse", "auto"] = Field(
        "auto",
        description="texts: what --lexical mixes in: knn (a TF-IDF kNN vote) | dense_sparse (one-vs-rest "
        "linear SVMs on TF-IDF features and the embedding side by side, PECOS XR-Transformer's ranker, at C "
        "0.1 and 1, Platt-scaled on dev; one liblinear fit per label over all training texts) | auto: the kNN "
        "vote, and the ranker too when training texts x labels is at most 2 million (at C 1 alone up to 10 "
        "million); the one that ranks dev best by the target metric, and with --lexical auto the other kind "
        "stacked on top of it where that ranks dev better",
    )
    score_pooling: Literal["auto", "embedding", "max", "mean"] = Field(
        "embedding",
        description="texts read as windows (--windows mean/max): how the head scores a text: embedding (its "
        "pooled embedding) | max or mean (each window's embedding, the scores pooled per text: max lets "
        "evidence in one window count in full) | auto: whichever ranks dev best by the target metric, "
        "when some dev text has more than one window (not the default: on the long-evidence proxy max "
        "lost test micro-F1, BENCHMARKS.md)",
    )
    eval_max_train: int = Field(20000, ge=100, description="training items encoded for the per-epoch dev check")

    # scale: the device, a momentum key queue, many processes
    device: DeviceName = Field("auto", description=f"where to train and embed: {DEVICE_HELP}")
    queue_size: int | None = Field(None, ge=1, description="keys (with labels) kept from past batches (MoCo)")
    momentum: float = Field(0.999, ge=0, le=1, description="momentum of the key encoder's update")
    nproc: int | Literal["auto"] = Field(
        "auto",
        description="processes to train with on this machine (re-launches through torchrun); "
        "auto: one per CUDA GPU when --device is auto or cuda, else 1",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """``decision_metric``, the name ``target_metric`` had when it picked the decision rule
        alone, still reads (the config.yaml of older runs)."""
        if isinstance(data, dict) and "decision_metric" in data:
            data = dict(data)
            if data.get("target_metric", "auto") not in ("auto", data["decision_metric"]):
                raise ValueError("give target_metric alone: decision_metric is its former name")
            data["target_metric"] = data.pop("decision_metric")
        return data

    @field_validator(*AUTO_OR_AT_LEAST)
    @classmethod
    def _auto_or_count(cls, value: int | str, info: ValidationInfo) -> int | str:
        least = AUTO_OR_AT_LEAST[info.field_name]
        if isinstance(value, int) and value < least:
            raise ValueError(f"must be 'auto' or an int >= {least}")
        return value

    @field_validator("train_layers")
    @classmethod
    def _train_layers(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(
                "must be >= 1: the top transformer layers to fine-tune (at most the encoder's layers: "
                "6 for minilm, 12 for mpnet); leave it out to train all"
            )
        return value

    @field_validator("lexical")
    @classmethod
    def _weight(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0 <= value < 1:
            raise ValueError("must be 'auto' or a weight in [0, 1)")
        return value

    @field_validator("encoder", "objective", "head")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _parts_exist(self) -> Config:
        """A head, view or pair objective name, pair columns, or parameters they do not
        take, fail here, before any training."""
        parse_fields(self.pair_fields, self.pair_score_field)
        check_pair_objective("scored" if self.pair_score_field else "tuples", self.pair_objective_params)
        if self.train_layers is not None and self.encoder in ("static", "mlp"):
            raise ValueError(
                f"--train-layers applies to transformer encoders; the {self.encoder!r} encoder has no layers"
            )
        if self.windows not in ("auto", "first") and self.encoder in ("static", "mlp"):
            raise ValueError(f"--windows {self.windows} applies to transformer encoders, not to {self.encoder!r}")
        if self.windows not in ("auto", "first") and self.train_layers is not None:
            raise ValueError(
                f"--windows {self.windows} does not combine with --train-layers (its cache holds one window per "
                "text): use --windows first, or leave --train-layers out"
            )
        try:
            make_view(self.view, **self.view_params)
        except TypeError as error:
            raise ValueError(str(error)) from None
        if self.head == AUTO_HEAD:
            if self.head_params:
                raise ValueError(
                    f"head 'auto' picks its own parameters; head_params {self.head_params} need a named head"
                )
            return self
        check_head(self.head, self.head_params)
        return self

    def resolved_lr(self) -> float:
        """The learning rate to use: ``lr`` when set, else a default for the encoder kind."""
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.encoder == "static" else 5e-5

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Config:
        """Read a YAML mapping of config fields; ``overrides`` (not None) win over the file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(data, source=str(path))

    @classmethod
    def build(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Validate ``data``; errors name the field, what was expected and what came."""
        try:
            return cls(**data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                if not field:  # a rule across fields (the head and its parameters)
                    problems.append(error_message(err))
                elif err["type"] == "extra_forbidden":
                    valid = ", ".join(sorted(cls.model_fields))
                    problems.append(f"unknown field '{field}' (valid fields: {valid})")
                else:
                    problems.append(f"field '{field}': {refusal(err)}")
            raise ConfigError(f"{source}: " + "; ".join(problems)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


class ServeSettings(BaseModel):
    """The limits, batching and version checks of ``labelcon serve``; each field is the flag of its name
    (``max_items``: ``--max-items``)."""

    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(256, ge=1, description="texts in one request")
    max_chars: int = Field(10_000, ge=1, description="characters in one text")
    max_body_bytes: int = Field(4 * 2**20, ge=1, description="bytes in one request body")
    timeout: float = Field(30.0, gt=0, description="seconds a request may take from its arrival to its answer")
    max_batch: int = Field(128, ge=1, description="texts of concurrent requests gathered into one encoder batch")
    max_wait_ms: float = Field(2.0, ge=0, description="milliseconds a batch waits for more requests to join it")
    device: DeviceName = Field("auto", description=f"where the model embeds and scores: {DEVICE_HELP}")
    reload_seconds: float = Field(
        2.0,
        ge=0,
        description="seconds between checks of the run directory for a newly "
        "published model version, which then replaces the served one (0: never)",
    )
