"""The benchmark machinery: the peers train for real, and the report's statistics say what
the rows say."""

import pytest

from hetsync.baselines import ddp_train, ray_ps_train
from hetsync.bench import Bench, _against, middle_third_slowdown, speeds_for
from hetsync.config import TrainConfig

PEER = dict(dataset="synthetic", synthetic_samples=1024, batch_size=32, iterations=200,
            eval_every=50, workers=2, speeds=(1, 2), target_accuracy=0.9, progress=False)


def test_ddp_baseline_trains_the_same_budget_on_the_emulated_cluster():
    s = ddp_train(TrainConfig(**PEER))
    assert s["iterations"] == 200 and s["final_val_accuracy"] > 0.5
    assert 0 < s["throughput_samples_per_s"] < s["ideal_throughput_samples_per_s"]


@pytest.mark.ray
@pytest.mark.parametrize("synchronous", [True, False])
def test_plain_ray_parameter_server_baseline(ray_local, synchronous):
    s = ray_ps_train(TrainConfig(**PEER), synchronous)
    assert s["iterations"] == 200 and s["final_val_accuracy"] > 0.5
    assert s["time_to_target_s"] is None or s["time_to_target_s"] <= s["wall_time_s"]


def test_report_statistics_follow_the_rows(tmp_path):
    b = Bench("paper", tmp_path, None, quick=True)
    for seed, (t, acc) in enumerate([(10.0, 0.9), (14.0, 0.92)]):
        b.record("a", "bsp n=4", seed, {"wall_time_s": t, "final_val_accuracy": acc,
                                        "time_to_target_s": None})
    mean, spread, n = b.stats("a", "wall_time_s")["bsp n=4"]
    assert (mean, spread, n) == (12.0, 2.0, 2)
    table = b.table("a", ("wall_time_s", "time_to_target_s"))
    assert "| bsp n=4 | 12 ± 2 | not reached |" in table
    assert "case,part" not in b.write_csv().read_text()  # columns in first-seen order
    assert b.write_csv().read_text().splitlines()[0].startswith("suite,part,case,seed")


def test_emulated_cluster_shapes():
    assert speeds_for(8) == (1, 1, 2, 4, 1, 1, 2, 4)
    assert middle_third_slowdown(4, 1200) == "0@100-200:4"


def test_a_ratio_says_whether_it_meets_its_target():
    assert _against(4.0, 2.0, 2) == "2.00x (target >= 2x: met)"
    assert _against(3.9, 2.0, 2) == "1.95x (target >= 2x: MISSED)"
    assert "not measured" in _against(None, 2.0, 0.7)
