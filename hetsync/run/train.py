"""The training run, top to bottom: data, model, actors, the driver loop, the results.

The driver starts one parameter-server actor (which also hosts the data allocator) and N
worker actors, lets the workers train until the global budget is spent, and meanwhile has
the server's weight snapshots evaluated on a thread of its own, so that validation never
stalls a worker. It writes the checkpoints and handles the faults (docs/reliability.md): a
dead worker is left behind or restarted, a dead server is restarted from the last
checkpoint. What to do is decided by plain policies (`faults`, `checkpoint`, `evaluation`);
the actors are reached only through the typed handles of `hetsync.cluster`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from hetsync.cluster.clients import ServerLost, WorkerLost
from hetsync.cluster.handles import ServerHandle, WorkerPool
from hetsync.cluster.runtime import ray_session
from hetsync.config import TrainConfig
from hetsync.core.wire import Snapshot, buffers_to_vector, load_into, params_to_vector
from hetsync.core.worker import PushPolicy, WorkerReport
from hetsync.data import load_dataset
from hetsync.emulation import emulated_cluster, write_calibration
from hetsync.errors import ClusterError, ConfigError
from hetsync.models import build_model, resolve_model
from hetsync.run.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointSchedule,
    check_resumable,
    forget_snapshots,
    keep_snapshots,
    load_weights,
    prepare_out,
    restore_snapshots,
    save_atomic,
    stored_config,
)
from hetsync.run.evaluation import EvaluationQueue, Evaluator
from hetsync.run.faults import Decision, FaultPlan, RestartPolicy
from hetsync.run.metrics import MetricsLog, Progress, write_json_atomic
from hetsync.run.summary import build_summary
from hetsync.run.tensorboard import NullWriter, RunScalars, check_tensorboard, open_writer


@dataclass
class TrainResult:
    """What `train` returns: summary.json's contents, the model holding the final weights, every
    metrics.jsonl record, and each worker's merged report."""

    summary: dict[str, Any]
    model: nn.Module
    metrics: list[dict] = field(default_factory=list)
    worker_reports: list[Any] = field(default_factory=list)


def train(config: TrainConfig | None = None, **settings: Any) -> TrainResult:
    """Train with a TrainConfig, or with keyword arguments named like the CLI flags."""
    if config is not None and settings:
        raise ConfigError(f"pass a TrainConfig or settings, not both (got config and "
                          f"{', '.join(settings)})")
    cfg = config if config is not None else TrainConfig.from_flat(**settings)
    tr = cfg.training
    check_tensorboard(cfg.output.tensorboard, cfg.output.overwrite, cfg.faults.resume is not None)
    loaded = None  # the checkpoint's contents, if read before the data
    if cfg.faults.resume is not None and cfg.output.out_dir is not None:
        check_resumable(cfg.output.out_dir)
        if stored_config(cfg.output.out_dir) is None:
            # No saved settings: the run's flags come from the command line, and a corrupt
            # checkpoint must be the error reported, not the first flag the defaults lack;
            # read once, checked against the run in prepare_out
            loaded = load_weights(cfg.output.out_dir / CHECKPOINT_FILE)
    train_data, val_data = load_dataset(cfg)
    shard = len(train_data) // tr.workers
    if tr.batch_size > shard:
        raise ConfigError(f"--batch-size {tr.batch_size} is larger than a worker's share of the "
                          f"data ({shard} of {len(train_data)} samples); lower it or use fewer "
                          "workers")
    factory = resolve_model(tr.model, train_data.sample_shape, train_data.classes)
    model = build_model(factory, tr.seed)
    resume = prepare_out(cfg, sum(p.numel() for p in model.parameters()), loaded)
    stored = cfg.output.out_dir / "calibration.json" if cfg.output.out_dir else None
    if resume is not None and stored.exists() and not cfg.emulation.calibration:
        # the resumed half emulates the cluster the saved half did
        cfg = replace(cfg, emulation=replace(cfg.emulation, calibration=str(stored)))
    cluster = emulated_cluster(cfg, model, train_data)
    if cluster.real_s_per_sample is not None and stored and not cfg.emulation.calibration:
        write_calibration(stored, cluster.real_s_per_sample, cfg)
    cores = os.cpu_count() or 1
    if tr.workers * tr.threads_per_worker > cores:
        warnings.warn(f"{tr.workers} workers x {tr.threads_per_worker} threads exceed the "
                      f"{cores} cores of this machine: they will share the cores, so expect "
                      f"about the throughput of {cores} workers, and a long start-up (each "
                      "worker is a process that imports PyTorch)", stacklevel=2)

    out = cfg.output.out_dir
    # TensorBoard's scalars: every record of metrics.jsonl, and the driver's status polls
    scalars = RunScalars.for_run(open_writer(cfg.output.tensorboard,
                                             resume.iterations if resume else None), cfg)
    log = MetricsLog(out / "metrics.jsonl" if out else None,
                     keep=resume.metrics_lines if resume else None, listener=scalars.record)
    progress = Progress(tr.iterations, enabled=cfg.output.progress)
    evaluation = EvaluationQueue(Evaluator(factory, val_data), cfg.output.target_accuracy,
                                 cfg.output.defer_eval,
                                 resume.best_val_accuracy if resume else None,
                                 resume.time_to_target_s if resume else None)
    threads = torch.get_num_threads()  # the evaluation thread sets its own: leave ours as found
    try:
        with ray_session(cfg.cluster.address, tr.workers * tr.threads_per_worker):
            driver = Driver(cfg, cluster, log, progress, evaluation, resume, scalars=scalars)
            try:
                driver.start(factory, model, train_data)
                if out is not None and cfg.output.progress:
                    print(f"hetsync: writing to {out}", file=sys.stderr)
                summary, final = driver.drive()
                scalars.summary(summary)
            finally:  # also on errors, so that a caller's own Ray instance is left clean
                driver.stop()
    finally:
        progress.close()
        log.close()
        scalars.close()
        evaluation.close()
        torch.set_num_threads(threads)
    load_into(model, final.weights, final.buffers)
    # what using model.pt needs: the input shape, the classes, the normalisation
    summary = {**summary, "data": train_data.describe(val_data)}
    if out is not None:
        write_json_atomic(out / "summary.json", summary)
        forget_snapshots(out, [])  # every one evaluated, and the run no longer resumable
        write_json_atomic(out / "timeline.json", {
            str(r.worker): [(kind, round(t0 - summary["start_time"], 4),
                             round(t1 - summary["start_time"], 4)) for kind, t0, t1 in r.timeline]
            for r in driver.reports})
        save_atomic(model.state_dict(), out / "model.pt")
    return TrainResult(summary, model, log.records, driver.reports)


def server_arguments(cfg: TrainConfig, model: nn.Module, samples: int,
                     policy: PushPolicy) -> dict[str, Any]:
    """The server's arguments: the ParameterServer's, the Allocator's, and the shards."""
    tr, up = cfg.training, cfg.update
    return dict(
        server=dict(weights=params_to_vector(model), buffers=buffers_to_vector(model),
                    workers=tr.workers, bound=cfg.consistency.bound,
                    barrier=cfg.consistency.sync == "bsp", lr=up.lr, momentum=up.momentum,
                    batch_size=tr.batch_size, iterations=tr.iterations,
                    eval_every=cfg.output.eval_every, update=up.rule, gamma=up.gamma,
                    steps_per_push=max(1, policy.local_steps), lr_schedule=up.lr_schedule,
                    lease=2 * policy.gradients, delay_compensation=up.delay_compensation),
        allocation=dict(n_samples=samples, workers=tr.workers, batch_size=tr.batch_size,
                        mode=cfg.allocation.mode, seed=tr.seed),
        shards=cfg.cluster.server_shards)


def start_workers(cfg: TrainConfig, cluster, factory, train_data) -> WorkerPool:
    """The run's worker actors, one per worker and paced as the emulated cluster says; returns
    once every one has started (bounded)."""
    tr = cfg.training
    return WorkerPool(tr.workers, tr.threads_per_worker, cfg.faults.max_restarts,
                      cfg.cluster.timeout_s, train_data,
                      [cluster.pacer(i) for i in range(tr.workers)], gpus=cfg.gpus,
                      model_factory=factory, seed=tr.seed, momentum=cfg.update.momentum,
                      device=cfg.cluster.device)


class Driver:
    """The driver's side of a run: it starts the actors, polls the server, feeds the
    evaluation, writes metrics and checkpoints, and acts on lost workers and a lost server."""

    def __init__(self, cfg: TrainConfig, cluster, log: MetricsLog, progress: Progress,
                 evaluation: EvaluationQueue, resume: Checkpoint | None,
                 server_type=ServerHandle, pool_factory=start_workers, scalars=None):
        """`server_type` and `pool_factory` make the actors; tests pass in-process fakes.
        `scalars` (RunScalars) takes TensorBoard's figures; none writes nothing."""
        self.cfg, self.cluster, self.log, self.progress = cfg, cluster, log, progress
        self.server_type, self.pool_factory = server_type, pool_factory
        self.scalars = scalars or RunScalars.for_run(NullWriter(), cfg)
        self.evaluation = evaluation
        self.checkpoint = resume  # the last one saved: a lost server restarts from it
        self.resumed_from = resume.iterations if resume else None
        self.t0 = time.time()  # set again once the actors are up: the clock starts there
        every = cfg.faults.checkpoint_every if cfg.output.out_dir else 0
        self.schedule = CheckpointSchedule(every, self.resumed_from or 0)
        self.faults = FaultPlan(cfg.faults.worker_kills, cfg.faults.server_kill)
        self.restarts = RestartPolicy(cfg.training.workers, cfg.faults.max_restarts)
        c = cfg.consistency
        self.policy = PushPolicy.choose(c.sync, c.bound, cfg.training.workers, cfg.update.rule,
                                        cfg.update.local_steps)
        self.server, self.pool = None, None  # started by `start`
        self.reports: list[WorkerReport] = []
        self.dead: list[int] = []  # workers whose process died, not yet acted on
        self.iterations_lost = self.allocations_seen = 0

    def _now(self) -> float:
        return round(time.time() - self.t0, 3)

    # ------------------------------------------------------------------ actors
    def start(self, factory, model: nn.Module, train_data) -> None:
        """Start the workers, then the server (fresh or from the checkpoint); the run's clock
        starts once they are up, where a resumed run's left off."""
        self.server_args = server_arguments(self.cfg, model, len(train_data), self.policy)
        self.pool = self.pool_factory(self.cfg, self.cluster, factory, train_data)
        self._start_server()
        self.t0 = time.time() - (self.checkpoint.elapsed_s if self.checkpoint else 0.0)
        self.scalars.started(self.checkpoint.iterations if self.checkpoint else 0, self.t0)
        if self.checkpoint is not None:
            self.evaluation.add(restore_snapshots(self.checkpoint.unevaluated, self.t0,
                                                  self.cfg.output.out_dir))
            last = max((r.get("iterations", 0) for r in self.log.dropped), default=0)
            self.iterations_lost = max(0, last - self.checkpoint.iterations)
            self.log.write("membership", event="resumed", wall_time_s=self._now(),
                           iterations=self.checkpoint.iterations,
                           iterations_lost=self.iterations_lost)

    def _start_server(self) -> None:
        """A parameter server and a data allocator: fresh, or from the last checkpoint."""
        ckpt = self.checkpoint
        self.server = self.server_type(self.cfg.cluster.timeout_s, **self.server_args,
                                   state=ckpt.server if ckpt else None,
                                   allocation_state=ckpt.allocator if ckpt else None)
        self.allocations_seen = 0
        for w in self.restarts.gone:  # workers gone for good hold no one back
            self.server.lose(w)

    def _launch(self, workers) -> None:
        for w in workers:
            self.pool.launch(w, self.server, self.cfg.consistency.bound, self.policy,
                             w in self.cfg.emulation.hogged, self.cfg.cluster.transport)

    def stop(self) -> None:
        """Kill the actors that were started; also after a failed start."""
        for handle in (self.server, self.pool):
            if handle is not None:
                handle.kill()

    # ------------------------------------------------------------------ the loop
    def drive(self) -> tuple[dict, Snapshot]:
        """Train until the budget is spent, through lost workers and lost servers; returns
        (summary, final snapshot). Raises what stopped the run."""
        workers = self.cfg.training.workers
        survivors = range(workers)
        while survivors:
            self._launch(survivors)
            self.status = self.server.status()
            while self.pool.runs:
                try:
                    self._poll()
                except ServerLost:
                    self._restart_server()
            # A worker lost after the others had finished gave its unused iterations back:
            # the survivors go back to work for them.
            survivors = self.restarts.live(workers) if self.status.budget_remaining else []
        return self._finish()

    def _poll(self) -> None:
        for w in self.faults.workers_due(self.status):
            self.pool.sigkill(w)
        if self.faults.server_due(self.status):
            self.status = self.server.status()  # fresh figures, so lost iterations are counted
            self.server.sigkill(shard=-1)  # with shards, one that does not host the allocator
        self._runs_ended(self.pool.poll())
        self.status, snapshots, changes = self.server.poll(self.allocations_seen)
        s = self.status
        self.scalars.status(s)
        self.evaluation.add(snapshots)
        self._log_evaluations(block=False)
        for change in changes:
            self.log.write("allocation", wall_time_s=self._now(), iterations=s.iterations,
                           **change)
            self.allocations_seen += 1
        if self.schedule.due(s.iterations):
            self._checkpoint()
        self.progress.update(time.time() - self.t0, s.iterations, s.samples,
                             self.evaluation.last, s.loss, s.max_staleness_observed)

    def _log_evaluations(self, block: bool) -> None:
        for r in self.evaluation.results(self.t0, block):
            self.log.write("eval", **r,
                           ideal_samples_per_s=self.cluster.ideal_samples_per_s(r["wall_time_s"]))

    def _runs_ended(self, ended: list[tuple[int, WorkerReport | ClusterError]],
                    act: bool = True) -> None:
        """Keep the reports and note the dead workers of every run that ended, then act on
        the dead (`act`) or on a failure: a lost server raises ServerLost (its restart picks
        up the dead), a worker that failed otherwise (diverged, broke) stops the run."""
        failure = None
        for worker, outcome in ended:
            if isinstance(outcome, WorkerReport):
                self.reports.append(outcome)
            elif isinstance(outcome, WorkerLost):
                self.dead.append(worker)
            elif failure is None:
                failure = outcome
        if failure is not None and act:
            if isinstance(failure, ServerLost) or not self.server.alive():
                raise ServerLost("the parameter server died") from failure
            raise failure
        while act and self.dead:
            self._worker_died(self.dead[0])
            self.dead.pop(0)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> None:
        state, snapshots = self.server.checkpoint_state()
        elapsed = time.time() - self.t0  # where a resumed run's clock goes on from
        self.evaluation.add(snapshots)
        # The evaluations so far go into the checkpoint's metrics; deferred ones are not run
        # now (that would take CPU from training) but kept in the checkpoint.
        self._log_evaluations(block=not self.evaluation.deferred)
        ckpt = Checkpoint.of_run(self.cfg, state, elapsed,
                                 len(self.log.records) + 1, self.evaluation.best,
                                 self.evaluation.time_to_target,
                                 keep_snapshots(self.evaluation.unevaluated(), self.t0,
                                                self.cfg.output.out_dir))
        # The file first, then the record that announces it: a crash between the two loses
        # only the record, never a checkpoint that metrics.jsonl says was saved.
        ckpt.save(self.cfg.output.out_dir)
        forget_snapshots(self.cfg.output.out_dir, ckpt.unevaluated)
        self.log.write("checkpoint", wall_time_s=self._now(), iterations=ckpt.iterations)
        self.checkpoint = ckpt
        self.schedule.saved(ckpt.iterations)

    # ------------------------------------------------------------------ faults
    def _worker_died(self, w: int) -> None:
        """The survivors go on without it (docs/consistency.md); with restarts left, Ray
        restarts its process and it rejoins at the slowest live clock."""
        self.server.lose(w)  # first: if the server is dead too, its restart handles `w`
        self.log.write("membership", event="worker_lost", worker=w, wall_time_s=self._now(),
                       iterations=self.status.iterations, clock=self.status.clocks[w])
        if self.restarts.worker_lost(w) is Decision.LEAVE_BEHIND:
            return
        self.pool.await_restart(w)
        self._launch([w])
        self.log.write("membership", event="worker_restarted", worker=w,
                       wall_time_s=self._now(), iterations=self.status.iterations)

    def _restart_server(self) -> None:
        """Start a server and an allocator from the last checkpoint and send the workers back
        to work; the iterations since that checkpoint are lost and counted."""
        ckpt = self.checkpoint
        at = max(self.status.iterations, ckpt.iterations if ckpt else 0)  # at least
        self.log.write("membership", event="server_lost", wall_time_s=self._now(), iterations=at)
        self.restarts.server_lost(at, ckpt is not None)
        # Each worker's next call to the dead server fails; wait until every run has ended.
        self._runs_ended(self.pool.finish_all(), act=False)
        self.server.kill()  # and the allocator it hosts
        self.evaluation.forget(after=ckpt.iterations)  # snapshots of the lost timeline
        self._start_server()
        lost = max(0, at - ckpt.iterations)
        self.iterations_lost += lost
        self.log.write("membership", event="server_restarted", wall_time_s=self._now(),
                       iterations=ckpt.iterations, iterations_lost=lost)
        self.status = self.server.status()
        self._launch([w for w in self.restarts.live(self.cfg.training.workers)
                      if w not in self.dead])
        self._runs_ended([])  # the workers that died with the server

    # ------------------------------------------------------------------ the results
    def _finish(self) -> tuple[dict, Snapshot]:
        wall = time.time() - self.t0
        # The final evaluation of the final weights, after the clock has stopped.
        status, final = self.server.status(), self.server.final()
        self.evaluation.use_all_cores()  # the workers are done
        self._log_evaluations(block=True)
        loss, acc = self.evaluation.final(final)
        self.log.write("final", wall_time_s=round(wall, 3), iterations=status.iterations,
                       updates=status.updates, samples=status.samples, val_loss=loss,
                       val_accuracy=acc)
        self.scalars.status(status, self.t0 + wall, force=True)
        self.progress.update(wall, status.iterations, status.samples, acc, status.loss,
                             status.max_staleness_observed, force=True)
        self.reports = WorkerReport.merge(self.reports)
        summary = build_summary(
            self.cfg, status, self.reports, wall, (loss, acc), self.evaluation.best,
            self.evaluation.time_to_target, self.cluster, self.log.records,
            run={"workers_lost": self.restarts.gone, "worker_nodes": self.pool.nodes(),
                 "worker_restarts": self.restarts.worker_restarts,
                 "server_restarts": self.restarts.server_restarts,
                 "resumed_from_iterations": self.resumed_from,
                 "iterations_lost": self.iterations_lost, "start_time": self.t0})
        return summary, final
