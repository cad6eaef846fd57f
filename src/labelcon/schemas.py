"""The JSON of ``labelcon serve``'s routes: pydantic models of requests and responses.

Requests are strict (``"top_k": "3"`` is an error, not 3); a text field takes a string
or a list of strings, each with a character other than spaces. ``/v1/embeddings`` follows
OpenAI's embeddings API, so OpenAI clients work unchanged.

>>> PredictRequest.model_validate({"inputs": "love it"}).inputs
['love it']
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from labelcon.config import ServeSettings
from labelcon.io import json_kind


def _texts(value: Any) -> Any:
    """A text as a one-item list; a list checked item by item (strings, not empty nor only spaces)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a string or a list of strings, got {json_kind(value)}")
    if not value:
        raise ValueError("expected at least one text, got an empty list")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ValueError(f"item {i}: expected a string, got {json_kind(text)}")
        if not text.strip():
            raise ValueError(f"item {i} is empty: every text needs a character other than spaces")
    return value


class PredictRequest(BaseModel):
    """``POST /predict``: the texts, and which scores to return beside the label sets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[str] = Field(description="a text or a list of texts")
    top_k: int = Field(5, ge=1, description="scores of the K best labels, best first (at most the number of labels)")
    raw_scores: bool = Field(False, description="scores of every label in label order instead of the top K")

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        return _texts(value)


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    """One text's labels (those clearing their calibrated thresholds) and scores."""

    labels: list[str]
    scores: list[LabelScore]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings`` as OpenAI defines it; other fields OpenAI clients send (``user``) are ignored."""

    model_config = ConfigDict(strict=True)

    input: list[str] = Field(description="a text or a list of texts")
    model: str | None = Field(None, description="accepted; the server embeds with its one model")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes")

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        return _texts(value)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class InfoResponse(BaseModel):
    model: str
    model_version: str = Field(description="the model version answering (model.N-ID), as in X-Labelcon-Model-Version")
    labels: list[str]
    embedding_dim: int
    encoder: dict[str, Any]
    objective: str | None
    test_metrics: dict[str, Any] | None = Field(description="the run's metrics.json 'test' entry; null without one")
    limits: ServeSettings


class SearchRequest(BaseModel):
    """``POST /search``: query texts, and/or ids of indexed items to search like (by example)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[str] = Field(default_factory=list, description="a query text or a list of them")
    like: list[str | int] = Field(default_factory=list, description="ids of indexed items to search like")
    k: int = Field(10, ge=1, le=1000, description="hits per query, best first")
    labels: list[str] | None = Field(None, description="keep hits holding any of these labels")
    passages: bool = Field(
        False,
        description="rank items by their best window, not their pooled vector, and give each hit that window as "
        "'passage' (an index built by a model that reads long texts as windows)",
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        return [] if value == [] else _texts(value)

    @model_validator(mode="after")
    def _something_to_search(self) -> SearchRequest:
        if not self.inputs and not self.like:
            raise ValueError("give query texts in 'inputs' or ids of indexed items in 'like'")
        return self


class SearchPassage(BaseModel):
    """The window of a hit that matched best: ``text[start:end]`` of the item, and its similarity."""

    start: int = Field(description="character offset into the item's text where the window starts")
    end: int = Field(description="character offset where it ends (exclusive)")
    text: str = Field(description="the window's text: the item's text[start:end]")
    score: float = Field(description="the window's cosine similarity to the query (the hit's score)")


class SearchHit(BaseModel):
    id: str | int
    text: str
    labels: list[str]
    score: float
    passage: SearchPassage | None = Field(None, description="with 'passages': true, the best window; else left out")

    @model_serializer(mode="wrap")
    def _without_passage(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``passage`` out of hits that have none, so answers without passages stay as before."""
        data = handler(self)
        if data.get("passage") is None:
            data.pop("passage", None)
        return data


class SearchResult(BaseModel):
    """The hits of one query (``query`` set) or of one search by example (``like`` set)."""

    query: str | None = None
    like: str | int | None = None
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    results: list[SearchResult]
