"""A plain Ray parameter server in the style of Ray's documentation example, synchronous and
asynchronous: the peer that `hetsync bench` measures hetsync against. It lives here because
this package is the one place that makes and calls actors; its step is hetsync's own SGD
rule, so that both apply the same update."""

from __future__ import annotations

import time

import numpy as np
import ray
import torch
import torch.nn.functional as F

from hetsync.core.devices import compute_process
from hetsync.core.partitioning import ShardSampler
from hetsync.core.updates import LrSchedule, SgdRule
from hetsync.core.wire import FlatModel, params_to_vector
from hetsync.data import ArrayData
from hetsync.emulation import StepPacer
from hetsync.models import build_model


class PlainServer:
    """The peer's server, as Ray's example writes it: the weights and an SGD step, no clocks,
    budget or data allocation."""

    def __init__(self, weights: np.ndarray, schedule: LrSchedule, momentum: float):
        self.w = torch.nn.Parameter(torch.from_numpy(weights.copy()))
        # batch_size 1 per gradient: the mean of k batches' gradients counts k times
        self.rule = SgdRule(self.w, schedule, momentum, batch_size=1)

    def apply_gradients(self, *grads: np.ndarray) -> np.ndarray:
        """One SGD step on the mean of `grads`, weighted len(grads) (the linear scaling hetsync's
        BSP uses); returns a copy of the new weights."""
        self.rule.apply_round([(i, g, 1, None) for i, g in enumerate(grads)])
        return self.w.detach().numpy().copy()

    def get_weights(self) -> np.ndarray:
        """A copy of the current weights."""
        return self.w.detach().numpy().copy()


class PlainWorker:
    """The peer's worker: a fixed shard of the data (`ShardSampler`), and a gradient on whatever
    weights it is sent."""

    def __init__(self, model_factory, seed: int, threads: int, rank: int, workers: int,
                 batch: int, data: ArrayData, pacer: StepPacer | None):
        compute_process(threads)
        self.model = build_model(model_factory, seed)
        self.flat = FlatModel(self.model)
        self.data, self.pacer, self.steps = data, pacer, 0
        self.sampler = ShardSampler(len(data), rank, workers, batch, seed)

    def ready(self) -> bool:
        """True once the constructor has run (the model is built), for the driver to wait on."""
        return True

    def compute_gradients(self, weights: np.ndarray) -> np.ndarray:
        """The gradient of the next batch of its shard at `weights`, paced where a node is
        emulated; a copy, since the gradient buffer is reused."""
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


def ray_ps_run(cfg, model_factory, train_data: ArrayData, pacers: list,
               synchronous: bool) -> tuple[list, float, int]:
    """Ray's documentation example, made to run the same budget: the synchronous variant
    averages one gradient per worker per step; the asynchronous one applies each on arrival
    and sends that worker the new weights. Needs an initialised Ray. Returns the snapshots
    (iterations, seconds, weights), the wall time and the samples trained."""
    tr, n, timeout = cfg.training, cfg.training.workers, cfg.cluster.timeout_s
    every = cfg.output.eval_every
    ps = ray.remote(num_cpus=0)(PlainServer).remote(
        params_to_vector(build_model(model_factory, tr.seed)),
        LrSchedule(cfg.update.lr, tr.iterations, cfg.update.lr_schedule), cfg.update.momentum)
    data_ref = ray.put(train_data)
    workers = [ray.remote(num_cpus=tr.threads_per_worker)(PlainWorker).remote(
        model_factory, tr.seed, tr.threads_per_worker, r, n, tr.batch_size, data_ref, pacers[r])
        for r in range(n)]
    try:
        ray.get([w.ready.remote() for w in workers], timeout=timeout)
        snaps, done = [], 0
        t0 = time.time()
        weights = ps.get_weights.remote()
        if synchronous:
            for _ in range(tr.iterations // n):
                weights = ps.apply_gradients.remote(
                    *[w.compute_gradients.remote(weights) for w in workers])
                done += n
                if done // every > (done - n) // every or done + n > tr.iterations:
                    snaps.append((done, time.time() - t0, ray.get(weights, timeout=timeout)))
        else:
            inflight = {w.compute_gradients.remote(weights): w for w in workers}
            launched = n
            while inflight:
                [ready], _ = ray.wait(list(inflight), timeout=timeout)
                worker = inflight.pop(ready)
                weights = ps.apply_gradients.remote(ready)
                done += 1
                if launched < tr.iterations:
                    inflight[worker.compute_gradients.remote(weights)] = worker
                    launched += 1
                if done % every == 0 or not inflight:
                    snaps.append((done, time.time() - t0, ray.get(weights, timeout=timeout)))
        wall = time.time() - t0
    finally:
        for handle in [ps, *workers]:
            ray.kill(handle)
    return snaps, wall, done * tr.batch_size
