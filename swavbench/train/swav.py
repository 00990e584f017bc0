"""SwAV's core as pure functions: distributed Sinkhorn-Knopp, the swapped-prediction loss, the queue.

Collectives are explicit: `all_reduce` is a function summing a tensor across ranks in place (None when
the run has one rank). `default_all_reduce()` gives paddle's when a multi-rank job is initialised.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import paddle
import paddle.nn.functional as F

AllReduce = Optional[Callable[[paddle.Tensor], object]]


def default_all_reduce() -> AllReduce:
    """paddle.distributed.all_reduce (sum) in a multi-rank job, else None."""
    import paddle.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        return dist.all_reduce
    return None


def _world_size(all_reduce: AllReduce) -> int:
    if all_reduce is None:
        return 1
    import paddle.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


@paddle.no_grad()
def sinkhorn(
    scores: paddle.Tensor,
    epsilon: float = 0.05,
    iterations: int = 3,
    all_reduce: AllReduce = None,
    world_size: Optional[int] = None,
) -> paddle.Tensor:
    """Codes q [B_local, K] for scores [B_local, K]: each row sums to 1, each prototype gets ~B/K in total.

    Row (prototype) sums and the total are summed over all ranks; column (sample) sums are local, as in
    the reference implementation. Always fp32, never differentiated.
    """
    if world_size is None:
        world_size = _world_size(all_reduce)
    q = paddle.exp(scores.astype("float32") / epsilon).t()  # [K, B_local]
    num_prototypes = q.shape[0]
    batch = q.shape[1] * world_size

    total = q.sum()
    if all_reduce is not None:
        all_reduce(total)
    q = q / total
    for _ in range(iterations):
        rows = q.sum(axis=1, keepdim=True)
        if all_reduce is not None:
            all_reduce(rows)
        q = q / rows / num_prototypes
        q = q / q.sum(axis=0, keepdim=True) / batch
    return (q * batch).t()


def swav_loss(
    scores: paddle.Tensor,
    batch_size: int,
    num_crops: Union[int, Sequence[int]],
    crops_for_assign: Sequence[int] = (0, 1),
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
    queue_scores: Optional[Sequence[Optional[paddle.Tensor]]] = None,
    all_reduce: AllReduce = None,
    world_size: Optional[int] = None,
) -> paddle.Tensor:
    """The swapped-prediction loss.

    scores: [sum(num_crops) * batch_size, K], crops in order (crop c is rows c*B..(c+1)*B).
    For each crop c in crops_for_assign, q_c = sinkhorn(scores of c) (queue scores prepended when given,
    only this batch's rows kept) predicts every other crop v through softmax(scores_v / temperature):
    loss = mean_c [ mean_{v != c} ( -mean_b sum_k q_c * log_softmax(scores_v / T) ) ].
    """
    total_crops = num_crops if isinstance(num_crops, int) else int(sum(num_crops))
    if scores.shape[0] != total_crops * batch_size:
        raise ValueError(f"scores has {scores.shape[0]} rows, expected {total_crops} crops x {batch_size}")
    log_p = F.log_softmax(scores.astype("float32") / temperature, axis=1)
    log_p = log_p.reshape([total_crops, batch_size, -1])
    log_p_all = log_p.sum(axis=0)  # sum over crops, so "all crops but c" is one subtraction

    loss = paddle.zeros([], dtype="float32")
    for i, crop_id in enumerate(crops_for_assign):
        with paddle.no_grad():
            out = scores[batch_size * crop_id: batch_size * (crop_id + 1)].detach().astype("float32")
            extra = queue_scores[i] if queue_scores is not None else None
            if extra is not None:
                out = paddle.concat([extra.astype("float32"), out], axis=0)
            q = sinkhorn(out, epsilon, iterations, all_reduce, world_size)[-batch_size:]
        others = log_p_all - log_p[crop_id]
        subloss = -(q * others).sum(axis=1).mean() / (total_crops - 1)
        loss = loss + subloss
    return loss / len(crops_for_assign)


class Queue:
    """Per-rank FIFO of past embeddings of the crops_for_assign, used by Sinkhorn only (never the loss).

    Stored embeddings are re-scored against the CURRENT prototypes. The queue is used once full (its last
    row is non-zero), or once it has been used (reference behaviour).
    """

    def __init__(self, num_assign: int, length: int, dim: int) -> None:
        self.embeddings = paddle.zeros([num_assign, length, dim], dtype="float32")
        self.in_use = False

    def scores(self, prototypes_weight: paddle.Tensor) -> list[Optional[paddle.Tensor]]:
        """Scores of the stored embeddings per assigned crop, or Nones while the queue is filling."""
        if not self.in_use:
            last_rows = self.embeddings[:, -1, :]
            self.in_use = bool(paddle.any(last_rows != 0).item())
        if not self.in_use:
            return [None] * self.embeddings.shape[0]
        with paddle.no_grad():
            weight = prototypes_weight.astype("float32")
            return [paddle.matmul(self.embeddings[i], weight) for i in range(self.embeddings.shape[0])]

    @paddle.no_grad()
    def push(self, embeddings: paddle.Tensor, batch_size: int, crops_for_assign: Sequence[int]) -> None:
        """Insert this batch's embeddings of each assigned crop at the front, dropping the oldest."""
        newest = paddle.stack(
            [embeddings[batch_size * c: batch_size * (c + 1)].detach().astype("float32") for c in crops_for_assign]
        )
        self.embeddings = paddle.concat([newest, self.embeddings[:, :-batch_size]], axis=1)

    def state(self) -> dict:
        return {"embeddings": self.embeddings.numpy(), "in_use": self.in_use}

    @classmethod
    def from_state(cls, state: dict) -> Queue:
        """A queue restored from `state()` (as saved beside a checkpoint)."""
        queue = cls(1, 1, 1)
        queue.embeddings = paddle.to_tensor(state["embeddings"], dtype="float32")
        queue.in_use = bool(state["in_use"])
        return queue
