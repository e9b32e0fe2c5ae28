"""The worker's gradient buffers and its training loop against an in-process server."""

import numpy as np
import torch
import torch.nn.functional as F

from hetsync.data import synthetic
from hetsync.models import LeNet5, build_model
from hetsync.partitioning import Allocator
from hetsync.server import ParameterServer
from hetsync.validation import evaluate
from hetsync.wire import FlatModel, params_to_vector, vector_to_params
from hetsync.worker import Worker, run_worker


class LocalClient:
    """The server client interface over a plain ParameterServer, in one thread."""

    def __init__(self, ps):
        self.ps = ps

    def join(self, worker):
        return self.ps.join(worker)

    def push(self, worker, contributions):
        for clock, version, payload, samples, loss, steps, accuracy in contributions:
            self.ps.submit(worker, clock, version, payload.copy(), samples, loss, steps,
                           accuracy)
        return self.ps.reply(worker, want=len(contributions))

    def wait_until_allowed(self, worker, clock):
        assert self.ps.may_start(worker, clock).proceed
        return self.ps.reply(worker, want=0)

    def get(self, handle):
        return handle

    def leave(self, worker):
        self.ps.leave(worker)


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


class LocalAllocator:
    def __init__(self, allocator):
        self.allocator = allocator

    def next_chunk(self, worker, samples, seconds):
        self.allocator.report(worker, samples, seconds)
        return self.allocator.next_chunk(worker)

    def give_back(self, worker, indices, epoch):
        self.allocator.give_back(worker, indices, epoch)

    def get(self, handle):
        return handle


def test_run_worker_spends_exactly_the_budget_and_learns():
    data = synthetic(512, seed=0)
    model = build_model(LeNet5, 0)
    ps = ParameterServer(weights=params_to_vector(model), workers=1, bound=3, barrier=False,
                         lr=0.05, momentum=0.5, batch_size=32, iterations=60, eval_every=20)
    alloc = Allocator(512, workers=1, batch_size=32, mode="idpa", seed=0)
    worker = Worker(0, LeNet5, data, seed=0)
    report = run_worker(worker, LocalClient(ps), LocalAllocator(alloc), bound=3, push_every=2,
                        overlap=True)
    assert report.iterations == 60 and ps.applied == 60 and ps.budget.remaining == 0
    # gradients travel in pairs: the second of each pair was computed before the first was
    # applied (this in-process client answers each push at once, so nothing else is missed)
    assert ps.stats.max_gap == 0 and ps.stats.lag_hist == {0: 30, 1: 30}
    assert len(ps.take_snapshots()) == 3
    before = evaluate(model, data)[1]
    vector_to_params(ps.weights(), model)
    after = evaluate(model, data)[1]
    assert after > max(0.5, before + 0.3), (before, after)  # chance level is 0.1


def test_agwu_worker_pushes_weights_every_k_steps():
    data = synthetic(512, seed=0)
    model = build_model(LeNet5, 0)
    ps = ParameterServer(weights=params_to_vector(model), workers=1, bound=None, barrier=False,
                         lr=0.05, momentum=0.5, batch_size=32, iterations=40, eval_every=40,
                         update="agwu", gamma=0.9, local_steps=8)
    alloc = Allocator(512, workers=1, batch_size=32, mode="uniform", seed=0)
    worker = Worker(0, LeNet5, data, seed=0)  # its local rate comes with the server's replies
    report = run_worker(worker, LocalClient(ps), LocalAllocator(alloc), bound=None,
                        local_steps=8)
    assert report.iterations == 40 and ps.applied == 40 and ps.version == 5
    # one worker, lag 0, b = 1: the merge adopts the replica, so server == worker weights
    np.testing.assert_allclose(ps.weights(), worker.flat.weights.numpy(), rtol=1e-6)


def test_gradients_travel_in_pairs_only_where_the_extra_lag_fits_the_bound():
    from hetsync.config import TrainConfig

    assert TrainConfig(workers=1, sync="ssp", staleness=3).gradients_per_push == 2
    assert TrainConfig(workers=4, sync="ssp", staleness=3).gradients_per_push == 1
    assert TrainConfig(workers=1, sync="asp").gradients_per_push == 1
    assert TrainConfig(workers=1, sync="bsp").gradients_per_push == 1
    assert TrainConfig(workers=1, sync="ssp", update="agwu").gradients_per_push == 1
