"""The training run, top to bottom: data, model, actors, the driver loop, the results.

The driver starts one parameter-server actor (which also hosts the data allocator) and N
worker actors, lets the workers train until the global budget is spent, and meanwhile
evaluates the server's weight snapshots on a thread of its own, so that validation never
stalls a worker. It also
writes the checkpoints and handles the faults (docs/reliability.md): a dead worker is left
behind or restarted, a dead server is restarted from the last checkpoint.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from torch import nn

from hetsync import actors
from hetsync.actors import bounded_get as _get  # the one bounded wait, driver and workers
from hetsync.checkpoint import CHECKPOINT_FILE, Checkpoint, identity, load_checkpoint, save_atomic
from hetsync.config import TrainConfig
from hetsync.data import load_dataset
from hetsync.errors import ClusterError, ConfigError, DivergedError
from hetsync.heterogeneity import emulated_cluster
from hetsync.metrics import MetricsLog, Progress, write_json_atomic
from hetsync.models import build_model, resolve_model
from hetsync.runtime import ray_session
from hetsync.validation import Evaluator
from hetsync.wire import params_to_vector, vector_to_params
from hetsync.worker import WorkerReport

POLL_S = 0.1
# A server that keeps dying is not worth restarting forever.
MAX_SERVER_RESTARTS = 3


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
    weights = params_to_vector(model)
    resume = _prepare_out(cfg, weights.size)
    cluster = emulated_cluster(cfg, model, train_data)
    cores = os.cpu_count() or 1
    if cfg.workers * cfg.threads_per_worker > cores:
        warnings.warn(f"{cfg.workers} workers x {cfg.threads_per_worker} threads exceed the "
                      f"{cores} cores of this machine: workers will share cores", stacklevel=2)

    out = cfg.out_dir
    log = MetricsLog(out / "metrics.jsonl" if out else None,
                     keep=resume.metrics_lines if resume else None)
    progress = Progress(cfg.iterations, enabled=cfg.progress)
    driver = Driver(cfg, cluster, log, progress, resume)
    threads = torch.get_num_threads()  # the evaluation thread sets its own: leave ours as found
    try:
        with ray_session(cfg.address, cfg.workers * cfg.threads_per_worker):
            try:
                driver.start(factory, weights, train_data, val_data)
                summary, weights = driver.drive()
            finally:  # also on errors, so that a caller's own Ray instance is left clean
                driver.kill_actors()
    finally:
        progress.close()
        log.close()
        torch.set_num_threads(threads)
    vector_to_params(weights, model)
    reports = driver.reports
    if out is not None:
        write_json_atomic(out / "summary.json", summary)
        write_json_atomic(out / "timeline.json", {
            str(r.worker): [(kind, round(t0 - summary["start_time"], 4),
                             round(t1 - summary["start_time"], 4)) for kind, t0, t1 in r.timeline]
            for r in reports})
        save_atomic(model.state_dict(), out / "model.pt")
    return TrainResult(summary, model, log.records, reports)


def _prepare_out(cfg: TrainConfig, num_params: int) -> Checkpoint | None:
    """Settle the output folder before any work: the checkpoint to resume from, a fresh start,
    or a refusal that leaves another run's files untouched."""
    out = cfg.out_dir
    if out is None:
        return None
    if cfg.resume is not None:
        if (out / "summary.json").exists():
            raise ConfigError(f"the run in {out} has finished; there is nothing to resume")
        return load_checkpoint(out, cfg, num_params)
    files = [out / name for name in ("summary.json", "metrics.jsonl", CHECKPOINT_FILE)]
    if any(f.exists() for f in files):
        if not cfg.overwrite:
            raise ConfigError(f"--out {out} holds another run; pass --resume {out} to continue "
                              "it, --overwrite to replace it, or choose another folder")
        for f in files:
            f.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return None


class ServerLost(ClusterError):
    """The parameter server's process (which hosts the allocator) died."""


class Driver:
    """The driver's side of a run: it owns the actors, polls the server, feeds the evaluator,
    writes metrics and checkpoints, and handles lost workers and a lost server."""

    def __init__(self, cfg: TrainConfig, cluster, log: MetricsLog, progress: Progress,
                 resume: Checkpoint | None):
        self.cfg, self.cluster, self.log, self.progress = cfg, cluster, log, progress
        self.checkpoint = resume  # the last one saved: a lost server restarts from it
        self.resumed_from = resume.iterations if resume else None
        self.t0 = time.time()  # set again once the actors are up: the clock starts there
        self.best = resume.best_val_accuracy if resume else None
        self.time_to_target = resume.time_to_target_s if resume else None
        self.last_acc: float | None = None
        self.every = cfg.checkpoint_every if cfg.out_dir else 0
        self.next_checkpoint = (self.resumed_from or 0) // self.every * self.every + self.every \
            if self.every else None
        self.server = None  # the server actor, which hosts the data allocator as well
        self.evaluator: Evaluator | None = None
        # Evaluation runs here, in the driver's process (one process fewer to start per run,
        # and PyTorch is imported already), on one thread with one intra-op thread.
        self.eval_thread = ThreadPoolExecutor(1, initializer=torch.set_num_threads,
                                              initargs=(1,))
        self.workers: list = []
        self.where: dict[int | str, tuple[str, int]] = {}  # actor -> (node, pid), for kills
        self.runs: dict[Any, int] = {}  # run call in flight -> its worker
        self.reports: list = []
        self.lost: list[int] = []  # workers gone for good
        self.restarts_left = dict.fromkeys(range(cfg.workers), cfg.max_restarts)
        self.worker_restarts = self.server_restarts = self.iterations_lost = 0
        self.kills = dict(cfg.worker_kills)  # worker -> its clock at which to kill it
        self.server_kill = cfg.server_kill
        self.allocations_seen = 0
        self.snapshots: list = []  # taken from the server, not yet sent to the evaluator
        self.pending_evals: dict[Future, Any] = {}  # evaluation -> snapshot, in order
        self.status: dict = {}

    def _now(self) -> float:
        return round(time.time() - self.t0, 3)

    # ------------------------------------------------------------------ actors
    def start(self, factory, weights, train_data, val_data) -> None:
        cfg = self.cfg
        self.init_weights, self.n_samples = weights, len(train_data)
        # To the object store once, for every worker; held for the run, since a restarted
        # worker's constructor reads it again.
        self.data_ref = ray.put(train_data)
        self.workers = [
            actors.remote_worker(threads=cfg.threads_per_worker, max_restarts=cfg.max_restarts,
                                 worker_id=i, model_factory=factory, data=self.data_ref,
                                 seed=cfg.seed, momentum=cfg.momentum,
                                 pacer=self.cluster.pacer(i))
            for i in range(cfg.workers)
        ]
        self.evaluator = Evaluator(factory, val_data)
        self._start_server()
        where = _get([w.ready.remote() for w in self.workers], cfg.timeout_s,
                     "starting the actors")
        self.where.update(enumerate(where))
        self.t0 = time.time() - (self.checkpoint.elapsed_s if self.checkpoint else 0.0)
        if self.checkpoint is not None:
            last = max((r.get("iterations", 0) for r in self.log.dropped), default=0)
            self.iterations_lost = max(0, last - self.checkpoint.iterations)
            self.log.write("membership", event="resumed", wall_time_s=self._now(),
                           iterations=self.checkpoint.iterations,
                           iterations_lost=self.iterations_lost)

    def _start_server(self) -> None:
        """A parameter server and a data allocator: fresh, or from the last checkpoint."""
        cfg, ckpt = self.cfg, self.checkpoint
        self.server = actors.remote_server(
            timeout_s=cfg.timeout_s, weights=self.init_weights, workers=cfg.workers,
            bound=cfg.bound, barrier=cfg.sync == "bsp", lr=cfg.lr, momentum=cfg.momentum,
            batch_size=cfg.batch_size, iterations=cfg.iterations, eval_every=cfg.eval_every,
            update=cfg.update, gamma=cfg.gamma, local_steps=max(1, cfg.agwu_local_steps),
            lr_schedule=cfg.lr_schedule,
            lease=2 * cfg.gradients_per_push, state=ckpt.server if ckpt else None,
            allocation=dict(n_samples=self.n_samples, workers=cfg.workers,
                            batch_size=cfg.batch_size, mode=cfg.allocation, seed=cfg.seed),
            allocation_state=ckpt.allocator if ckpt else None)
        self.allocations_seen = 0
        self.where["server"] = self._ask(self.server.ready.remote(), "starting the server")
        for w in self.lost:  # workers gone for good hold no one back
            self._ask(self.server.lose.remote(w), "removing a lost worker")

    def _launch(self, workers) -> None:
        cfg = self.cfg
        for w in workers:
            ref = self.workers[w].run.remote(self.server, cfg.bound,
                                             cfg.timeout_s, cfg.agwu_local_steps,
                                             cfg.gradients_per_push, cfg.overlap_pushes,
                                             w in cfg.hogged_workers)
            self.runs[ref] = w

    def _ask(self, ref, doing: str):
        """A bounded wait on the server (or the allocator it hosts); its death raises
        ServerLost."""
        try:
            return _get(ref, self.cfg.timeout_s, doing)
        except ClusterError as e:
            if isinstance(e.__cause__, ray.exceptions.RayActorError):
                raise ServerLost(f"the parameter server died while {doing}") from e
            raise

    def kill_actors(self) -> None:
        for handle in [self.server, *self.workers]:
            if handle is not None:
                ray.kill(handle)
        self.eval_thread.shutdown(cancel_futures=True)

    def _kill(self, handle, where: tuple[str, int]) -> None:
        """Fault injection: SIGKILL the actor's process (the real thing, mid-step); on
        another node, where the driver cannot signal it, let Ray kill it."""
        node, pid = where
        if node == ray.get_runtime_context().get_node_id():
            os.kill(pid, signal.SIGKILL)
        else:
            ray.kill(handle, no_restart=False)

    # ------------------------------------------------------------------ the loop
    def drive(self) -> tuple[dict, Any]:
        survivors = range(self.cfg.workers)
        while survivors:
            self._launch(survivors)
            self.status = self._ask(self.server.status.remote(), "asking the server for status")
            while self.runs:
                try:
                    self._poll()
                except ServerLost:
                    self._restart_server()
            # A worker lost after the others had finished gave its unused iterations back:
            # the survivors go back to work for them.
            survivors = [w for w in range(self.cfg.workers) if w not in self.lost] \
                if self.status["budget_remaining"] else []
        return self._finish()

    def _poll(self) -> None:
        self._inject_faults()
        done, _ = ray.wait(list(self.runs), num_returns=len(self.runs), timeout=POLL_S)
        for ref in done:
            self._run_ended(ref)
        self.status = self._ask(self.server.status.remote(), "asking the server for status")
        self.snapshots += self._ask(self.server.take_snapshots.remote(), "taking snapshots")
        if not self.cfg.defer_eval:
            self._send_snapshots()
        self._collect(block=False)
        for change in self._ask(self.server.allocation_changes.remote(self.allocations_seen),
                                "asking the allocator for changes"):
            self.log.write("allocation", wall_time_s=self._now(),
                           iterations=self.status["iterations"], **change)
            self.allocations_seen += 1
        self._maybe_checkpoint()
        s = self.status
        self.progress.update(time.time() - self.t0, s["iterations"], s["samples"],
                             self.last_acc, s["loss"], s["max_staleness_observed"])

    def _send_snapshots(self) -> None:
        for snap in self.snapshots:
            self.pending_evals[self.eval_thread.submit(self.evaluator.evaluate, snap.weights)] = snap
        self.snapshots.clear()

    def _collect(self, block: bool) -> None:
        """Log every finished evaluation (every snapshot taken so far if `block`)."""
        if block:
            self._send_snapshots()
        if not self.pending_evals:
            return
        if block:
            wait_futures(self.pending_evals, return_when=FIRST_EXCEPTION)
        # One thread evaluates in order: the finished ones are the first few.
        for future in [f for f in self.pending_evals if f.done()]:
            snap = self.pending_evals.pop(future)
            loss, acc = future.result()
            t = snap.time - self.t0
            self.log.write("eval", wall_time_s=round(t, 3), iterations=snap.iterations,
                           updates=snap.version, samples=snap.samples, val_loss=loss,
                           val_accuracy=acc, ideal_samples_per_s=self.cluster.ideal_samples_per_s(t))
            self.last_acc = acc
            self.best = acc if self.best is None else max(self.best, acc)
            if self.time_to_target is None and acc >= self.cfg.target_accuracy:
                self.time_to_target = t

    # ------------------------------------------------------------------ checkpoints
    def _maybe_checkpoint(self) -> None:
        if self.next_checkpoint is None or self.status["iterations"] < self.next_checkpoint:
            return
        self._collect(block=True)  # the evaluations the checkpoint's metrics should hold
        # The allocator first: data handed out after its state was taken is handed out again
        # on resume (trained twice at worst), where the other order could skip samples.
        allocator = self._ask(self.server.allocation_state.remote(), "saving the allocation")
        server = self._ask(self.server.state_dict.remote(), "saving the server's state")
        it = server["applied"]
        if not bool(server["weights"].isfinite().all()):
            raise DivergedError(f"the global weights became non-finite by iteration {it}; lower "
                                f"--lr (the last good checkpoint stays in {self.cfg.out_dir})")
        # The file first, then the record that announces it: a crash between the two loses
        # only the record, never a checkpoint that metrics.jsonl says was saved.
        ckpt = Checkpoint(identity=identity(self.cfg), num_params=server["weights"].numel(),
                          server=server, allocator=allocator,
                          elapsed_s=time.time() - self.t0,
                          metrics_lines=len(self.log.records) + 1, best_val_accuracy=self.best,
                          time_to_target_s=self.time_to_target)
        ckpt.save(self.cfg.out_dir)
        self.log.write("checkpoint", wall_time_s=self._now(), iterations=it)
        self.checkpoint = ckpt
        self.next_checkpoint = (it // self.every + 1) * self.every

    # ------------------------------------------------------------------ faults
    def _inject_faults(self) -> None:
        for w, at in list(self.kills.items()):
            if self.status["clocks"][w] >= at:
                del self.kills[w]
                self._kill(self.workers[w], self.where[w])
        if self.server_kill is not None and self.status["iterations"] >= self.server_kill:
            self.server_kill = None
            # Fresh figures just before the kill, so that the lost iterations are counted
            self.status = self._ask(self.server.status.remote(), "asking the server for status")
            self._kill(self.server, self.where["server"])

    def _run_ended(self, ref) -> None:
        w = self.runs.pop(ref)
        try:
            self.reports.append(_get(ref, self.cfg.timeout_s, "collecting a worker's report"))
            return
        except ClusterError as e:
            if not isinstance(e.__cause__, ray.exceptions.RayActorError):
                if not self._server_alive():
                    raise ServerLost("the parameter server died") from e
                raise  # a worker that failed (diverged, broke) stops the run now
        self._worker_died(w)

    def _server_alive(self) -> bool:
        try:
            self._ask(self.server.status.remote(), "asking the server for status")
            return True
        except ServerLost:
            return False

    def _worker_died(self, w: int) -> None:
        """The survivors go on without it (docs/consistency.md); with restarts left, Ray
        restarts its process and it rejoins at the slowest live clock."""
        self.log.write("membership", event="worker_lost", worker=w, wall_time_s=self._now(),
                       iterations=self.status["iterations"], clock=self.status["clocks"][w])
        self._ask(self.server.lose.remote(w), "removing a lost worker")
        if self.restarts_left[w] == 0:
            self.lost.append(w)
            return
        self.restarts_left[w] -= 1
        self.worker_restarts += 1
        self.where[w] = self._await_restart(w)
        self._ask(self.server.readmit.remote(w), "readmitting a worker")
        self._launch([w])
        self.log.write("membership", event="worker_restarted", worker=w,
                       wall_time_s=self._now(), iterations=self.status["iterations"])

    def _await_restart(self, w: int) -> tuple[str, int]:
        """Wait for Ray to bring worker `w`'s process back (its constructor runs again)."""
        deadline = time.time() + self.cfg.timeout_s
        while True:
            try:
                return _get(self.workers[w].ready.remote(), self.cfg.timeout_s,
                            f"restarting worker {w}")
            except ClusterError as e:
                if not isinstance(e.__cause__, ray.exceptions.ActorUnavailableError) or \
                        time.time() > deadline:
                    raise
                time.sleep(POLL_S)

    def _restart_server(self) -> None:
        """Start a server and an allocator from the last checkpoint and send the workers back
        to work; the iterations since that checkpoint are lost and counted."""
        cfg, ckpt = self.cfg, self.checkpoint
        at = max(self.status["iterations"], ckpt.iterations if ckpt else 0)  # at least
        self.log.write("membership", event="server_lost", wall_time_s=self._now(), iterations=at)
        if ckpt is None:
            raise ClusterError(f"the parameter server died at iteration {at} and there is no "
                               "checkpoint to restart it from (use --out and --checkpoint-every)")
        if self.server_restarts == MAX_SERVER_RESTARTS:
            raise ClusterError(f"the parameter server died {MAX_SERVER_RESTARTS + 1} times")
        self.server_restarts += 1
        # Each worker's next call to the dead server fails; wait until every run has ended.
        refs, dead = list(self.runs), []
        ray.wait(refs, num_returns=len(refs), timeout=cfg.timeout_s)
        for ref in refs:
            w = self.runs.pop(ref)
            try:
                self.reports.append(_get(ref, cfg.timeout_s, "collecting a worker's report"))
            except ClusterError as e:
                if isinstance(e.__cause__, ray.exceptions.RayActorError):
                    dead.append(w)  # the worker died too
        ray.kill(self.server)  # and the allocator it hosts
        self.pending_evals.clear()  # snapshots of the lost timeline
        self.snapshots.clear()
        self._start_server()
        lost = max(0, at - ckpt.iterations)
        self.iterations_lost += lost
        self.log.write("membership", event="server_restarted", wall_time_s=self._now(),
                       iterations=ckpt.iterations, iterations_lost=lost)
        self.status = self._ask(self.server.status.remote(), "asking the server for status")
        self._launch([w for w in range(cfg.workers) if w not in self.lost and w not in dead])
        for w in dead:
            self._worker_died(w)

    # ------------------------------------------------------------------ the results
    def _finish(self) -> tuple[dict, Any]:
        cfg = self.cfg
        wall = time.time() - self.t0
        # The final evaluation of the final weights, after the clock has stopped.
        status = self._ask(self.server.status.remote(), "asking the server for status")
        weights = self._ask(self.server.weights.remote(), "fetching the final weights")
        # The workers are done: what is left to evaluate may use every core.
        self.eval_thread.submit(torch.set_num_threads, os.cpu_count() or 1)
        self._collect(block=True)
        final_loss, final_acc = self.eval_thread.submit(self.evaluator.evaluate, weights).result()
        self.log.write("final", wall_time_s=round(wall, 3), iterations=status["iterations"],
                       updates=status["updates"], samples=status["samples"],
                       val_loss=final_loss, val_accuracy=final_acc)
        best = final_acc if self.best is None else max(self.best, final_acc)
        self.progress.update(wall, status["iterations"], status["samples"], final_acc,
                             status["loss"], status["max_staleness_observed"], force=True)
        self.reports = WorkerReport.merge(self.reports)
        busy = sum(r.total_s for r in self.reports)
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
            "time_to_target_s": self.time_to_target,
            "max_staleness_observed": status["max_staleness_observed"],
            "max_version_lag": status["max_version_lag"],
            "throughput_samples_per_s": status["samples"] / wall if wall > 0 else 0.0,
            "wait_fraction": sum(r.wait_s for r in self.reports) / busy if busy > 0 else 0.0,
            "ideal_throughput_samples_per_s": self.cluster.mean_ideal_samples_per_s(wall),
            "speeds": list(self.cluster.speeds) if self.cluster.speeds else None,
            "reference_s_per_sample": self.cluster.reference_s_per_sample,
            "allocation": cfg.allocation,
            "update": cfg.update,
            "allocation_changes": sum(r["kind"] == "allocation" for r in self.log.records),
            "staleness_histogram": status["staleness_histogram"],
            "version_lag_histogram": status["version_lag_histogram"],
            "per_worker": [
                {"worker": r.worker, "iterations": r.iterations, "samples": r.samples,
                 "compute_s": r.compute_s, "comm_s": r.comm_s, "wait_s": r.wait_s,
                 "total_s": r.total_s}
                for r in self.reports
            ],
            "workers_lost": self.lost,
            "worker_nodes": len({self.where[w][0] for w in range(cfg.workers)}),
            "worker_restarts": self.worker_restarts,
            "server_restarts": self.server_restarts,
            "resumed_from_iterations": self.resumed_from,
            "iterations_lost": self.iterations_lost,
            "start_time": self.t0,
            "config": cfg.to_dict(),
        }
        return summary, weights
