"""The driver's fault policies, decided without any process to kill."""

import pytest

from hetsync.core.wire import Status
from hetsync.errors import ClusterError
from hetsync.run.faults import MAX_SERVER_RESTARTS, Decision, FaultPlan, RestartPolicy


def _status(iterations, clocks):
    return Status(iterations=iterations, samples=0, updates=0, loss=None,
                  max_staleness_observed=0, max_version_lag=0, clocks=clocks)


def test_each_kill_fires_once_when_its_clock_or_iteration_is_reached():
    plan = FaultPlan({1: 60, 2: 10}, server_kill=150)
    assert plan.workers_due(_status(5, {0: 5, 1: 59, 2: 9})) == []
    assert plan.workers_due(_status(70, {0: 20, 1: 60, 2: 12})) == [1, 2]
    assert plan.workers_due(_status(90, {0: 30, 1: 70, 2: 20})) == []
    assert not plan.server_due(_status(149, {})) and plan.server_due(_status(151, {}))
    assert not plan.server_due(_status(200, {}))


def test_a_lost_worker_is_restarted_while_it_has_restarts_then_left_behind():
    policy = RestartPolicy(workers=3, max_restarts=1)
    assert policy.worker_lost(1) is Decision.RESTART
    assert policy.worker_lost(1) is Decision.LEAVE_BEHIND
    assert policy.gone == [1] and policy.worker_restarts == 1
    assert policy.live(3) == [0, 2]


def test_a_lost_server_restarts_from_a_checkpoint_a_bounded_number_of_times():
    policy = RestartPolicy(workers=2, max_restarts=0)
    with pytest.raises(ClusterError, match="no checkpoint to restart it from"):
        policy.server_lost(40, has_checkpoint=False)
    for _ in range(MAX_SERVER_RESTARTS):
        policy.server_lost(40, has_checkpoint=True)
    assert policy.server_restarts == MAX_SERVER_RESTARTS
    with pytest.raises(ClusterError, match="died 4 times"):
        policy.server_lost(40, has_checkpoint=True)
