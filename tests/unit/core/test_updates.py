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
