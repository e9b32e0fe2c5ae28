"""The peers hetsync is measured against, written here so that they run on the same emulated
cluster: PyTorch DistributedDataParallel (the gloo all-reduce most users would pick instead)
and a plain Ray parameter server in the style of Ray's documentation example, synchronous and
asynchronous. Same model, data, batch, learning-rate semantics (linear scaling for averaged
batches), momentum and step pacing as hetsync; weights are snapshotted at the same iteration
marks and validated after training, so validation never slows a run."""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import ray
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from hetsync.config import TrainConfig
from hetsync.data import ArrayData, load_dataset
from hetsync.errors import ClusterError
from hetsync.heterogeneity import StepPacer, emulated_cluster
from hetsync.models import build_model, resolve_model
from hetsync.updates import LrSchedule
from hetsync.validation import Evaluator
from hetsync.wire import FlatModel, params_to_vector

PEERS = ("ddp", "rayps-sync", "rayps-async")


class ShardSampler:
    """Batches from a worker's fixed shard (every n-th sample), reshuffled each epoch."""

    def __init__(self, n_samples: int, rank: int, workers: int, batch: int, seed: int):
        self.shard = np.arange(rank, n_samples, workers)
        self.rng = np.random.default_rng(seed * 1000 + rank)
        self.batch = batch
        self.order, self.pos = self.shard, len(self.shard)

    def next(self) -> np.ndarray:
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = self.rng.permutation(self.shard), 0
        self.pos += self.batch
        return self.order[self.pos - self.batch:self.pos]


def _crossed(done: int, before: int, every: int) -> bool:
    return done // every > before // every


def _summarise(cfg: TrainConfig, cluster, snaps, wall: float, samples: int, val: ArrayData):
    """Validation of each snapshot (iterations, seconds, weights) after the run."""
    evaluator = Evaluator(resolve_model(cfg.model), val)
    accs = [(t, evaluator.evaluate(w)[1]) for _, t, w in snaps]
    hit = [t for t, a in accs if a >= cfg.target_accuracy]
    return {
        "iterations": snaps[-1][0] if snaps else 0,
        "wall_time_s": wall,
        "final_val_accuracy": accs[-1][1] if accs else None,
        "best_val_accuracy": max(a for _, a in accs) if accs else None,
        "time_to_target_s": hit[0] if hit else None,
        "throughput_samples_per_s": samples / wall,
        "ideal_throughput_samples_per_s": cluster.mean_ideal_samples_per_s(wall),
    }


def _setup(cfg: TrainConfig):
    train_data, val_data = load_dataset(cfg)
    model = build_model(resolve_model(cfg.model), cfg.seed)
    return train_data, val_data, model, emulated_cluster(cfg, model, train_data)


# --------------------------------------------------------------------------- DDP (gloo)
def _ddp_rank(rank: int, cfg: TrainConfig, port: int, pacer: StepPacer | None,
              data: ArrayData, queue) -> None:
    torch.set_num_threads(cfg.threads_per_worker)
    n = cfg.workers
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=n)
    model = build_model(resolve_model(cfg.model), cfg.seed)
    ddp = DistributedDataParallel(model)
    began, step_no = [0.0], [0]
    if pacer is not None:  # the emulated compute time ends before the gradients are reduced
        def paced_allreduce(group, bucket):
            pacer.pace(began[0], cfg.batch_size, step_no[0])
            return default_hooks.allreduce_hook(group, bucket)

        ddp.register_comm_hook(None, paced_allreduce)
    schedule = LrSchedule(cfg.lr, cfg.iterations, cfg.lr_schedule)
    opt = torch.optim.SGD(ddp.parameters(), lr=cfg.lr * n, momentum=cfg.momentum)
    sampler = ShardSampler(len(data), rank, n, cfg.batch_size, cfg.seed)
    steps, snaps = cfg.iterations // n, []
    dist.barrier()
    t0 = time.time()
    for step in range(steps):
        began[0], step_no[0] = time.time(), step
        idx = sampler.next()
        opt.param_groups[0]["lr"] = schedule.at(step * n) * n  # one step on n batches
        opt.zero_grad(set_to_none=True)
        x, y = data.batch(idx)
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
        if rank == 0 and (_crossed((step + 1) * n, step * n, cfg.eval_every) or
                          step == steps - 1):
            snaps.append(((step + 1) * n, time.time() - t0, params_to_vector(model).copy()))
    if rank == 0:
        queue.put((snaps, time.time() - t0, steps * n * cfg.batch_size))
    dist.destroy_process_group()


def ddp_train(cfg: TrainConfig) -> dict[str, Any]:
    train_data, val_data, _, cluster = _setup(cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_rank, args=(r, cfg, port, cluster.pacer(r), train_data,
                                                 queue)) for r in range(cfg.workers)]
    for p in procs:
        p.start()
    try:
        snaps, wall, samples = queue.get(timeout=cfg.timeout_s)
    except Exception as e:
        raise ClusterError(f"DDP baseline failed or timed out: {e!r}") from e
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return _summarise(cfg, cluster, snaps, wall, samples, val_data)


# --------------------------------------------------------------------------- plain Ray PS
class PlainServer:
    def __init__(self, weights: np.ndarray, schedule: LrSchedule, momentum: float):
        self.w = torch.nn.Parameter(torch.from_numpy(weights.copy()))
        self.schedule, self.done = schedule, 0
        self.opt = torch.optim.SGD([self.w], lr=schedule.base, momentum=momentum)

    def apply_gradients(self, *grads: np.ndarray) -> np.ndarray:
        # The averaged step on k batches takes k times the rate (linear scaling).
        self.opt.param_groups[0]["lr"] = self.schedule.at(self.done) * len(grads)
        self.done += len(grads)
        self.w.grad = torch.from_numpy(np.mean(grads, axis=0))
        self.opt.step()
        return self.w.detach().numpy().copy()

    def get_weights(self) -> np.ndarray:
        return self.w.detach().numpy().copy()


class PlainWorker:
    def __init__(self, cfg: TrainConfig, rank: int, data: ArrayData, pacer: StepPacer | None):
        torch.set_num_threads(cfg.threads_per_worker)
        self.model = build_model(resolve_model(cfg.model), cfg.seed)
        self.flat = FlatModel(self.model)
        self.data, self.pacer, self.steps = data, pacer, 0
        self.sampler = ShardSampler(len(data), rank, cfg.workers, cfg.batch_size, cfg.seed)

    def ready(self) -> bool:
        return True

    def compute_gradients(self, weights: np.ndarray) -> np.ndarray:
        began = time.time()
        self.flat.load(weights)
        idx = self.sampler.next()
        self.flat.zero_grad()
        x, y = self.data.batch(idx)
        F.cross_entropy(self.model(x), y).backward()
        if self.pacer is not None:
            self.pacer.pace(began, len(idx), self.steps)
        self.steps += 1
        return self.flat.grad_vector().copy()


def ray_ps_train(cfg: TrainConfig, synchronous: bool) -> dict[str, Any]:
    """Ray's documentation example, made to run the same budget: the synchronous variant
    averages one gradient per worker per step; the asynchronous one applies each on arrival
    and sends that worker the new weights. Needs an initialised Ray."""
    train_data, val_data, model, cluster = _setup(cfg)
    n = cfg.workers
    data_ref = ray.put(train_data)
    ps = ray.remote(num_cpus=0)(PlainServer).remote(
        params_to_vector(model), LrSchedule(cfg.lr, cfg.iterations, cfg.lr_schedule),
        cfg.momentum)
    workers = [ray.remote(num_cpus=cfg.threads_per_worker)(PlainWorker).remote(
        cfg, r, data_ref, cluster.pacer(r)) for r in range(n)]
    try:
        ray.get([w.ready.remote() for w in workers], timeout=cfg.timeout_s)
        snaps, done = [], 0
        t0 = time.time()
        weights = ps.get_weights.remote()
        if synchronous:
            for _ in range(cfg.iterations // n):
                weights = ps.apply_gradients.remote(
                    *[w.compute_gradients.remote(weights) for w in workers])
                done += n
                if _crossed(done, done - n, cfg.eval_every) or done + n > cfg.iterations:
                    snaps.append((done, time.time() - t0, ray.get(weights, timeout=cfg.timeout_s)))
        else:
            inflight = {w.compute_gradients.remote(weights): w for w in workers}
            launched = n
            while inflight:
                [ready], _ = ray.wait(list(inflight), timeout=cfg.timeout_s)
                worker = inflight.pop(ready)
                weights = ps.apply_gradients.remote(ready)
                done += 1
                if launched < cfg.iterations:
                    inflight[worker.compute_gradients.remote(weights)] = worker
                    launched += 1
                if _crossed(done, done - 1, cfg.eval_every) or not inflight:
                    snaps.append((done, time.time() - t0, ray.get(weights, timeout=cfg.timeout_s)))
        wall = time.time() - t0
    finally:
        for handle in [ps, *workers]:
            ray.kill(handle)
    return _summarise(cfg, cluster, snaps, wall, done * cfg.batch_size, val_data)
