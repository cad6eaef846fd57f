"""Two CPU processes on gloo: local anchors against all processes' keys give the loss and
the gradients of one process holding the concatenated batch."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from labelcon.objectives import gather_others, gather_with_grad, info_nce, supcon

WORLD = 2


def _global_batch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64)
    y = (torch.rand(8, 5, generator=g) < 0.5).float()
    y[:, 0] = 1  # every item has a positive, so both processes average over 4 anchors
    return z, y


def _check_split_equals_whole(rank, split_fn, whole_fn, z_all, other_all):
    """Each process: loss of its 4 anchors against all keys, divided by the world size
    (DDP averages gradients); summed over processes it is the whole-batch loss."""
    rows = slice(4 * rank, 4 * rank + 4)
    z = z_all[rows].clone().requires_grad_()
    loss = split_fn(z, other_all[rows]) / WORLD
    (grad,) = torch.autograd.grad(loss, z)
    total = loss.detach().clone()
    dist.all_reduce(total)

    whole = z_all.clone().requires_grad_()
    expected = whole_fn(whole, other_all)
    (expected_grad,) = torch.autograd.grad(expected, whole)
    torch.testing.assert_close(total, expected.detach(), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grad, expected_grad[rows], atol=1e-10, rtol=1e-10)


def _supcon_split(z, y):
    return supcon(z, y, 0.1, "jaccard", keys=gather_others(z), key_labels=gather_others(y))


def _supcon_whole(z, y):
    return supcon(z, y, 0.1, "jaccard")


def _debiased_sparse_split(z, y):
    y = y.to_sparse()
    return supcon(z, y, 0.2, "any", keys=gather_others(z), key_labels=gather_others(y), tau_plus=0.1, beta=0.5)


def _debiased_sparse_whole(z, y):
    return supcon(z, y.to_sparse(), 0.2, "any", tau_plus=0.1, beta=0.5)


def _info_nce_split(a, p):
    return info_nce(a, p, 0.05, negatives=gather_others(p))


def _info_nce_whole(a, p):
    return info_nce(a, p, 0.05)


def _worker(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        z_all, y_all = _global_batch()
        _check_split_equals_whole(rank, _supcon_split, _supcon_whole, z_all, y_all)
        _check_split_equals_whole(rank, _debiased_sparse_split, _debiased_sparse_whole, z_all, y_all)
        _check_split_equals_whole(rank, _info_nce_split, _info_nce_whole, z_all, z_all.flip(0).contiguous())

        # uneven batches: values in rank order, gradients summed from every process
        mine = torch.full((3 + 2 * rank, 2), float(rank), requires_grad=True)
        gathered = gather_with_grad(mine)
        assert gathered[:, 0].tolist() == [0.0] * 3 + [1.0] * 5
        weights = torch.arange(16.0).reshape(8, 2)
        (grad,) = torch.autograd.grad((gathered * weights).sum(), mine)
        torch.testing.assert_close(grad, WORLD * weights[:3] if rank == 0 else WORLD * weights[3:])
        labels = torch.eye(3 + 2 * rank, 4).to_sparse_csr()
        assert torch.equal(gather_with_grad(labels).to_dense(), torch.cat([torch.eye(3, 4), torch.eye(5, 4)]))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_keys_give_the_whole_batch_loss_and_gradients():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)


def test_identity_without_process_group():
    z = torch.randn(3, 2)
    assert gather_with_grad(z) is z
    assert gather_others(z).shape == (0, 2)
