import numpy as np
import pytest

from labelcon.heads import NearestNeighbors
from labelcon.heads import index as index_module


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20_000, 64)).astype(np.float32), rng.standard_normal((300, 64)).astype(np.float32)


def test_exact_search_matches_brute_force():
    rng = np.random.default_rng(1)
    x, q = rng.standard_normal((500, 8)).astype(np.float32), rng.standard_normal((40, 8)).astype(np.float32)
    nn = NearestNeighbors(x, exact=True, block_elements=1000)  # forces many query blocks
    sims, idx = nn.search(q, 7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ xn.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :7])
    np.testing.assert_allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :7], atol=1e-6)
    assert nn.search(q, 10_000)[1].shape == (40, 500)  # k clipped to n


def test_exact_and_faiss_agree(random_data):
    pytest.importorskip("faiss")
    x, q = random_data
    exact = NearestNeighbors(x, exact=True)
    approx = NearestNeighbors(x, exact=False)
    assert exact.exact and not approx.exact
    (_, i1), (s2, i2) = exact.search(q, 10), approx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i1, i2)])
    assert recall >= 0.95
    assert np.all(np.diff(s2, axis=1) <= 1e-6)
    restored = NearestNeighbors(x, exact=False, index_bytes=approx.serialize())
    np.testing.assert_array_equal(restored.search(q, 10)[1], i2)


def test_automatic_backend_choice(monkeypatch):
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    assert NearestNeighbors(x).exact  # small: exact
    monkeypatch.setattr(index_module, "APPROXIMATE_ABOVE", 10)
    assert NearestNeighbors(x).exact is (not index_module.faiss_available())
    monkeypatch.setattr(index_module, "faiss_available", lambda: False)
    assert NearestNeighbors(x).exact
    with pytest.warns(UserWarning, match="faiss is not installed"):
        assert NearestNeighbors(x, exact=False).exact


@pytest.mark.parametrize("exact", [True, False])
def test_exclude_self(exact):
    if not exact:
        pytest.importorskip("faiss")
    x = np.random.default_rng(2).standard_normal((300, 16)).astype(np.float32)
    nn = NearestNeighbors(x, exact=exact)
    _, with_self = nn.search(x, 6)
    sims, idx = nn.search(x, 5, exclude_self=True)
    assert idx.shape == (300, 5)
    assert not np.any(idx == np.arange(300)[:, None])
    assert np.mean(with_self[:, 0] == np.arange(300)) > 0.95  # each item is its own nearest neighbour
    np.testing.assert_array_equal(idx, with_self[:, 1:])
    dup = NearestNeighbors(np.vstack([x[:1], x[:1], x[1:3]]), exact=True)  # duplicates: drop own index only
    assert dup.search(dup.embeddings, 1, exclude_self=True)[1][:2, 0].tolist() == [1, 0]


def test_search_errors():
    nn = NearestNeighbors(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"queries must have dim 3 \(as in fit\); got shape \(1, 2\)"):
        nn.search(np.ones((1, 2), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="exclude_self=True needs the indexed items themselves"):
        nn.search(np.ones((2, 3), dtype=np.float32), 1, exclude_self=True)
    with pytest.raises(ValueError, match="k must be >= 1"):
        nn.search(np.ones((1, 3), dtype=np.float32), 0)
