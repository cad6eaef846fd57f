"""Run configuration: one validated object shared by the CLI, the estimator and the trainer.

Values come, in increasing priority, from the defaults below, a YAML file
(``--config FILE.yaml``) and explicit arguments or command-line flags.

>>> cfg = Config(epochs=2, encoder="static")
>>> cfg.resolved_lr()
0.01
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: ``head="auto"``: a linear probe, a kNN vote or their average, picked on dev (:func:`labelcon.heads.select_on_dev`).
AUTO_HEAD = "auto"


class ConfigError(ValueError):
    """A configuration file or value that is not what labelcon expects."""


class Config(BaseModel):
    """Everything that defines a training run. Saved as ``config.yaml`` in the run directory."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    encoder: str = Field("minilm", description="minilm | static | a Hugging Face name or local path")
    objective: str = Field(
        "auto", description="auto (label_contrast for few-shot data, else supcon-jaccard) | an objective name"
    )
    head: str = Field("auto", description="auto (linear, knn or both, picked on dev) | linear | knn | prototype | label_text")
    temperature: float = Field(0.1, gt=0)
    projection_dim: int | None = Field(None, gt=0)
    encoder_params: dict[str, Any] = Field(default_factory=dict)
    objective_params: dict[str, Any] = Field(default_factory=dict)
    head_params: dict[str, Any] = Field(default_factory=dict)

    # optimisation
    epochs: int = Field(3, ge=0)
    batch_size: int = Field(64, ge=2)
    mini_batch_size: int | None = Field(None, ge=1, description="GradCache chunk size")
    max_length: int | Literal["auto"] = Field(
        "auto", description="tokens per text; auto: 64 or 128 from the training texts' lengths (see resolve_max_length)"
    )
    encode_max_length: int | Literal["auto"] = Field(
        "auto", description="tokens per text when embedding after training (head, prediction); "
        "auto: max_length, or 256 for longer texts (see resolve_encode_length)",
    )
    lr: float | None = Field(None, gt=0, description="default: 5e-5 for transformers, 1e-2 for static")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_time_minutes: float | None = Field(
        12.0, ge=0, description="stop training after this many minutes (0 or None: no limit)"
    )
    keep_base: float = Field(
        0.0, ge=0, lt=1, description="after training, move the encoder's weights this share of the way back to "
        "its starting weights (WiSE-FT): keeps general similarity for some task accuracy",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="transformer encoders: bfloat16 autocast where the hardware has it natively"
    )
    min_steps: int = Field(
        100, ge=0, description="small data (few-shot): each epoch repeats the data until the run takes this many steps"
    )
    patience: int = Field(2, ge=1, description="epochs without dev improvement before stopping")
    seed: int = 13
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")

    # data
    text_field: str = "text"
    labels_field: str = "labels"
    label_sep: str | None = None
    labels_file: str | None = None
    label_descriptions: str | None = Field(None, description="TSV label<TAB>text for label_text heads/objectives")
    dev_fraction: float = Field(0.1, gt=0, lt=1, description="carve-out of train when no dev file")
    ignore_unknown_labels: bool = False
    shots: int | None = Field(None, ge=1, description="train on N examples per label")

    # prediction
    at_least_one: bool | None = Field(None, description="predict >= 1 label per item; default: when every training item has one")
    min_positives: int = Field(3, ge=1, description="dev positives needed for a per-label threshold")
    lexical: float | Literal["auto"] = Field(
        "auto", description="texts: weight of a TF-IDF kNN vote mixed into the head's scores, 0-1 (0: off); "
        "auto: 0, 0.25 or 0.5, whichever gives the best dev macro-AP (see labelcon.lexical)",
    )
    eval_max_train: int = Field(20000, ge=100, description="train items encoded for the per-epoch dev check")

    # scale: a momentum key queue, many processes
    queue_size: int | None = Field(None, ge=1, description="keys (with labels) kept from past batches (MoCo)")
    momentum: float = Field(0.999, ge=0, le=1, description="momentum of the key encoder's update")
    nproc: int = Field(1, ge=1, description="processes to train with on this machine (labelcon train --nproc)")

    @field_validator("max_length", "encode_max_length")
    @classmethod
    def _max_length(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 4:
            raise ValueError("must be 'auto' or an int >= 4")
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
    def _head_builds(self) -> Config:
        """A head name or parameters the head would refuse fail here, before any training."""
        if self.head == AUTO_HEAD:
            if self.head_params:
                raise ValueError(f"head 'auto' picks its own parameters; head_params {self.head_params} need a named head")
            return self
        # labelcon.heads imports nothing from this module; it is loaded on first use
        from labelcon.heads import build_head

        try:
            build_head(self.head, **self.head_params)
        except TypeError as error:  # a parameter the head's constructor needs
            raise ValueError(f"head {self.head!r}: {error}") from None
        return self

    def resolved_lr(self) -> float:
        """The learning rate to use: ``lr`` when set, else a default for the encoder kind."""
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.encoder == "static" else 5e-5

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "Config":
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
    def build(cls, data: dict[str, Any], source: str = "config") -> "Config":
        """Validate ``data``; errors name the field, what was expected and what came."""
        try:
            return cls(**data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                if not field:  # a rule across fields (the head and its parameters)
                    problems.append(err["msg"].removeprefix("Value error, "))
                elif err["type"] == "extra_forbidden":
                    valid = ", ".join(sorted(cls.model_fields))
                    problems.append(f"unknown field '{field}' (valid fields: {valid})")
                else:
                    problems.append(f"field '{field}': {err['msg']}, got {err.get('input')!r}")
            raise ConfigError(f"{source}: " + "; ".join(problems)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)
