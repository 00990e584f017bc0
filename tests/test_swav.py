"""Sinkhorn, the swapped-prediction loss and the queue, checked against hand-computed values."""

import math
import threading

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from swavbench.train import sinkhorn, swav_loss
from swavbench.train.swav import Queue


def _scores(batch: int, dim: int, k: int, seed: int = 0) -> paddle.Tensor:
    rng = np.random.default_rng(seed)
    z = F.normalize(paddle.to_tensor(rng.standard_normal((batch, dim)).astype("float32")), axis=1)
    w = F.normalize(paddle.to_tensor(rng.standard_normal((dim, k)).astype("float32")), axis=0)
    return z @ w


def test_sinkhorn_codes_sum_to_one_per_sample_and_about_b_over_k_per_prototype():
    batch, k = 64, 16
    q = sinkhorn(_scores(batch, 8, k), epsilon=0.05, iterations=3).numpy()
    assert q.shape == (batch, k)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    # 3 iterations bring the prototype marginal towards B/K (exactly there only in the limit)
    spread = np.abs(q.sum(axis=0) - batch / k).max()
    one_pass = sinkhorn(_scores(batch, 8, k), epsilon=0.05, iterations=1).numpy()
    assert spread < np.abs(one_pass.sum(axis=0) - batch / k).max()
    np.testing.assert_allclose(q.sum(axis=0), batch / k, rtol=0.5)
    q_many = sinkhorn(_scores(batch, 8, k), epsilon=0.05, iterations=50).numpy()
    np.testing.assert_allclose(q_many.sum(axis=0), batch / k, rtol=1e-3)
    assert (q >= 0).all()


def test_sinkhorn_matches_hand_computed_two_by_two():
    scores = paddle.to_tensor([[0.1, 0.0], [0.0, 0.2]], dtype="float32")
    eps = 0.5
    q = np.exp(np.array([[0.1, 0.0], [0.0, 0.2]]) / eps).T
    q /= q.sum()
    for _ in range(3):
        q /= q.sum(axis=1, keepdims=True)
        q /= 2
        q /= q.sum(axis=0, keepdims=True)
        q /= 2
    expected = (q * 2).T
    np.testing.assert_allclose(sinkhorn(scores, eps, 3).numpy(), expected, rtol=1e-5)


class _ThreadGroup:
    """A fake all-reduce (sum) between threads, standing in for two ranks."""

    def __init__(self, size: int) -> None:
        self.size, self.slots, self.barrier = size, {}, threading.Barrier(size)
        self.local = threading.local()

    def all_reduce(self, tensor: paddle.Tensor) -> None:
        rank = self.local.rank
        self.slots[rank] = tensor.numpy().copy()
        self.barrier.wait()
        total = sum(self.slots[r] for r in range(self.size))
        self.barrier.wait()
        tensor.set_value(paddle.to_tensor(total))


def test_two_ranks_of_sinkhorn_equal_one_rank_on_the_concatenated_batch():
    scores = _scores(32, 8, 10, seed=3)
    single = sinkhorn(scores, 0.05, 3).numpy()
    group, results = _ThreadGroup(2), {}

    def worker(rank: int) -> None:
        group.local.rank = rank
        part = scores[rank * 16:(rank + 1) * 16]
        results[rank] = sinkhorn(part, 0.05, 3, all_reduce=group.all_reduce, world_size=2).numpy()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    np.testing.assert_allclose(np.concatenate([results[0], results[1]]), single, rtol=1e-5, atol=1e-7)
    # and the distributed codes are not simply each half normalised alone
    alone = sinkhorn(scores[:16], 0.05, 3).numpy()
    assert not np.allclose(alone, results[0], rtol=1e-3)


def test_uniform_scores_give_loss_ln_k():
    k, batch = 3000, 4
    loss = swav_loss(paddle.zeros([8 * batch, k]), batch, [2, 6], [0, 1], 0.1, 0.05, 3)
    assert float(loss) == pytest.approx(math.log(k), rel=1e-5)


def test_swav_loss_matches_the_reference_loop():
    batch, crops, k = 6, [2, 3], 20
    scores = _scores(batch * 5, 8, k, seed=7)
    got = float(swav_loss(scores, batch, crops, [0, 1], 0.1, 0.05, 3))
    expected = 0.0
    for crop_id in (0, 1):
        q = sinkhorn(scores[batch * crop_id: batch * (crop_id + 1)], 0.05, 3).numpy()
        sub = 0.0
        for v in [v for v in range(5) if v != crop_id]:
            x = scores[batch * v: batch * (v + 1)].numpy() / 0.1
            log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
            sub -= np.mean(np.sum(q * log_p, axis=1))
        expected += sub / 4
    assert got == pytest.approx(expected / 2, rel=1e-5)


def test_swav_loss_uses_queue_for_codes_only():
    batch, k = 4, 10
    scores = _scores(batch * 2, 8, k, seed=1)
    queue_scores = [_scores(12, 8, k, seed=2), _scores(12, 8, k, seed=4)]
    with_queue = float(swav_loss(scores, batch, 2, [0, 1], queue_scores=queue_scores))
    without = float(swav_loss(scores, batch, 2, [0, 1]))
    assert with_queue != pytest.approx(without)
    # by hand: codes from [queue; batch] rows, batch rows kept
    q0 = sinkhorn(paddle.concat([queue_scores[0], scores[:batch]]), 0.05, 3)[-batch:]
    q1 = sinkhorn(paddle.concat([queue_scores[1], scores[batch:]]), 0.05, 3)[-batch:]
    lp = F.log_softmax(scores / 0.1, axis=1).numpy()
    expected = -(np.mean(np.sum(q0.numpy() * lp[batch:], 1)) + np.mean(np.sum(q1.numpy() * lp[:batch], 1))) / 2
    assert with_queue == pytest.approx(expected, rel=1e-5)


def test_swav_loss_is_differentiable_and_codes_are_not():
    scores = _scores(8, 8, 10)
    scores.stop_gradient = False
    loss = swav_loss(scores, 4, 2, [0, 1])
    loss.backward()
    assert scores.grad is not None and np.isfinite(scores.grad.numpy()).all()


def test_queue_fills_fifo_and_is_used_once_full():
    queue = Queue(num_assign=2, length=4, dim=3)
    weight = paddle.eye(3)
    assert queue.scores(weight) == [None, None]
    emb = paddle.arange(2 * 2 * 3, dtype="float32").reshape([4, 3]) + 1  # 2 crops x batch 2
    queue.push(emb, batch_size=2, crops_for_assign=[0, 1])
    assert queue.scores(weight) == [None, None]  # half full
    np.testing.assert_array_equal(queue.embeddings[0, :2].numpy(), emb[:2].numpy())
    queue.push(emb * 10, batch_size=2, crops_for_assign=[0, 1])
    # newest first, oldest at the end
    np.testing.assert_array_equal(queue.embeddings[1, :2].numpy(), (emb[2:] * 10).numpy())
    np.testing.assert_array_equal(queue.embeddings[1, 2:].numpy(), emb[2:].numpy())
    scores = queue.scores(weight)
    assert scores[0].shape == [4, 3]
