"""The benchmark machinery without runs: the report's statistics say what the rows say."""

import numpy as np

from hetsync.bench.harness import Bench, against, middle_third_slowdown, paced_steps, speeds_for
from hetsync.data import synthetic
from hetsync.emulation import StepPacer
from hetsync.models import LeNet5, build_model


def test_report_statistics_follow_the_rows(tmp_path):
    b = Bench("paper", tmp_path, None, quick=True)
    for seed, (t, acc) in enumerate([(10.0, 0.9), (14.0, 0.92)]):
        b.record("a", "bsp n=4", seed, {"wall_time_s": t, "final_val_accuracy": acc,
                                        "time_to_target_s": None})
    mean, spread, n = b.stats("a", "wall_time_s")["bsp n=4"]
    assert (mean, spread, n) == (12.0, 2.0, 2)
    table = b.table("a", ("wall_time_s", "time_to_target_s"))
    assert "| bsp n=4 | 12 ± 2 | not reached |" in table
    assert b.write_csv().read_text().splitlines()[0].startswith("suite,part,case,seed")


def test_emulated_cluster_shapes():
    assert speeds_for(8) == (1, 1, 2, 4, 1, 1, 2, 4)
    assert middle_third_slowdown(4, 1200) == "0@100-200:4"


def test_a_ratio_says_whether_it_meets_its_target():
    assert against(4.0, 2.0, 2) == "2.00x (target >= 2x: met)"
    assert against(3.9, 2.0, 2) == "1.95x (target >= 2x: MISSED)"
    assert "not measured" in against(None, 2.0, 0.7)


def test_the_plain_loop_runs_its_steps_and_a_paced_one_takes_its_emulated_time():
    data = synthetic(256, seed=0)
    model = build_model(LeNet5, 0)
    rng = np.random.default_rng(0)
    assert paced_steps(model, data, 16, rng, steps=3) == 48
    pacer = StepPacer(0, speed=1.0, reference_s_per_sample=0.002)
    import time

    t0 = time.time()
    samples = paced_steps(model, data, 16, rng, until=t0 + 0.2, pacer=pacer)
    assert 16 <= samples <= 16 * 7  # at most 0.2 s / 32 ms steps, plus the one under way


def test_the_capacity_suite_times_the_update_and_a_memory_copy_in_process():
    from hetsync.bench.capacity import UPDATE_BYTES_PER_PARAM, memcpy_gb_per_s, update_s

    assert memcpy_gb_per_s(100_000, repeats=3) > 0.1
    assert 0 < update_s(100_000, calls=3) < 1.0 and UPDATE_BYTES_PER_PARAM == 20
