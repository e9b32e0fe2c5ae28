"""The staleness gate and clock table, driven without Ray."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hetsync.core.consistency import ClockTable, ConsistencyController, Membership, StalenessGate


def test_gate_bounds():
    assert StalenessGate(0).decide(0, 0).proceed
    assert not StalenessGate(0).decide(1, 0).proceed
    assert StalenessGate(3).decide(3, 0).proceed
    verdict = StalenessGate(3).decide(4, 0)
    assert not verdict.proceed and "bound is 3" in verdict.reason
    assert StalenessGate(None).decide(10**6, 0).proceed


def test_left_workers_do_not_hold_others_back():
    members = Membership(3)
    table = ClockTable(members)
    table.advance(0)
    table.advance(1)
    assert table.min_clock() == 0
    members.leave(2)
    assert table.min_clock() == 1


def test_rejoin_never_lowers_min_clock():
    members = Membership(2)
    table = ClockTable(members)
    for _ in range(5):
        table.advance(0)
    table.advance(1)
    members.leave(1)
    assert table.join(1) == 5  # back at the slowest live clock, not its own (1)
    assert table.min_clock() == 5 and members.live == {0, 1}


def test_a_restored_controller_revives_departed_workers_at_the_slowest_clock():
    a = ConsistencyController(Membership(3), bound=2)
    for w in (0, 0, 1):
        a.record_applied(w)
    a.leave(2)
    b = ConsistencyController(Membership(3), bound=2)
    b.load_state_dict(a.state_dict())
    assert b.live == {0, 1, 2} and b.table.clocks == {0: 2, 1: 1, 2: 1}


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
    ctl = ConsistencyController(Membership(workers), bound)
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
                assert ctl.may_start(clock[w]).proceed  # stale views are conservative
                computing[w] = True
        elif action == "finish" and computing[w]:
            gap = ctl.record_applied(w)
            if bound is not None:
                assert gap <= bound
            computing[w] = False
            clock[w] += 1
            known_min[w] = ctl.table.min_clock()
        elif action == "leave" and not computing[w]:
            ctl.leave(w)
            left[w] = True
        assert ctl.table.min_clock() >= last_min
        last_min = ctl.table.min_clock()
        live = [i for i in range(workers) if not left[i]]
        if live:
            assert any(computing[i] or ctl.may_start(clock[i]).proceed for i in live)
