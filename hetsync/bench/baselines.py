"""The peers hetsync is measured against, run on the same emulated cluster: PyTorch
DistributedDataParallel (the gloo all-reduce most users would pick instead) and a plain Ray
parameter server in the style of Ray's documentation (`hetsync.cluster.peer_ps`), synchronous
and asynchronous. Same model, data, batch, learning-rate semantics (linear scaling for
averaged batches), momentum and step pacing as hetsync; weights are snapshotted at the same
iteration marks and validated after training, so validation never slows a run."""

from __future__ import annotations

import socket
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from hetsync.cluster.peer_ps import ray_ps_run
from hetsync.config import TrainConfig
from hetsync.core.devices import compute_process
from hetsync.core.partitioning import ShardSampler, proportional_batches
from hetsync.core.updates import LrSchedule
from hetsync.core.wire import Snapshot, params_to_vector
from hetsync.data import ArrayData, load_dataset
from hetsync.emulation import StepPacer, emulated_cluster
from hetsync.errors import ClusterError
from hetsync.models import build_model, resolve_model
from hetsync.run.evaluation import Evaluator, reached


def _summarise(cfg: TrainConfig, cluster, snaps, wall: float, samples: int, val: ArrayData):
    """Validation of each snapshot (iterations, seconds, weights) after the run."""
    evaluator = Evaluator(resolve_model(cfg.training.model, val.sample_shape, val.classes), val)
    # an iteration is one batch of batch_size samples (DDP's: the ranks' share of n)
    readings = [{"iterations": it, "wall_time_s": t, "samples": it * cfg.training.batch_size,
                 "val_accuracy": evaluator.evaluate(Snapshot(w, None, it, 0, 0, t))[1]}
                for it, t, w in snaps]  # as hetsync's eval records, for `reached`
    accs = [r["val_accuracy"] for r in readings]
    return {
        "readings": readings,
        "iterations": snaps[-1][0] if snaps else 0,
        "wall_time_s": wall,
        "final_val_accuracy": accs[-1] if accs else None,
        "best_val_accuracy": max(accs) if accs else None,
        **reached(readings, cfg.output.target_accuracy),
        "throughput_samples_per_s": samples / wall,
        "ideal_throughput_samples_per_s": cluster.mean_ideal_samples_per_s(wall),
    }


def _setup(cfg: TrainConfig):
    train_data, val_data = load_dataset(cfg)
    model = build_model(resolve_model(cfg.training.model, train_data.sample_shape,
                                      train_data.classes), cfg.training.seed)
    return train_data, val_data, emulated_cluster(cfg, model, train_data)


# --------------------------------------------------------------------------- DDP (gloo)
def _ddp_rank(rank: int, cfg: TrainConfig, port: int, pacer: StepPacer | None,
              data: ArrayData, queue, batches: list[int] | None = None) -> None:
    """One DDP rank. With `batches`, each rank's batch is its own (load-balanced BSP, as
    LB-BSP and OmniLearn do) and its loss is scaled by its share, so that the all-reduced
    (averaged) gradient is the mean over the global batch."""
    tr, up = cfg.training, cfg.update
    batch = batches[rank] if batches else tr.batch_size
    scale = batch * tr.workers / sum(batches) if batches else 1.0
    compute_process(tr.threads_per_worker)
    n = tr.workers
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=n)
    model = build_model(resolve_model(tr.model, data.sample_shape, data.classes), tr.seed)
    ddp = DistributedDataParallel(model)
    began, step_no = [0.0], [0]
    if pacer is not None:  # the emulated compute time ends before the gradients are reduced
        def paced_allreduce(group, bucket):
            pacer.pace(began[0], batch, step_no[0])
            return default_hooks.allreduce_hook(group, bucket)

        ddp.register_comm_hook(None, paced_allreduce)
    schedule = LrSchedule(up.lr, tr.iterations, up.lr_schedule)
    opt = torch.optim.SGD(ddp.parameters(), lr=up.lr * n, momentum=up.momentum)
    sampler = ShardSampler(len(data), rank, n, batch, tr.seed, batches)
    steps, snaps, every = tr.iterations // n, [], cfg.output.eval_every
    dist.barrier()
    t0 = time.time()
    for step in range(steps):
        began[0], step_no[0] = time.time(), step
        idx = sampler.next()
        opt.param_groups[0]["lr"] = schedule.at(step * n) * n  # one step on n batches
        opt.zero_grad(set_to_none=True)
        x, y = data.batch(idx)
        (F.cross_entropy(ddp(x), y) * scale).backward()
        opt.step()
        if rank == 0 and ((step + 1) * n // every > step * n // every or step == steps - 1):
            snaps.append(((step + 1) * n, time.time() - t0, params_to_vector(model).copy()))
    if rank == 0:
        queue.put((snaps, time.time() - t0, steps * (sum(batches) if batches else
                                                     n * tr.batch_size)))
    dist.destroy_process_group()


def ddp_train(cfg: TrainConfig, proportional: bool = False) -> dict[str, Any]:
    """PyTorch DDP on the emulated cluster; `proportional` gives each rank a batch in
    proportion to its node's speed (the emulated speeds are known exactly: the best case for
    this peer), the same global batch in all."""
    train_data, val_data, cluster = _setup(cfg)
    tr = cfg.training
    batches = (proportional_batches(tr.workers * tr.batch_size, [1 / v for v in cluster.speeds])
               if proportional and cluster.speeds else None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_rank, args=(r, cfg, port, cluster.pacer(r), train_data,
                                                 queue, batches))
             for r in range(cfg.training.workers)]
    for p in procs:
        p.start()
    try:
        snaps, wall, samples = queue.get(timeout=cfg.cluster.timeout_s)
    except Exception as e:
        raise ClusterError(f"DDP baseline failed or timed out: {e!r}") from e
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return _summarise(cfg, cluster, snaps, wall, samples, val_data)


# --------------------------------------------------------------------------- plain Ray PS
def ray_ps_train(cfg: TrainConfig, synchronous: bool) -> dict[str, Any]:
    """The plain Ray parameter server on this config (needs an initialised Ray)."""
    train_data, val_data, cluster = _setup(cfg)
    pacers = [cluster.pacer(r) for r in range(cfg.training.workers)]
    factory = resolve_model(cfg.training.model, train_data.sample_shape, train_data.classes)
    snaps, wall, samples = ray_ps_run(cfg, factory, train_data, pacers, synchronous)
    return _summarise(cfg, cluster, snaps, wall, samples, val_data)
