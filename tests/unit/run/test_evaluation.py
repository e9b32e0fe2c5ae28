"""Snapshots evaluated off the training path: in order, timed by their snapshot, with the
best accuracy and the first crossing of the target tracked."""

import numpy as np
import torch

from hetsync.core.wire import Snapshot, params_to_vector
from hetsync.data import synthetic
from hetsync.models import LeNet5, build_model
from hetsync.run.evaluation import EvaluationQueue, Evaluator, evaluate


class Scripted:
    """An evaluator that answers a fixed accuracy per snapshot (its iterations)."""

    def __init__(self, accuracy):
        self.accuracy = accuracy

    def evaluate(self, snap):
        return 1.0 - self.accuracy[snap.iterations], self.accuracy[snap.iterations]


def _snap(it, t):
    return Snapshot(np.zeros(1, np.float32), None, it, it * 10, it, t)


def test_results_come_in_order_with_their_snapshot_times_and_the_target_crossing():
    queue = EvaluationQueue(Scripted({1: 0.5, 2: 0.95, 3: 0.9}), target=0.9, deferred=False)
    queue.add([_snap(1, 101.0), _snap(2, 102.5), _snap(3, 104.0)])
    records = queue.results(t0=100.0, block=True)
    assert [(r["iterations"], r["wall_time_s"]) for r in records] == [(1, 1.0), (2, 2.5),
                                                                       (3, 4.0)]
    assert queue.best == 0.95 and queue.time_to_target == 2.5 and queue.last == 0.9
    queue.close()


def test_deferred_snapshots_wait_until_asked_and_a_lost_timeline_is_forgotten():
    queue = EvaluationQueue(Scripted({1: 0.95, 2: 0.6, 3: 0.92}), target=0.9, deferred=True)
    queue.add([_snap(1, 1.0)])
    assert queue.results(t0=0.0) == []  # nothing evaluated while training
    queue.forget(after=0)  # snapshot 1 belonged to a timeline lost with the server
    queue.add([_snap(2, 2.0), _snap(3, 3.0)])
    assert [r["iterations"] for r in queue.results(t0=0.0, block=True)] == [2, 3]
    assert queue.time_to_target == 3.0 and queue.best == 0.92
    queue.close()


def test_forgetting_a_lost_timeline_keeps_the_snapshots_up_to_its_checkpoint():
    queue = EvaluationQueue(Scripted({1: 0.5, 2: 0.6, 3: 0.7}), target=0.9, deferred=True)
    queue.add([_snap(1, 1.0), _snap(2, 2.0), _snap(3, 3.0)])
    queue.forget(after=2)  # the server restarts from a checkpoint at iteration 2
    assert [r["iterations"] for r in queue.results(t0=0.0, block=True)] == [1, 2]
    queue.close()


def test_the_evaluator_loads_a_snapshot_and_leaves_its_model_in_training_mode():
    data = synthetic(64, seed=0)
    model = build_model(LeNet5, 3)  # other weights than the evaluator's own model
    ev = Evaluator(LeNet5, data)
    snap = Snapshot(params_to_vector(model), None, 0, 0, 0, 0.0)
    assert ev.evaluate(snap) == evaluate(model, data)
    assert ev.model.training and model.training


def test_final_evaluation_uses_every_core_and_leaves_the_callers_threads_alone():
    before = torch.get_num_threads()
    queue = EvaluationQueue(Scripted({7: 0.8}), target=0.9, deferred=True)
    queue.use_all_cores()
    assert queue.thread.submit(torch.get_num_threads).result() >= 1
    assert queue.final(_snap(7, 1.0)) == (1.0 - 0.8, 0.8) and queue.best == 0.8
    assert torch.get_num_threads() == before
    queue.close()
