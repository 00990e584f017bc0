"""Launched with N gloo ranks: rank 0 waits `delay` s before forming the group (so the others reach the store
first), every rank then forms it with `form_process_group` (or plain init_parallel_env with `plain`), checks it
with one all-reduce, and writes `<out>/rank<r>.json` with the wall times it began and finished."""

import json
import os
import sys
import time

import paddle
import paddle.distributed as dist

from swavbench.train.rendezvous import form_process_group

out, delay, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rank = int(os.environ["PADDLE_TRAINER_ID"])
paddle.set_device("cpu")
if rank == 0:
    time.sleep(delay)
began = time.time()
how = form_process_group(rank) if mode == "fast" else (dist.init_parallel_env() and "plain")
done = time.time()
total = paddle.to_tensor([float(rank)])
dist.all_reduce(total)
with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
    json.dump({"rank": rank, "began": began, "done": done, "how": how, "sum": float(total.numpy()[0])}, handle)
