"""The training run, top to bottom: data, model, actors, the driver loop, the results.

The driver starts one parameter-server actor, N worker actors and an evaluator, lets the
workers train until the global budget is spent, and meanwhile sends the server's weight
snapshots to the evaluator, so that validation never stalls a worker.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import ray
from torch import nn

from hetsync import actors
from hetsync.actors import bounded_get as _get  # the one bounded wait, driver and workers
from hetsync.checkpoint import save_atomic
from hetsync.config import TrainConfig
from hetsync.data import load_dataset
from hetsync.errors import ClusterError, ConfigError
from hetsync.heterogeneity import emulated_cluster
from hetsync.metrics import MetricsLog, Progress, write_json_atomic
from hetsync.models import build_model, resolve_model
from hetsync.runtime import ray_session
from hetsync.wire import params_to_vector, vector_to_params

POLL_S = 0.1


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: nn.Module
    metrics: list[dict] = field(default_factory=list)
    worker_reports: list[Any] = field(default_factory=list)


def train(config: TrainConfig | None = None, **kwargs: Any) -> TrainResult:
    """Train with a TrainConfig, or with keyword arguments named like the CLI flags."""
    cfg = config if config is not None else TrainConfig(**kwargs)
    train_data, val_data = load_dataset(cfg)
    shard = len(train_data) // cfg.workers
    if cfg.batch_size > shard:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than a worker's share of the "
                          f"data ({shard} of {len(train_data)} samples); lower it or use fewer "
                          "workers")
    factory = resolve_model(cfg.model)
    model = build_model(factory, cfg.seed)
    cluster = emulated_cluster(cfg, model, train_data)
    cores = os.cpu_count() or 1
    if cfg.workers * cfg.threads_per_worker > cores:
        warnings.warn(f"{cfg.workers} workers x {cfg.threads_per_worker} threads exceed the "
                      f"{cores} cores of this machine: workers will share cores", stacklevel=2)

    out = cfg.out_dir
    if out is not None:
        if (out / "summary.json").exists() or (out / "metrics.jsonl").exists():
            if not cfg.overwrite:
                raise ConfigError(f"--out {out} holds another run; pass --overwrite to replace "
                                  "it, or choose another folder")
            (out / "metrics.jsonl").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.jsonl" if out else None)
    progress = Progress(cfg.iterations, enabled=cfg.progress)
    try:
        with ray_session(cfg.address, cfg.workers * cfg.threads_per_worker):
            summary, weights, reports = _run(cfg, factory, model, train_data, val_data,
                                             cluster, log, progress)
    finally:
        progress.close()
        log.close()
    vector_to_params(weights, model)
    if out is not None:
        write_json_atomic(out / "summary.json", summary)
        write_json_atomic(out / "timeline.json", {
            str(r.worker): [(kind, round(t0 - summary["start_time"], 4),
                             round(t1 - summary["start_time"], 4)) for kind, t0, t1 in r.timeline]
            for r in reports})
        save_atomic(model.state_dict(), out / "model.pt")
    return TrainResult(summary, model, log.records, reports)


def _run(cfg, factory, model, train_data, val_data, cluster, log, progress):
    # --- actors: server, allocator, N workers, evaluator; the data goes to the object store once
    data_ref = ray.put(train_data)
    server = actors.remote_server(
        timeout_s=cfg.timeout_s, weights=params_to_vector(model), workers=cfg.workers,
        bound=cfg.bound, barrier=cfg.sync == "bsp", lr=cfg.lr, momentum=cfg.momentum,
        batch_size=cfg.batch_size, iterations=cfg.iterations, eval_every=cfg.eval_every,
        update=cfg.update, gamma=cfg.gamma, local_steps=max(1, cfg.agwu_local_steps),
        lease=2 * cfg.gradients_per_push)
    allocator = actors.remote_allocator(n_samples=len(train_data), workers=cfg.workers,
                                        batch_size=cfg.batch_size, mode=cfg.allocation,
                                        seed=cfg.seed)
    workers = [
        actors.remote_worker(threads=cfg.threads_per_worker, worker_id=i, model_factory=factory,
                             data=data_ref, seed=cfg.seed, lr=cfg.lr, momentum=cfg.momentum,
                             pacer=cluster.pacer(i))
        for i in range(cfg.workers)
    ]
    evaluator = actors.remote_evaluator(model_factory=factory, data=val_data)
    try:
        return _drive(cfg, server, allocator, workers, evaluator, cluster, log, progress)
    finally:  # also on errors, so that a caller's own Ray instance is left clean
        for handle in [server, allocator, evaluator, *workers]:
            ray.kill(handle)


def _drive(cfg, server, allocator, workers, evaluator, cluster, log, progress):
    _get([w.ready.remote() for w in workers] + [evaluator.ready.remote()], cfg.timeout_s,
         "starting the actors")

    # --- training: workers run until the budget is spent; the driver evaluates snapshots
    start = time.time()
    runs = [w.run.remote(server, allocator, cfg.bound, cfg.timeout_s, cfg.agwu_local_steps,
                         cfg.gradients_per_push, i in cfg.hogged_workers)
            for i, w in enumerate(workers)]
    allocations_seen = 0
    pending_evals: dict[Any, Any] = {}  # eval ref -> snapshot
    best = None
    last_acc = None
    time_to_target = None
    status = {}

    def collect(block: bool) -> None:
        nonlocal best, last_acc, time_to_target
        if not pending_evals:
            return
        done, _ = ray.wait(list(pending_evals), num_returns=len(pending_evals),
                           timeout=cfg.timeout_s if block else 0)
        for ref in done:
            snap = pending_evals.pop(ref)
            loss, acc = _get(ref, cfg.timeout_s, "evaluating a snapshot")
            t = snap.time - start
            log.write("eval", wall_time_s=round(t, 3), iterations=snap.iterations,
                      updates=snap.version, samples=snap.samples, val_loss=loss,
                      val_accuracy=acc, ideal_samples_per_s=cluster.ideal_samples_per_s(t))
            last_acc = acc
            best = acc if best is None else max(best, acc)
            if time_to_target is None and acc >= cfg.target_accuracy:
                time_to_target = t

    remaining = list(runs)
    reports, lost = [], []
    kills = dict(cfg.worker_kills)  # worker -> its iteration at which to kill it
    status = _get(server.status.remote(), cfg.timeout_s, "asking the server for status")
    while remaining:
        for w, at in list(kills.items()):  # fault injection: a real kill of the process
            if status["clocks"][w] >= at:
                ray.kill(workers[w], no_restart=True)
                del kills[w]
        done, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=POLL_S)
        for ref in done:
            try:
                reports.append(_get(ref, cfg.timeout_s, "collecting a worker's report"))
            except ClusterError as e:
                if not isinstance(e.__cause__, ray.exceptions.RayActorError):
                    raise  # a worker that failed (diverged, broke) stops the run now
                # The process died: the survivors go on without it (docs/consistency.md).
                w = runs.index(ref)
                _get(server.leave.remote(w), cfg.timeout_s, "removing a lost worker")
                _get(allocator.lose.remote(w), cfg.timeout_s, "removing a lost worker")
                lost.append(w)
                log.write("membership", event="worker_lost", worker=w,
                          wall_time_s=round(time.time() - start, 3),
                          iterations=status["iterations"], clock=status["clocks"][w])
        status = _get(server.status.remote(), cfg.timeout_s, "asking the server for status")
        for snap in _get(server.take_snapshots.remote(), cfg.timeout_s, "taking snapshots"):
            pending_evals[evaluator.evaluate.remote(snap.weights)] = snap
        collect(block=False)
        changes = _get(allocator.changes.remote(allocations_seen), cfg.timeout_s,
                       "asking the allocator for changes")
        for change in changes:
            log.write("allocation", wall_time_s=round(time.time() - start, 3),
                      iterations=status["iterations"], **change)
        allocations_seen += len(changes)
        progress.update(time.time() - start, status["iterations"], status["samples"], last_acc,
                        status["loss"], status["max_staleness_observed"])
    reports.sort(key=lambda r: r.worker)
    wall = time.time() - start

    # --- final evaluation of the final weights, after the clock has stopped
    status = _get(server.status.remote(), cfg.timeout_s, "asking the server for status")
    weights = _get(server.weights.remote(), cfg.timeout_s, "fetching the final weights")
    collect(block=True)
    final_loss, final_acc = _get(evaluator.evaluate.remote(weights), cfg.timeout_s,
                                 "evaluating the final weights")
    log.write("final", wall_time_s=round(wall, 3), iterations=status["iterations"],
              updates=status["updates"], samples=status["samples"], val_loss=final_loss,
              val_accuracy=final_acc)
    best = final_acc if best is None else max(best, final_acc)
    progress.update(wall, status["iterations"], status["samples"], final_acc, status["loss"],
                    status["max_staleness_observed"], force=True)

    busy = sum(r.total_s for r in reports)
    summary = {
        "sync": cfg.sync,
        "staleness": cfg.staleness if cfg.sync == "ssp" else (0 if cfg.sync == "bsp" else None),
        "workers": cfg.workers,
        "iterations": status["iterations"],
        "updates": status["updates"],
        "samples": status["samples"],
        "wall_time_s": wall,
        "final_val_accuracy": final_acc,
        "final_val_loss": final_loss,
        "best_val_accuracy": best,
        "target_accuracy": cfg.target_accuracy,
        "time_to_target_s": time_to_target,
        "max_staleness_observed": status["max_staleness_observed"],
        "max_version_lag": status["max_version_lag"],
        "throughput_samples_per_s": status["samples"] / wall if wall > 0 else 0.0,
        "wait_fraction": sum(r.wait_s for r in reports) / busy if busy > 0 else 0.0,
        "ideal_throughput_samples_per_s": cluster.mean_ideal_samples_per_s(wall),
        "speeds": list(cluster.speeds) if cluster.speeds else None,
        "reference_s_per_sample": cluster.reference_s_per_sample,
        "allocation": cfg.allocation,
        "update": cfg.update,
        "allocation_changes": allocations_seen,
        "staleness_histogram": status["staleness_histogram"],
        "version_lag_histogram": status["version_lag_histogram"],
        "per_worker": [
            {"worker": r.worker, "iterations": r.iterations, "samples": r.samples,
             "compute_s": r.compute_s, "comm_s": r.comm_s, "wait_s": r.wait_s,
             "total_s": r.total_s}
            for r in reports
        ],
        "workers_lost": lost,
        "start_time": start,
        "config": cfg.to_dict(),
    }
    return summary, weights, reports
