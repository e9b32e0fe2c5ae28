"""The peers train for real, on the same emulated cluster and budget as hetsync."""

import pytest

from hetsync.bench.baselines import ddp_train, ray_ps_train
from hetsync.config import TrainConfig

PEER = dict(dataset="synthetic", synthetic_samples=1024, batch_size=32, iterations=200,
            eval_every=50, workers=2, speeds=(1, 2), target_accuracy=0.9, progress=False)


def test_ddp_baseline_trains_the_same_budget_on_the_emulated_cluster():
    s = ddp_train(TrainConfig.from_flat(**PEER))
    assert s["iterations"] == 200 and s["final_val_accuracy"] >= 0.95
    assert 0 < s["time_to_target_s"] <= s["wall_time_s"]
    assert 0 < s["throughput_samples_per_s"] < s["ideal_throughput_samples_per_s"]


@pytest.mark.parametrize("synchronous", [True, False])
def test_plain_ray_parameter_server_baseline(ray_local, synchronous):
    s = ray_ps_train(TrainConfig.from_flat(**PEER), synchronous)
    assert s["iterations"] == 200 and s["final_val_accuracy"] >= 0.95
    assert 0 < s["time_to_target_s"] <= s["wall_time_s"]
