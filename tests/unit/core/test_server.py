"""Update rules, budget and staleness accounting of the plain parameter server."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from hetsync.core.server import IterationBudget, ParameterServer
from hetsync.core.updates import LrSchedule
from hetsync.core.wire import Contribution, FlatModel, params_to_vector
from hetsync.data import synthetic
from hetsync.models import LeNet5, build_model


def _grad(model, x, y):
    flat = FlatModel(model)
    flat.zero_grad()
    F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    return flat.grad_vector().copy()


def _server(weights, workers, barrier, bound, lr=0.1, momentum=0.0, batch=8):
    return ParameterServer(weights=weights, workers=workers, bound=bound, barrier=barrier, lr=lr,
                           momentum=momentum, batch_size=batch, iterations=1000, eval_every=10**6)


def test_bsp_average_equals_one_step_on_concatenated_batch():
    data = synthetic(24, seed=1)
    model = build_model(LeNet5, 0)
    w0 = params_to_vector(model).copy()
    sizes = [8, 4, 12]  # unequal batches: the average must be weighted by batch size
    parts = np.split(np.arange(24), np.cumsum(sizes)[:-1])
    ps = _server(w0, workers=3, barrier=True, bound=0, batch=8)
    for w in range(3):
        ps.join(w)
    for w, idx in enumerate(parts):
        assert ps.version == 0  # nothing applied before the barrier closes
        grad = _grad(build_model(LeNet5, 0), data.x[idx], data.y[idx])
        ps.submit(w, Contribution(0, 0, grad, len(idx), 1.0))
    assert ps.version == 1 and ps.applied == 3

    reference = build_model(LeNet5, 0)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1 * 24 / 8)  # linear scaling rule
    F.cross_entropy(reference(torch.from_numpy(data.x)), torch.from_numpy(data.y)).backward()
    opt.step()
    np.testing.assert_allclose(ps.weights(), params_to_vector(reference), rtol=1e-5, atol=1e-6)
    assert ps.stats.max_staleness == 0


def test_async_apply_records_gap_and_version_lag():
    ps = _server(np.zeros(4, np.float32), workers=2, barrier=False, bound=None)
    ps.join(0)
    ps.join(1)
    g = np.ones(4, np.float32)
    for clock in range(3):  # worker 0 runs three ahead while worker 1 computes on version 0
        ps.submit(0, Contribution(clock, clock, g, 8, 1.0))
    ps.submit(1, Contribution(0, 0, g, 8, 1.0))
    assert ps.stats.max_staleness == 2  # worker 0's gradient of clock 2, applied with worker 1 at 0
    assert ps.stats.max_lag == 3  # worker 1's gradient was computed on version 0, applied at 3
    np.testing.assert_allclose(ps.weights(), -0.4 * np.ones(4), rtol=1e-6)


def test_budget_is_exact_and_returns_unused_tickets():
    b = IterationBudget(5)
    assert b.grant(2) == 2 and b.grant(2) == 2 and b.grant(2) == 1 and b.grant(1) == 0
    b.give_back(1)
    assert b.remaining == 1


def test_leaving_worker_closes_a_bsp_round_and_returns_its_tickets():
    ps = _server(np.zeros(2, np.float32), workers=2, barrier=True, bound=0)
    ps.join(0)
    ps.join(1)
    ps.submit(0, Contribution(0, 0, np.ones(2, np.float32), 8, 1.0))
    assert ps.version == 0
    ps.leave(1)  # worker 1 will not contribute: the round closes with worker 0 alone
    assert ps.version == 1
    assert ps.budget.remaining == 1000 - 4 + 2


def test_cosine_schedule_decays_to_a_tenth_and_the_server_steps_with_it():
    s = LrSchedule(0.1, 100)
    assert s.at(0) == 0.1 and math.isclose(s.at(50), 0.055) and math.isclose(s.at(100), 0.01)
    assert s.at(1000) == s.at(100)  # a resumed run past its budget stays at the floor
    assert LrSchedule(0.1, 100, "constant").at(70) == 0.1
    ps = ParameterServer(weights=np.zeros(2, np.float32), workers=1, bound=None, barrier=False,
                         lr=0.1, momentum=0.0, batch_size=8, iterations=100, eval_every=10**6,
                         lr_schedule="cosine")
    ps.join(0)
    for clock in range(100):
        ps.submit(0, Contribution(clock, clock, np.ones(2, np.float32), 8, 1.0))
    expected = -sum(s.at(k) for k in range(100))  # gradient k steps with the rate at k
    np.testing.assert_allclose(ps.weights(), [expected, expected], rtol=1e-5)
    assert math.isclose(ps.reply(0, want=0).lr, s.at(100), rel_tol=1e-9)  # AGWU's local rate


def test_a_push_waits_for_its_bsp_round_and_a_wait_for_the_slowest_worker():
    ps = _server(np.zeros(2, np.float32), workers=2, barrier=True, bound=0)
    ps.join(0)
    ps.join(1)
    first = ps.push(0, [Contribution(0, 0, np.ones(2, np.float32), 8, 1.0)])
    assert not first.ready() and "no push yet from worker(s) 1" in first.blocker()
    ahead = ps.wait_until_allowed(0, 1)  # clock 1 may not start while worker 1 is at 0
    assert not ahead.ready()
    second = ps.push(1, [Contribution(0, 0, np.ones(2, np.float32), 8, 1.0)])
    assert first.ready() and second.ready() and ahead.ready()
    reply = first.reply()
    assert reply.version == 1 and reply.clock == 1 and reply.min_clock == 1
    np.testing.assert_allclose(reply.weights, ps.weights())


def test_buffers_follow_the_pushes_of_each_update():
    """The one rule (core/wire.py): an update's buffers are the sample-weighted mean of the
    buffers its pushes carry: the pushed ones under SSP, the round's mean under BSP."""
    ssp = _server(np.zeros(2, np.float32), workers=2, barrier=False, bound=3)
    ssp.buffers = np.zeros(3, np.float32)
    ssp.join(0)
    ssp.submit(0, Contribution(0, 0, np.ones(2, np.float32), 8, 1.0,
                               buffers=np.array([1, 2, 3], np.float32)))
    np.testing.assert_array_equal(ssp.buffers, [1, 2, 3])
    bsp = _server(np.zeros(2, np.float32), workers=2, barrier=True, bound=0)
    bsp.join(0)
    bsp.join(1)
    bsp.submit(0, Contribution(0, 0, np.ones(2, np.float32), 8, 1.0,
                               buffers=np.array([1, 1, 1], np.float32)))
    assert bsp.buffers is None  # nothing applied before the round closes
    bsp.submit(1, Contribution(0, 0, np.ones(2, np.float32), 24, 1.0,
                               buffers=np.array([5, 5, 5], np.float32)))
    np.testing.assert_allclose(bsp.buffers, [4, 4, 4])  # (8 * 1 + 24 * 5) / 32
    snap = bsp.snapshot()
    np.testing.assert_allclose(snap.buffers, [4, 4, 4])


def test_a_snapshot_holds_the_weights_after_the_update_it_counts():
    ps = _server(np.zeros(2, np.float32), workers=1, barrier=False, bound=None)
    ps.eval_every = ps._next_snapshot = 2
    ps.join(0)
    for clock in range(2):
        ps.submit(0, Contribution(clock, clock, np.ones(2, np.float32), 8, 1.0))
    (snap,) = ps.take_snapshots()
    assert snap.iterations == 2 and snap.version == 2
    np.testing.assert_array_equal(snap.weights, ps.weights())
