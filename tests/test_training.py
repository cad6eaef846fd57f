"""The training loop: GradCache equals the full-batch gradient; interrupted runs resume exactly."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from labelcon.objectives import build_objective
from labelcon.training.gradcache import cached_backward
from labelcon.training.trainer import linear_warmup_decay

LABELS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] * 3, dtype=torch.float32)


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.2,
                        attention_probs_dropout_prob=0.2)
    return BertModel(config)


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (12, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _embed(model: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def _loss(z: torch.Tensor) -> torch.Tensor:
    return build_objective("supcon-jaccard", temperature=0.1)(z, LABELS)


def _chunks(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = batch["input_ids"].shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Equal to 1e-5 relative; entries that vanish mathematically (attention key biases,
    ~1e-12) are judged against the largest gradient of the model."""
    assert got.keys() == want.keys()
    scale = max(g.abs().max().item() for g in want.values())
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6 * scale), name


@pytest.mark.parametrize("size", [1, 5, 12])
def test_gradcache_equals_full_batch_gradient(size: int) -> None:
    model = _tiny_bert().eval()  # no dropout: the plain full batch is the reference
    batch = _inputs()
    full = _loss(_embed(model, batch))
    full.backward()
    want = _grads(model)
    cached = cached_backward(lambda b: _embed(model, b), [_chunks(batch, size)], _loss)
    assert torch.allclose(cached, full.detach(), rtol=1e-6)
    _assert_close(_grads(model), want)


def test_gradcache_replays_dropout_masks() -> None:
    model = _tiny_bert().train()
    batch = _inputs()
    # reference: the same chunked forward, kept in one graph, so dropout draws the same masks
    torch.manual_seed(7)
    z = torch.cat([_embed(model, chunk) for chunk in _chunks(batch, 4)])
    reference = _loss(z)
    reference.backward()
    want = _grads(model)
    torch.manual_seed(7)
    cached = cached_backward(lambda b: _embed(model, b), [_chunks(batch, 4)], _loss)
    assert torch.allclose(cached, reference.detach(), rtol=1e-6)
    _assert_close(_grads(model), want)


def test_gradcache_with_two_streams() -> None:
    model = _tiny_bert().eval()
    batch = _inputs()
    info_nce = build_objective("simcse", temperature=0.05)
    other = {k: v.flip(1) if k == "input_ids" else v for k, v in batch.items()}
    full = info_nce(_embed(model, batch), positives=_embed(model, other))
    full.backward()
    want = _grads(model)
    loss = lambda a, p: info_nce(a, positives=p)  # noqa: E731
    cached_backward(lambda b: _embed(model, b), [_chunks(batch, 5), _chunks(other, 5)], loss)
    _assert_close(_grads(model), want)


def test_linear_warmup_decay_shape() -> None:
    factor = linear_warmup_decay(100, 0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == 0.0
