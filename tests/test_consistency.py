"""The staleness gate and clock table, driven without Ray."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hetsync.consistency import ClockTable, ConsistencyController, StalenessGate


def test_gate_bounds():
    assert StalenessGate(0).decide(0, 0).proceed
    assert not StalenessGate(0).decide(1, 0).proceed
    assert StalenessGate(3).decide(3, 0).proceed
    verdict = StalenessGate(3).decide(4, 0)
    assert not verdict.proceed and "bound is 3" in verdict.reason
    assert StalenessGate(None).decide(10**6, 0).proceed


def test_left_workers_do_not_hold_others_back():
    table = ClockTable(3)
    table.advance(0)
    table.advance(1)
    assert table.min_clock() == 0
    table.leave(2)
    assert table.min_clock() == 1


def test_rejoin_never_lowers_min_clock():
    table = ClockTable(2)
    for _ in range(5):
        table.advance(0)
        table.advance(1)
    table.leave(1)
    assert table.join(1) == 5
    assert table.min_clock() == 5


@st.composite
def schedules(draw):
    workers = draw(st.integers(1, 5))
    bound = draw(st.one_of(st.none(), st.integers(0, 4)))
    events = draw(st.lists(st.tuples(st.integers(0, workers - 1),
                                     st.sampled_from(["start", "finish", "leave"])),
                           max_size=300))
    return workers, bound, events


@settings(max_examples=300, deadline=None)
@given(schedules())
def test_bound_holds_and_no_deadlock_under_any_interleaving(schedule):
    """Workers decide on a possibly stale view of the slowest clock, as `run_worker` does, and
    ask the server (the true view) only when their own view says wait. Under every schedule:
    each applied gradient is at most `bound` ahead of the slowest live worker, the slowest
    clock never decreases, and some live worker can always make progress."""
    workers, bound, events = schedule
    ctl = ConsistencyController(workers, bound)
    gate = StalenessGate(bound)
    clock = [0] * workers  # next iteration each worker would compute
    known_min = [0] * workers  # each worker's last-heard value of the slowest clock
    computing = [False] * workers
    left = [False] * workers
    last_min = 0
    for w, action in events:
        if left[w]:
            continue
        if action == "start" and not computing[w]:
            if not gate.decide(clock[w], known_min[w]).proceed:
                known_min[w] = ctl.table.min_clock()  # the server's answer
            if gate.decide(clock[w], known_min[w]).proceed:
                assert ctl.may_start(w, clock[w]).proceed  # stale views are conservative
                computing[w] = True
        elif action == "finish" and computing[w]:
            gap = ctl.record_applied(w)
            if bound is not None:
                assert gap <= bound
            computing[w] = False
            clock[w] += 1
            known_min[w] = ctl.table.min_clock()
        elif action == "leave" and not computing[w]:
            ctl.table.leave(w)
            left[w] = True
        assert ctl.table.min_clock() >= last_min
        last_min = ctl.table.min_clock()
        live = [i for i in range(workers) if not left[i]]
        if live:
            assert any(computing[i] or ctl.may_start(i, clock[i]).proceed for i in live)
