"""Launched with 2 gloo ranks: each rank runs distributed sinkhorn on its half of a fixed batch."""

import sys

import numpy as np
import paddle
import paddle.distributed as dist

from swavbench.train.swav import default_all_reduce, sinkhorn

dist.init_parallel_env()
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(5)
scores = rng.uniform(-1, 1, size=(8 * world, 12)).astype("float32")
part = paddle.to_tensor(scores[rank * 8:(rank + 1) * 8])
q = sinkhorn(part, 0.05, 3, all_reduce=default_all_reduce())
np.save(f"{sys.argv[1]}/q{rank}.npy", q.numpy())
np.save(f"{sys.argv[1]}/scores.npy", scores)
