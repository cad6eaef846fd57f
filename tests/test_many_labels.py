"""10^5-10^6 labels end to end without a dense [items, labels] matrix.

Numpy and scipy report their allocations to ``tracemalloc``, so a traced peak far below
``n * C * 4`` bytes shows that no dense N x C (or B x C) array was made; torch
allocations are read from the profiler's memory events.
"""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.profiler import ProfilerActivity, profile

from labelcon import Labelcon, metrics
from labelcon.config import Config
from labelcon.data.labels import LabelSpace
from labelcon.encoders import build_encoder
from labelcon.heads import KNNHead, LabelTextHead, PrototypeHead
from labelcon.metrics import BLOCK_ELEMENTS, ndcg_at_k, precision_at_k, psp_at_k, sparse_top_k, top_k
from labelcon.objectives import build_objective, mulsupcon, supcon
from labelcon.sampling import LabelAwareBatchSampler
from labelcon.training import Trainer
from labelcon.training.labels import batch_labels
from labelcon.training.settings import TrainingSettings
from tests.helpers import FAST

MB = 1 << 20


def zipf_labels(n, c, per_item=5, seed=0):
    """{0,1} CSR [n, c]: 1 + Poisson(per_item - 1) labels per item, Zipf(1) label frequencies."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1)
    counts = 1 + rng.poisson(per_item - 1, size=n)
    ids = rng.choice(c, size=int(counts.sum()), p=p / p.sum())
    y = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), (np.repeat(np.arange(n), counts), ids)), shape=(n, c))
    y.sum_duplicates()
    y.data[:] = 1.0
    return y


def traced_peak(fn):
    """(result, peak bytes traced while running ``fn``)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def largest_torch_allocation(fn):
    """Bytes of the largest single CPU allocation torch made while running ``fn``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def test_label_space_encode_is_sparse_at_1e5_labels():
    c, y = 100_000, zipf_labels(20_000, 100_000)
    names = [f"label{i:06d}" for i in range(c)]
    sets = [tuple(names[j] for j in y.indices[a:b]) for a, b in zip(y.indptr[:-1], y.indptr[1:], strict=True)]
    space = LabelSpace(names)
    encoded, peak = traced_peak(lambda: space.encode(sets))
    assert sp.isspmatrix_csr(encoded) and encoded.shape == y.shape and (encoded != y).nnz == 0
    assert peak < 40 * MB  # a dense 20,000 x 10^5 float32 matrix is 8 GB


def test_sampler_at_1e5_labels_stays_sparse():
    y = zipf_labels(20_000, 100_000)
    batches, peak = traced_peak(lambda: list(LabelAwareBatchSampler(y, 64, seed=0)))
    assert len(batches) == len(LabelAwareBatchSampler(y, 64, seed=0))
    assert peak < 40 * MB


@pytest.mark.parametrize("objective", ["any", "all", "jaccard", "mulsupcon"])
def test_objectives_take_sparse_batch_labels_without_densifying(objective):
    y = zipf_labels(2_000, 100_000, seed=1)
    rows = np.arange(0, 2_000, 8)[:128]
    labels = batch_labels(y, rows)
    assert labels.layout == torch.sparse_csr
    used = np.unique(y[rows].indices)  # the same sets on the columns they use: dense, narrow
    compact = torch.from_numpy(y[rows][:, used].toarray())
    z = torch.randn(len(rows), 16, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def loss(target):
        return mulsupcon(z, target) if objective == "mulsupcon" else supcon(z, target, relation=objective)

    assert loss(labels).item() == pytest.approx(loss(compact).item(), rel=1e-5)
    biggest = largest_torch_allocation(lambda: loss(labels).backward())
    assert biggest < len(rows) * 100_000 * 4 / 20  # a dense B x C float32 would be 51 MB


def test_sparse_top_k_matches_dense_top_k_across_blocks(monkeypatch):
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 64)  # many small blocks
    rng = np.random.default_rng(3)
    dense = (rng.random((300, 40)) < rng.random((300, 1)) * 0.3) * rng.random((300, 40))
    dense[:5] = 0  # rows without any stored score
    dense = dense.astype(np.float32)
    for k in (1, 3, 7, 40, 50):
        idx, val = sparse_top_k(sp.csr_matrix(dense), k)
        np.testing.assert_array_equal(val, top_k(dense, k)[1])
        np.testing.assert_array_equal(np.take_along_axis(dense, idx, axis=1), val)
        assert all(len(set(row)) == len(row) for row in idx.tolist())
    with pytest.raises(ValueError, match=">= 0"):
        sparse_top_k(sp.csr_matrix(-dense), 2)


def test_knn_top_k_at_1e6_labels_never_builds_dense_scores():
    rng = np.random.default_rng(4)
    y = zipf_labels(3_000, 1_000_000, seed=4)
    x = rng.standard_normal((3_000, 16)).astype(np.float32)
    head = KNNHead(k=10, exact=True).fit(x, y)
    queries = rng.standard_normal((2_000, 16)).astype(np.float32)
    (idx, val), peak = traced_peak(lambda: head.predict_top_k(queries, 5))
    assert idx.shape == (2_000, 5) and np.all(np.diff(val, axis=1) <= 0)
    assert peak < 64 * MB  # dense scores would be 8 GB
    assert head.predict_scores(queries[:0]).shape == (0, 1_000_000)
    assert sparse_top_k(sp.csr_matrix((3, 0)), 2)[0].shape == (3, 0)
    # the same ranking as the dense scores, on a slice of labels small enough to densify
    small = KNNHead(k=10, exact=True).fit(x, y[:, :2_000])
    sparse_idx, sparse_val = small.predict_top_k(queries[:300], 5)
    scores = small.predict_scores(queries[:300])
    np.testing.assert_array_equal(sparse_val, top_k(scores, 5)[1])
    np.testing.assert_array_equal(np.take_along_axis(scores, sparse_idx, axis=1), sparse_val)


@pytest.mark.parametrize("head_type", [PrototypeHead, LabelTextHead])
def test_sigmoid_heads_top_k_memory_does_not_grow_with_queries(head_type):
    c, rng = 100_000, np.random.default_rng(5)
    y = zipf_labels(5_000, c, seed=5)
    x = rng.standard_normal((5_000, 8)).astype(np.float32)
    extra = {"label_embeddings": rng.standard_normal((c, 8)).astype(np.float32)} if head_type is LabelTextHead else {}
    head = head_type().fit(x, y, **extra)
    queries = rng.standard_normal((2_000, 8)).astype(np.float32)
    (_, few), peak_few = traced_peak(lambda: head.predict_top_k(queries[:200], 5))
    (idx, many), peak_many = traced_peak(lambda: head.predict_top_k(queries, 5))
    assert peak_many < 1.2 * peak_few + 4 * MB  # bounded by one block, not by n * C (800 MB here)
    np.testing.assert_array_equal(many[:200], few)
    scores = head.predict_scores(queries[:50])  # float32 sigmoids can tie where the logits differ
    np.testing.assert_allclose(np.take_along_axis(scores, idx[:50], axis=1), many[:50], rtol=1e-5)
    np.testing.assert_allclose(many[:50], top_k(scores, 5)[1], rtol=1e-5)


def test_top_k_metrics_at_1e6_labels_use_only_the_pairs():
    y = zipf_labels(5_000, 1_000_000, seed=6)
    rng = np.random.default_rng(6)
    idx = np.argsort(rng.random((5_000, 1_000)), axis=1)[:, :5]  # 5 distinct frequent labels: some hits
    pair = (idx, -np.arange(5, dtype=np.float32)[None, :].repeat(5_000, axis=0))
    propensities = metrics.label_propensities(y)
    (p5, n5, psp5), peak = traced_peak(
        lambda: (precision_at_k(y, pair, 5), ndcg_at_k(y, pair, 5), psp_at_k(y, pair, 5, propensities))
    )
    truth = [set(y.indices[a:b].tolist()) for a, b in zip(y.indptr[:-1], y.indptr[1:], strict=True)]
    assert p5 == pytest.approx(np.mean([len(set(r.tolist()) & t) / 5 for r, t in zip(idx, truth, strict=True)]))
    assert 0 < n5 <= 1 and 0 < psp5 <= 1
    assert peak < 80 * MB  # propensities alone are 8 MB; dense labels would be 20 GB


def test_label_contrast_step_at_5e4_labels_embeds_only_the_sampled_label_texts(monkeypatch):
    c, negatives = 50_000, 256
    y = zipf_labels(512, c, seed=7)
    texts = [" ".join(f"w{j % 97}" for j in y.indices[a:b]) for a, b in zip(y.indptr[:-1], y.indptr[1:], strict=True)]
    label_texts = [f"w{i % 97} tag" for i in range(c)]
    encoder = build_encoder("static", train_texts=texts, max_length=8, seed=0)
    objective = build_objective("label_contrast", temperature=0.1, label_negatives=negatives)
    tokenized, targets = [], []
    tokenize, forward = encoder.tokenize, objective.forward
    monkeypatch.setattr(encoder, "tokenize", lambda batch: tokenized.append(len(batch)) or tokenize(batch))
    monkeypatch.setattr(
        objective, "forward", lambda z, labels, **kw: targets.append(labels) or forward(z, labels, **kw)
    )
    config = Config(encoder="static", objective="label_contrast", epochs=1, batch_size=64, max_time_minutes=1e-9)
    trainer = Trainer(
        encoder, objective, TrainingSettings.from_config(config), label_texts=label_texts, show_progress=False
    )
    biggest = largest_torch_allocation(lambda: trainer.fit(texts, y))

    assert trainer.state.global_step == 1 and np.isfinite(trainer.state.history[-1]["loss"])
    assert biggest < 64 * c * 4 / 8  # a dense B x C float32 would be 12.8 MB
    (labels,) = targets
    assert labels.layout == torch.sparse_coo and labels.shape[0] == 64
    held = labels.coalesce().indices()[1].unique().numel()
    assert labels.shape[1] == held + negatives  # S: the batch's labels and the sampled others
    assert tokenized == [64, held + negatives]  # the batch, then the texts of S only, not all 50,000


def test_estimator_predicts_and_evaluates_5e4_labels_in_blocks(tmp_path, monkeypatch):
    c, n = 50_000, 2_000
    y = zipf_labels(n + 200, c, seed=7)
    names = [f"tag{i:05d}" for i in range(c)]
    sets = [[names[j] for j in y.indices[a:b]] for a, b in zip(y.indptr[:-1], y.indptr[1:], strict=True)]
    texts = [" ".join(labels) for labels in sets]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    model = Labelcon(**{**FAST, "epochs": 0, "head": "knn", "labels_file": str(tmp_path / "labels.txt")})
    model.fit((texts[:n], sets[:n]), (texts[n:], sets[n:]), show_progress=False)
    assert len(model.classes_) == c

    score_rows = model.stage_.head.predict_scores

    def one_block_at_most(x, **kwargs):
        assert len(x) * c <= BLOCK_ELEMENTS, f"{len(x)} items x {c} labels scored at once"
        return score_rows(x, **kwargs)

    monkeypatch.setattr(model.stage_.head, "predict_scores", one_block_at_most)
    label_sets, predict_peak = traced_peak(lambda: model.predict(texts[:n]))
    top, top_peak = traced_peak(lambda: model.top_k(texts[:n], 5))
    report, evaluate_peak = traced_peak(lambda: model.evaluate((texts[:n], sets[:n])))
    assert max(predict_peak, top_peak, evaluate_peak) < 128 * MB  # dense scores would be 400 MB
    assert model.predict_with_top_k(texts[:n], 5) == (label_sets, top)
    assert len(label_sets) == len(top) == n and all(len(ranked) == 5 for ranked in top)
    assert report["n_labels"] == c and report["skipped"] == ["macro_ap"] and "macro_ap" not in report
    assert report["precision_at_1"] > 0.9  # each training item is its own nearest neighbour


def test_threshold_calibration_at_5e4_labels_holds_one_block_of_dev_scores():
    from labelcon.heads import Thresholds

    n, c, rows = 1_000, 50_000, 40  # dense dev scores would be 200 MB; a block is 8 MB
    rare = sp.random(n, c - 10, density=5e-5, format="csr", random_state=1, dtype=np.float32)
    frequent = sp.csr_matrix(np.random.default_rng(0).random((n, 10)) < 0.1, dtype=np.float32)
    y = sp.hstack([frequent, rare], format="csr")  # 10 labels with their own thresholds
    y.data[:] = 1

    def blocks():  # random scores, except that the 10 frequent labels' positives score higher
        for start in range(0, n, rows):
            block = np.random.default_rng(start).random((min(rows, n - start), c), dtype=np.float32)
            block[:, :10] = 0.5 * block[:, :10] + 0.5 * frequent[start : start + rows].toarray()
            yield block

    thresholds, peak = traced_peak(lambda: Thresholds.calibrate_blocks(blocks, y, min_positives=3))
    assert thresholds.per_label[:10].all() and thresholds.per_label.sum() < 100
    assert peak < 60 * 2**20, f"traced peak {peak / 2**20:.0f} MB"
