"""Model cards: the ``README.md`` of every run directory and export, as the Hugging Face Hub shows it.

A card opens with YAML front matter (``library_name: labelcon``, ``tags``,
``pipeline_tag``, ``datasets``, ``metrics`` and a ``model-index`` holding the test figures)
and then says what the model predicts, lists the labels with their frequencies in the
training file, gives the dev and test metrics, the config, the training time and machine,
and how to load the model from labelcon, sentence-transformers and ONNX Runtime. The
``datasets`` entry names a registered data set (:func:`labelcon.data.registered_names`)
when the run trained on one.

Everything comes from the model (:class:`labelcon.Labelcon`: its config, prediction
stage and metrics) and, for a training run, from its directory: ``run.json`` (the data
it trained on and the machine), ``history.json`` (the training time). The label
frequencies are counted in the training file named in ``run.json`` when it still holds
the data the run trained on.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from labelcon.data import registered_names
from labelcon.embedding_metrics import EMBEDDING_METRICS
from labelcon.io import atomic_open, read_json
from labelcon.metrics import HEADLINE_METRICS
from labelcon.training_run import RUN_FILE

CARD_FILE = "README.md"
#: Metrics shown in the card, in this order, with their names: the headline ones, then
#: those of pairs and retrieval (dev checks of ``--dev-pairs``, ``--dev-queries``, and
#: ``labelcon evaluate --pairs``, ``--queries``).
METRICS = {**HEADLINE_METRICS, **EMBEDDING_METRICS}
#: Labels listed by name in the card; more are counted.
LISTED_LABELS = 100


def write_card(
    directory: str | os.PathLike,
    model: Any,
    *,
    run_dir: str | os.PathLike | None = None,
    export: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Write ``directory/README.md`` for ``model``; ``run_dir``: the training run it comes
    from (its ``run.json`` and ``history.json``); ``export``: what an export records of its
    origin; ``name``: the model's name (default: the directory's)."""
    path = Path(directory) / CARD_FILE
    with atomic_open(path) as handle:
        handle.write(card_text(model, name=name or Path(directory).resolve().name, run_dir=run_dir, export=export))
    return path


def card_text(
    model: Any, *, name: str, run_dir: str | os.PathLike | None = None, export: dict[str, Any] | None = None
) -> str:
    """The card as markdown with YAML front matter (see the module docstring)."""
    run = _read(Path(run_dir) / RUN_FILE) if run_dir else None
    history = _read(Path(run_dir) / "history.json") if run_dir else None
    train = (run or {}).get("data", {}).get("train") or {}
    folder = Path(train["source"]).parent.name if train.get("source") else None
    dataset = folder if folder in registered_names() else None
    counts = _label_counts(model, train)
    sections = [
        f"# {name}",
        _summary(model, export),
        _labels(model, counts),
        _metrics(model.metrics_),
        _training(run, history, train),
        "## Config\n\n```yaml\n" + model.config.to_yaml().rstrip() + "\n```",
        _usage(model, name, export),
    ]
    return _front_matter(model, name, dataset, export) + "\n\n".join(s for s in sections if s) + "\n"


def _read(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _front_matter(model: Any, name: str, dataset: str | None, export: dict[str, Any] | None) -> str:
    tags = [
        "labelcon",
        "multi-label-classification",
        "text-classification",
        "contrastive-learning",
        "sentence-embeddings",
    ]
    if export and export["format"] == "sentence-transformers":
        tags += ["sentence-transformers", "sentence-similarity", "feature-extraction"]
    elif export:
        tags += ["onnx"]
    test = model.metrics_.get("test") or {}
    shown = [key for key in METRICS if key in test]
    meta: dict[str, Any] = {"library_name": "labelcon", "tags": tags, "pipeline_tag": "text-classification"}
    if dataset:
        meta["datasets"] = [dataset]
    if shown:
        meta["metrics"] = shown
        task = {"type": "text-classification", "name": "Multi-label text classification"}
        results = {
            "task": task,
            "dataset": {"name": dataset or "test", "type": dataset or "test", "split": "test"},
            "metrics": [{"type": key, "name": METRICS[key], "value": round(float(test[key]), 4)} for key in shown],
        }
        meta["model-index"] = [{"name": name, "results": [results]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def _summary(model: Any, export: dict[str, Any] | None) -> str:
    cfg, stage = model.config, model.stage_
    encoder = model.encoder_
    kind = getattr(encoder, "exported_from", None) or encoder.encoder_type
    what = {"transformer": f"the transformer `{cfg.encoder}`", "static": "a static token-embedding encoder"}.get(
        kind, kind
    )
    text = (
        f"A labelcon model: {what} trained with the "
        f"`{model.objective_ or cfg.objective}` objective so that texts sharing labels sit close together "
        f"({encoder.dim}-dimensional embeddings, cosine similarity)."
    )
    if stage is None:
        text += " It was trained without labels: it embeds texts and predicts no labels."
    else:
        text += (
            f" A `{stage.head.name}` head scores the {len(stage.labels)} labels below"
            + (
                f" (on each window of a text, the scores pooled by {stage.score_pooling})"
                if stage.score_pooling != "embedding"
                else ""
            )
            + "".join(
                f", {'then' if i else 'mixed'} with {_scorer_words(part.scorer)} of weight {part.weight:g}"
                for i, part in enumerate(stage.text_scorers)
            )
            + "; per-label thresholds calibrated on dev decide them"
            + (", at least one label per text." if stage.at_least_one else ".")
        )
    if export:
        quantized = ", weights quantized to int8" if export.get("quantize") else ""
        origin = f" from `{export['directory']}` ({export['model']})" if export.get("directory") else ""
        text += f"\n\nThis folder is its export to {export['format']}{quantized}{origin}."
    return text


def _scorer_words(scorer: Any) -> str:
    """A text scorer of the stage in words."""
    if not scorer.needs_embeddings:
        return "a TF-IDF vote"
    kind = "linear SVMs" if scorer.loss == "squared_hinge" else "logistic regression"
    features = "TF-IDF features and the embedding" if scorer.dense_scale else "TF-IDF features"
    shortlist = f", each text scored for a shortlist of {scorer.shortlist} labels" if scorer.shortlists else ""
    name = "dense+sparse" if scorer.dense_scale else "sparse"
    return f"a {name} ranker ({kind} on {features}, C={scorer.C:g}{shortlist})"


def _label_counts(model: Any, train: dict[str, Any]) -> Counter | None:
    """Label frequencies in the training file, when it still holds the data the run trained on."""
    source = train.get("source")
    if not source or not Path(source).is_file():
        return None
    try:
        data = model.read(source)
    except (OSError, ValueError):
        return None
    if data.fingerprint()["sha256"] != train.get("sha256"):
        return None
    return Counter(name for labels in data.labels for name in labels)


def _labels(model: Any, counts: Counter | None) -> str:
    if model.stage_ is None:
        return ""
    names = list(model.stage_.labels.names)
    if counts is None:
        shown = ", ".join(f"`{n}`" for n in names[:LISTED_LABELS])
        more = f" and {len(names) - LISTED_LABELS} more" if len(names) > LISTED_LABELS else ""
        return f"## Labels\n\n{len(names)} labels: {shown}{more}."
    names.sort(key=lambda n: (-counts[n], n))
    rows = "\n".join(f"| {n} | {counts[n]} |" for n in names[:LISTED_LABELS])
    more = f"\n\n... and {len(names) - LISTED_LABELS} more labels." if len(names) > LISTED_LABELS else ""
    table = f"| label | training items |\n|---|---:|\n{rows}{more}"
    return f"## Labels\n\n{len(names)} labels, by their number of training items:\n\n{table}"


def _metrics(metrics: dict[str, dict[str, Any]]) -> str:
    splits = [split for split in ("dev", "test") if metrics.get(split)]
    if not splits:
        return ""
    rows = [
        f"| {label} | " + " | ".join(_number(metrics[s].get(key)) for s in splits) + " |"
        for key, label in METRICS.items()
        if any(key in metrics[s] for s in splits)
    ]
    head = "| metric | " + " | ".join(splits) + " |\n|---|" + "---:|" * len(splits)
    note = "\n\nThe thresholds were calibrated on dev; test is the held-out figure." if "test" in splits else ""
    return "## Metrics\n\n" + head + "\n" + "\n".join(rows) + note


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def _training(run: dict[str, Any] | None, history: list[dict[str, Any]] | None, train: dict[str, Any]) -> str:
    lines = []
    for split, fingerprint in (run or {}).get("data", {}).items():
        if fingerprint:
            source = f" from `{fingerprint['source']}`" if fingerprint.get("source") else ""
            lines.append(f"- {split}: {fingerprint['items']} items{source}")
    seconds = next((r["seconds"] for r in reversed(history or []) if "seconds" in r), None)
    if seconds is not None:
        lines.append(f"- training time (encoder): {f'{seconds:.0f} s' if seconds < 120 else f'{seconds / 60:.1f} min'}")
    if run and run.get("machine"):
        lines.append(f"- machine: {run['machine']}")
    return "## Training\n\n" + "\n".join(lines) if lines else ""


def _usage(model: Any, name: str, export: dict[str, Any] | None) -> str:
    where = f"path/to/{name}"
    labelcon = (
        f'```python\nfrom labelcon import Labelcon\n\nmodel = Labelcon.load("{where}")\n'
        + ('print(model.predict(["a text to label"]))\n' if model.stage_ is not None else "")
        + 'embeddings = model.encode(["a text to embed"])\n```\n\n'
        + f'```bash\nlabelcon predict {where} "a text to label"\n```'
    )
    parts = ["## Use it", "With labelcon (labels, embeddings, `labelcon search` after `labelcon index`):", labelcon]
    if export and export["format"] == "sentence-transformers":
        parts += [
            "With sentence-transformers (the same normalised embeddings):",
            f"```python\nfrom sentence_transformers import SentenceTransformer\n\n"
            f'model = SentenceTransformer("{where}")\nembeddings = model.encode(["a text to embed"])\n```',
        ]
        encoder = model.encoder_
        if getattr(encoder, "windows", "first") != "first":
            parts.append(
                f"Long texts: sentence-transformers reads the first {encoder.max_length} tokens of a text. "
                f"labelcon (`Labelcon.load` of this folder) reads a longer text as windows of {encoder.max_length} "
                f"tokens (at most {encoder.max_windows}, {encoder.window_stride} tokens shared by neighbours) and "
                f"pools their embeddings by {encoder.windows}, as this model was calibrated: for the same vectors "
                "and predictions on long texts, use labelcon or the ONNX export, which pools windows too."
            )
    elif export:
        encoder = model.encoder_
        parts += [
            "With ONNX Runtime alone (the graph gives embeddings; normalise them for cosine similarity):",
            "```python\nimport numpy as np\nimport onnxruntime as ort\nfrom transformers import AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{where}/onnx")\n'
            f'session = ort.InferenceSession("{where}/onnx/model.onnx")\n'
            f'batch = tokenizer(["a text to embed"], padding=True, truncation=True, max_length={encoder.max_length}, '
            f'add_special_tokens={encoder.add_special_tokens}, return_tensors="np")\n'
            f'embeddings = session.run(["embeddings"], {{name: batch[name] for name in {encoder.inputs}}})[0]\n'
            "embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)\n```",
        ]
    else:
        parts += [
            "For sentence-transformers or ONNX Runtime, export it; each export carries its own card:",
            f"```bash\nlabelcon export {where} --format sentence-transformers --out {name}-st\n"
            f"labelcon export {where} --format onnx --out {name}-onnx"
            "            # --quantize int8 for a smaller, faster graph\n```",
        ]
    return "\n\n".join(parts)
