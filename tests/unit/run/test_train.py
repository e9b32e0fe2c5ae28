"""The driver loop with in-process fakes of the actors: real ParameterServer, Allocator and
worker loop, no Ray. Workers run one after another when launched, so the runs use ASP (no
worker waits for another)."""

import numpy as np

from hetsync.cluster.clients import WorkerLost
from hetsync.config import TrainConfig
from hetsync.core.consistency import Membership
from hetsync.core.partitioning import Allocator
from hetsync.core.server import ParameterServer
from hetsync.core.wire import params_to_vector
from hetsync.core.worker import Worker, run_worker
from hetsync.data import load_dataset
from hetsync.emulation import EmulatedCluster
from hetsync.models import build_model, resolve_model
from hetsync.run.evaluation import EvaluationQueue, Evaluator
from hetsync.run.metrics import MetricsLog, Progress
from hetsync.run.tensorboard import RunScalars
from hetsync.run.train import Driver

from ..fakes import LocalAllocatorClient, LocalServerClient


class FakeServer:
    """ServerHandle's interface over the plain objects the server actor hosts."""

    def __init__(self, timeout_s, server, allocation, state=None, allocation_state=None, shards=1):
        members = Membership(server["workers"])
        self.ps = ParameterServer(**server, members=members)
        self.allocator = Allocator(**allocation, members=members)
        self.lost = []

    def status(self):
        return self.ps.status()

    def final(self):
        return self.ps.snapshot()

    def poll(self, since):
        return self.status(), self.ps.take_snapshots(), self.allocator.changes[since:]

    def checkpoint_state(self):
        return {"allocator": self.allocator.state_dict(), "server": self.ps.state_dict()}, \
            self.ps.take_snapshots()

    def lose(self, worker):
        self.lost.append(worker)
        self.ps.leave(worker)
        self.allocator.reclaim(worker)

    def kill(self):
        pass


class FakePool:
    """Runs a launched worker to its end at once; the first run of each worker in `dies`
    ends as a lost process instead."""

    def __init__(self, cfg, factory, data, dies=()):
        self.workers = [Worker(i, factory, data, cfg.training.seed)
                        for i in range(cfg.training.workers)]
        self.dies, self.runs, self.launched = set(dies), {}, []

    def launch(self, worker, server, bound, policy, cpu_hog, transport):
        self.launched.append(worker)
        if worker in self.dies:
            self.dies.discard(worker)
            self.runs[len(self.launched)] = (worker, WorkerLost("the process died"))
            return
        report = run_worker(self.workers[worker], LocalServerClient(server.ps),
                            LocalAllocatorClient(server.allocator),
                            bound, policy)
        self.runs[len(self.launched)] = (worker, report)

    def poll(self):
        ended, self.runs = list(self.runs.values()), {}
        return ended

    def await_restart(self, worker):
        pass

    def nodes(self):
        return 1

    def kill(self):
        pass


def _drive(tmp_path, dies=(), writer=None, server_type=FakeServer, **settings):
    cfg = TrainConfig.from_flat(dataset="synthetic", synthetic_samples=256, batch_size=16,
                                iterations=40, eval_every=10, workers=3, sync="asp",
                                progress=False, **settings)
    train_data, val_data = load_dataset(cfg)
    factory = resolve_model(cfg.training.model, train_data.sample_shape, train_data.classes)
    pool = FakePool(cfg, factory, train_data, dies)
    scalars = RunScalars.for_run(writer, cfg) if writer is not None else None
    log = MetricsLog(None, listener=scalars.record if scalars else None)
    evaluation = EvaluationQueue(Evaluator(factory, val_data), 0.5, deferred=False)
    driver = Driver(cfg, EmulatedCluster(None, None, ()), log, Progress(40, enabled=False),
                    evaluation, None, server_type=server_type,
                    pool_factory=lambda *args: pool, scalars=scalars)
    driver.start(factory, build_model(factory, 0), train_data)
    summary, final = driver.drive()
    if scalars is not None:  # as train() does
        scalars.summary(summary)
    evaluation.close()
    return summary, final, driver, pool, log


def test_the_driver_spends_the_budget_and_reports_every_evaluation(tmp_path):
    summary, final, driver, pool, log = _drive(tmp_path)
    assert summary["iterations"] == 40 and pool.launched == [0, 1, 2]
    assert [r["iterations"] for r in log.records if r["kind"] == "eval"] == [10, 20, 30, 40]
    assert log.records[-1]["kind"] == "final" and final.iterations == 40
    assert sum(r.iterations for r in driver.reports) == 40
    initial = params_to_vector(build_model(resolve_model("lenet5", (1, 28, 28), 10), 0))
    assert not np.array_equal(final.weights, initial)
    assert summary["config"]["consistency"]["sync"] == "asp"


class SnapshotsAfterEachPoll(FakeServer):
    """A server whose snapshots are all taken just after the driver's poll reads it."""

    def poll(self, since):
        return self.status(), [], self.allocator.changes[since:]


def test_snapshots_taken_after_the_last_poll_go_into_the_checkpoint(tmp_path):
    """The checkpoint's state is past them (a resume never takes them again): they come with
    it, and are evaluated before it is announced."""
    _, _, driver, _, log = _drive(tmp_path, server_type=SnapshotsAfterEachPoll,
                                  out=str(tmp_path), checkpoint_every=20)
    kinds = [(r["kind"], r["iterations"]) for r in log.records if r["kind"] != "final"]
    assert kinds == [("eval", 10), ("eval", 20), ("eval", 30), ("eval", 40),
                     ("checkpoint", 40)]
    assert driver.checkpoint.metrics_lines == len(kinds)


def test_a_lost_worker_is_removed_then_restarted_and_the_budget_still_completes(tmp_path):
    summary, _, driver, pool, log = _drive(tmp_path, dies=(0,), max_restarts=1)
    assert driver.server.lost == [0]  # the server and the allocator were told
    assert pool.launched.count(0) == 2  # launched again after its restart
    assert summary["worker_restarts"] == 1 and summary["workers_lost"] == []
    assert summary["iterations"] == 40
    events = [r["event"] for r in log.records if r["kind"] == "membership"]
    assert events == ["worker_lost", "worker_restarted"]


def test_a_lost_worker_without_restarts_is_left_behind(tmp_path):
    summary, _, driver, pool, _ = _drive(tmp_path, dies=(1,))
    assert summary["workers_lost"] == [1] and pool.launched.count(1) == 1
    assert summary["iterations"] == 40 and [r["worker"] for r in summary["per_worker"]] == [0, 2]


def test_the_fakes_stand_for_methods_the_real_handles_have():
    """The driver is tested against the fakes: each of their methods must exist on the real
    handle too, or a driver test passes where a run fails."""
    from hetsync.cluster.handles import ServerHandle, WorkerPool

    for fake, real in ((FakeServer, ServerHandle), (FakePool, WorkerPool)):
        missing = [n for n in vars(fake) if not n.startswith("_") and not hasattr(real, n)]
        assert not missing, (real.__name__, missing)
