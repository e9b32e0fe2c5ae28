"""The worker's gradient buffers and its training loop against an in-process server."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hetsync.core.partitioning import Allocator
from hetsync.core.server import ParameterServer
from hetsync.core.wire import FlatModel, load_into, params_to_vector
from hetsync.core.worker import ChunkFeed, PushPolicy, Worker, run_worker
from hetsync.data import synthetic
from hetsync.models import LeNet5, build_model
from hetsync.run.evaluation import evaluate

from ..fakes import LocalAllocatorClient, LocalServerClient


def test_flat_buffers_hold_the_true_gradient():
    data = synthetic(16, seed=3)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    reference = build_model(LeNet5, 0)
    F.cross_entropy(reference(x), y).backward()
    model = build_model(LeNet5, 0)
    flat = FlatModel(model)
    for _ in range(2):  # the second pass checks that zeroing keeps grads inside the buffer
        flat.zero_grad()
        F.cross_entropy(model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()]).numpy()
    np.testing.assert_allclose(flat.grad_vector(), expected, rtol=1e-5, atol=1e-7)
    flat.load(np.zeros_like(flat.grad_vector()))
    assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())


def test_the_feeds_first_step_is_consumed_but_not_timed():
    """The first step carries one-time costs: its samples leave the pool, its time is not
    taken for the worker's speed."""
    alloc = Allocator(1000, workers=1, batch_size=8, mode="idpa", seed=0, probe_iterations=2)
    feed = ChunkFeed(LocalAllocatorClient(alloc), 0)
    for seconds in (5.0, 0.1, 0.1, 0.1):  # a slow first step, then steady ones
        feed.record(len(feed.next_batch()), seconds)
    # taking up the third chunk requests the fourth, reporting steps 3 and 4 (the request
    # for the third reported step 2 alone): 8 samples / 0.1 s each time, never the 5 s
    feed.next_batch()
    assert alloc.rates[0] == 8 / 0.1
    # every sample of the first two chunks reported consumed, the first step's included:
    # outstanding are the third and fourth chunks, 8 batches of 8 each
    assert [len(i) for i, _ in alloc.outstanding[0]] == [64, 64]
    feed = ChunkFeed(LocalAllocatorClient(alloc := Allocator(1000, workers=1, batch_size=8,
                                                             mode="idpa", seed=0)), 0)
    for seconds in (5.0, 0.1):
        feed.record(len(feed.next_batch()), seconds)
    feed.next_batch()
    assert alloc.rates[0] == 8 / 0.1  # the first chunk: only its second step timed


def test_a_step_is_timed_from_the_moment_it_has_its_batch(monkeypatch):
    """Waiting for a chunk is the system's time, not the node's compute: IDPA must not
    measure a worker slow because the allocator answered late."""
    import hetsync.core.worker as worker_module

    now = [0.0]

    def clock():  # a step's compute: 1 ms between its two readings
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(worker_module.time, "time", clock)

    class SlowAllocator(LocalAllocatorClient):
        def get(self, handle):
            now[0] += 5.0  # every chunk takes 5 s to arrive
            return handle

    alloc = Allocator(64, workers=1, batch_size=8, mode="idpa", seed=0, probe_iterations=1)
    worker = Worker(0, LeNet5, synthetic(64, seed=0), seed=0)
    worker.feed = ChunkFeed(SlowAllocator(alloc), 0)
    for _ in range(3):  # each step takes a chunk: the first, untimed, then two timed
        worker.compute_gradient()
    worker.feed.next_batch()  # reports the third step
    assert alloc.rates[0] == pytest.approx(8 / 0.001)  # with the 5 s wait counted: 1.6


def test_run_worker_spends_exactly_the_budget_and_learns():
    data = synthetic(512, seed=0)
    model = build_model(LeNet5, 0)
    ps = ParameterServer(weights=params_to_vector(model), workers=1, bound=3, barrier=False,
                         lr=0.05, momentum=0.5, batch_size=32, iterations=60, eval_every=20)
    alloc = Allocator(512, workers=1, batch_size=32, mode="idpa", seed=0)
    worker = Worker(0, LeNet5, data, seed=0)
    report = run_worker(worker, LocalServerClient(ps), LocalAllocatorClient(alloc), bound=3,
                        policy=PushPolicy(gradients=2, overlap=True))
    assert report.iterations == 60 and ps.applied == 60 and ps.budget.remaining == 0
    # gradients travel in pairs: the second of each pair was computed before the first was
    # applied (this in-process client answers each push at once, so nothing else is missed)
    assert ps.stats.max_staleness == 0 and ps.stats.lag == {0: 30, 1: 30}
    assert len(ps.take_snapshots()) == 3
    before = evaluate(model, data)[1]
    load_into(model, ps.weights())
    after = evaluate(model, data)[1]
    assert after > max(0.5, before + 0.3), (before, after)  # chance level is 0.1


def test_agwu_worker_pushes_weights_every_k_steps():
    data = synthetic(512, seed=0)
    model = build_model(LeNet5, 0)
    ps = ParameterServer(weights=params_to_vector(model), workers=1, bound=None, barrier=False,
                         lr=0.05, momentum=0.5, batch_size=32, iterations=40, eval_every=40,
                         update="agwu", gamma=0.9, steps_per_push=8)
    alloc = Allocator(512, workers=1, batch_size=32, mode="uniform", seed=0)
    worker = Worker(0, LeNet5, data, seed=0)  # its local rate comes with the server's replies
    report = run_worker(worker, LocalServerClient(ps), LocalAllocatorClient(alloc), bound=None,
                        policy=PushPolicy(local_steps=8))
    assert report.iterations == 40 and ps.applied == 40 and ps.version == 5
    # one worker, lag 0, b = 1: the merge adopts the replica, so server == worker weights
    np.testing.assert_allclose(ps.weights(), worker.flat.weights.numpy(), rtol=1e-6)


def test_gradients_travel_in_pairs_only_where_the_extra_lag_fits_the_bound():
    def policy(workers, sync, bound, update="sgd"):
        return PushPolicy.choose(sync, bound, workers, update, local_steps=8)

    assert policy(1, "ssp", 3).gradients == 2
    assert policy(4, "ssp", 3).gradients == 1
    assert policy(1, "asp", None).gradients == 1
    assert policy(1, "bsp", 0).gradients == 1
    assert policy(1, "ssp", 3, "agwu") == PushPolicy(1, False, 8)
    # a push in flight during the next gradient only where 2N-1 versions fit the bound
    assert policy(2, "ssp", 3).overlap and not policy(3, "ssp", 3).overlap
    assert not policy(2, "asp", None).overlap
