"""Update rules: AGWU's merge and attenuation."""

import numpy as np
import pytest
import torch

from hetsync.core.updates import AgwuRule


def test_agwu_attenuates_stale_contributions_as_the_formula_says():
    w = torch.nn.Parameter(torch.zeros(3))
    rule = AgwuRule(w, gamma=0.5)
    replica = np.ones(3, np.float32)
    coef = rule.apply(replica, 64, lag=0, worker=0, accuracy=None, live={0, 1})
    assert coef == pytest.approx(0.5)  # b_j = 1/N until both have reported an accuracy
    np.testing.assert_allclose(w.detach().numpy(), 0.5)
    rule.accuracy = {0: 0.9, 1: 0.6}
    before = w.detach().clone()
    coef = rule.apply(replica * 3, 64, lag=2, worker=1, accuracy=0.6, live={0, 1})
    assert coef == pytest.approx(0.5 ** 2 * 0.6 / 1.5)  # gamma**lag * acc_j / sum(acc)
    np.testing.assert_allclose(w.detach().numpy(), before + coef * (3 - before), rtol=1e-6)


def test_agwu_barrier_merge_is_the_accuracy_weighted_average():
    w = torch.nn.Parameter(torch.zeros(2))
    rule = AgwuRule(w, gamma=0.9)
    rule.apply_round([(0, np.array([1.0, 1.0], np.float32), 64, 0.75),
                      (1, np.array([3.0, 3.0], np.float32), 64, 0.25)])
    np.testing.assert_allclose(w.detach().numpy(), [1.5, 1.5])



def test_the_in_place_sgd_step_is_torch_sgd_bit_for_bit_and_reads_pushes_in_place():
    from hetsync.core.updates import _FUSED_SGD, LrSchedule, SgdRule

    rng = np.random.default_rng(0)
    grads = [rng.normal(size=50).astype(np.float32) for _ in range(6)]
    w = torch.zeros(50)
    rule = SgdRule(w, LrSchedule(0.1, 6, "cosine"), momentum=0.9, batch_size=8)
    reference = torch.nn.Parameter(torch.zeros(50))
    # the same kernel as the rule: torch's fused SGD where the build has it
    opt = torch.optim.SGD([reference], lr=0.1, momentum=0.9, fused=_FUSED_SGD is not None)
    for k, g in enumerate(grads):
        g.flags.writeable = False  # as pushes arrive through Ray
        rule.apply(g, 8, 0, 0, None, {0})
        opt.param_groups[0]["lr"] = LrSchedule(0.1, 6, "cosine").at(k)
        reference.grad = torch.from_numpy(g.copy())
        opt.step()
        assert torch.equal(w, reference.detach())
    assert rule.done == 6


def _scaled_reference(grads, samples, batch, momentum, schedule="cosine"):
    """torch.optim.SGD on each gradient scaled by its samples / batch: what a loss scaled so
    that every sample counts alike gives."""
    from hetsync.core.updates import LrSchedule

    reference = torch.nn.Parameter(torch.zeros(grads[0].size))
    opt = torch.optim.SGD([reference], lr=0.1, momentum=momentum)
    for k, (g, n) in enumerate(zip(grads, samples, strict=True)):
        opt.param_groups[0]["lr"] = LrSchedule(0.1, len(grads), schedule).at(k)
        reference.grad = torch.from_numpy(g * (n / batch))
        opt.step()
    return reference.detach()


@pytest.fixture(params=["fused", "unfused"])
def kernel(request, monkeypatch):
    """Both of SgdRule's paths: torch's fused kernel, and the ops for a build without it."""
    from hetsync.core import updates

    if request.param == "unfused":
        monkeypatch.setattr(updates, "_FUSED_SGD", None)
    return request.param


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_a_gradient_counts_by_its_own_samples_not_by_the_next_pushes(momentum, kernel):
    from hetsync.core.updates import LrSchedule, SgdRule

    rng = np.random.default_rng(1)
    samples = [94, 23, 46, 93, 23, 94, 1, 64]  # IDPA's unequal batches, pushed in turn
    grads = [rng.normal(size=40).astype(np.float32) for _ in samples]
    w = torch.zeros(40)
    rule = SgdRule(w, LrSchedule(0.1, len(grads), "cosine"), momentum=momentum, batch_size=64)
    for g, n in zip(grads, samples, strict=True):
        rule.apply(g, n, 0, 0, None, {0})
    torch.testing.assert_close(w, _scaled_reference(grads, samples, 64, momentum))


def test_a_round_steps_on_its_samples_as_its_membership_changes(kernel):
    """BSP: one step per round on the mean weighted by samples, counting the round's samples,
    so a round of 3 workers after rounds of 4 moves the weights by what it holds."""
    from hetsync.core.updates import LrSchedule, SgdRule

    rng = np.random.default_rng(3)
    rounds = [[64, 64, 64, 64], [64, 64, 64, 64], [64, 64, 64], [94, 23], [64, 64, 64, 64]]
    grads = [[rng.normal(size=20).astype(np.float32) for _ in r] for r in rounds]
    w = torch.zeros(20)
    rule = SgdRule(w, LrSchedule(0.1, 5, "constant"), momentum=0.9, batch_size=64)
    means, totals = [], []
    for gs, ns in zip(grads, rounds, strict=True):
        rule.apply_round([(i, g, n, None) for i, (g, n) in enumerate(zip(gs, ns, strict=True))])
        means.append(sum(g * (n / sum(ns)) for g, n in zip(gs, ns, strict=True)))
        totals.append(sum(ns))
    torch.testing.assert_close(w, _scaled_reference(means, totals, 64, 0.9, "constant"))


def test_a_restored_rule_goes_on_exactly_as_if_never_stopped(kernel):
    from hetsync.core.updates import LrSchedule, SgdRule

    rng = np.random.default_rng(2)
    samples = [94, 23, 46, 93, 23, 94]
    grads = [rng.normal(size=30).astype(np.float32) for _ in samples]
    schedule = LrSchedule(0.1, len(grads), "cosine")
    w = torch.zeros(30)
    rule = SgdRule(w, schedule, momentum=0.9, batch_size=64)
    for g, n in zip(grads[:3], samples[:3], strict=True):
        rule.apply(g, n, 0, 0, None, {0})
    resumed = SgdRule(w.clone(), schedule, momentum=0.9, batch_size=64)
    resumed.load_state_dict(rule.state_dict())
    for g, n in zip(grads[3:], samples[3:], strict=True):
        rule.apply(g, n, 0, 0, None, {0})
        resumed.apply(g, n, 0, 0, None, {0})
    assert torch.equal(resumed.w, w)
    torch.testing.assert_close(w, _scaled_reference(grads, samples, 64, 0.9))


def test_a_state_saved_without_the_scale_goes_on_as_it_was_saved():
    """Before the scale was saved the buffer held what it holds now, u / s, and the next step
    took it at momentum m: a resume from such a checkpoint does the same."""
    from hetsync.core.updates import LrSchedule, SgdRule

    rng = np.random.default_rng(4)
    buf, g = (torch.from_numpy(rng.normal(size=10).astype(np.float32)) for _ in range(2))
    w = torch.zeros(10)
    rule = SgdRule(w, LrSchedule(0.1, 10, "constant"), momentum=0.9, batch_size=64)
    rule.load_state_dict({"momentum_buffer": buf, "done": 3})
    rule.apply(g.numpy(), 32, 0, 0, None, {0})
    torch.testing.assert_close(w, -(0.1 * 0.5) * (0.9 * buf + g))


def test_delay_compensation_corrects_a_stale_gradient_as_dc_asgd_a_says():
    """g + lambda0 / sqrt(MS + eps) * g * g * (w - w_pulled), MS the running mean square;
    a fresh gradient and one not computed on the worker's last pulled weights pass as they
    are (both still enter MS)."""
    from hetsync.core.updates import DelayCompensation

    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(size=5).astype(np.float32))
    dc = DelayCompensation(w, strength=4.0)
    dc.replied(0, version=3)
    pulled = w.clone()
    g1 = rng.normal(size=5).astype(np.float32)
    assert dc.correct(g1, 0, base_version=3, version=3) is g1  # fresh: unchanged
    w.add_(torch.from_numpy(rng.normal(size=5).astype(np.float32)))  # others' updates
    g2 = rng.normal(size=5).astype(np.float32)
    got = dc.correct(g2, 0, base_version=3, version=5)
    ms = 0.05 * 0.95 * g1.astype(np.float64) ** 2 + 0.05 * g2.astype(np.float64) ** 2
    expected = g2 + 4.0 / (np.sqrt(ms) + 1e-7) * g2 * g2 * (w.numpy() - pulled.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.array_equal(got, g2)
    g3 = rng.normal(size=5).astype(np.float32)
    assert dc.correct(g3, 0, base_version=2, version=5) is g3  # not on its last pulled weights
    assert dc.correct(g3, 1, base_version=2, version=5) is g3  # never pulled (a rejoin)
    dc.forget(0)
    assert dc.correct(g3, 0, base_version=3, version=5) is g3
    again = DelayCompensation(torch.zeros(5), strength=4.0)
    again.load_state_dict(dc.state_dict())
    assert torch.equal(again.mean_square, dc.mean_square)


def test_delay_compensation_brings_a_stale_gradient_nearer_the_fresh_one():
    """On a loss whose Hessian is the gradients' outer-product diagonal the correction is
    exact to first order: the compensated stale gradient is nearer the gradient at the
    current weights than the stale one is."""
    from hetsync.core.updates import DelayCompensation

    # f(w) = sum(exp(w)): g = exp(w), and the Hessian's diagonal is exp(w) = g; with MS =
    # g*g, lambda_t * g * g = strength * |g|, the Hessian itself at strength 1
    w = torch.full((4,), 0.1)
    dc = DelayCompensation(w, strength=1.0)
    dc.replied(0, version=0)
    stale = torch.exp(w).numpy().copy()
    dc.mean_square.copy_(torch.from_numpy(stale) ** 2)  # as if g had always been g: MS = g*g
    w.sub_(0.2)
    fresh = torch.exp(w).numpy()
    got = dc.correct(stale, 0, base_version=0, version=1)
    assert np.abs(got - fresh).max() < 0.3 * np.abs(stale - fresh).max()
