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
    assert 0 < s["samples_to_target"] <= 200 * 32 and s["samples_to_target"] % 32 == 0
    assert 0 < s["throughput_samples_per_s"] < s["ideal_throughput_samples_per_s"]


@pytest.mark.parametrize("synchronous", [True, False])
def test_plain_ray_parameter_server_baseline(ray_local, synchronous):
    s = ray_ps_train(TrainConfig.from_flat(**PEER), synchronous)
    assert s["iterations"] == 200 and s["final_val_accuracy"] >= 0.95
    assert 0 < s["time_to_target_s"] <= s["wall_time_s"]
    assert 0 < s["samples_to_target"] <= 200 * 32 and s["samples_to_target"] % 32 == 0


@pytest.mark.parametrize("transport", ["gloo", "ray"])
def test_push_probes_measure_one_servers_capacity(ray_local, transport):
    import numpy as np

    from hetsync.cluster.handles import ServerHandle
    from hetsync.cluster.probes import probe_capacity

    server = ServerHandle(30.0, server=dict(weights=np.zeros(1000, np.float32), workers=2,
                                            bound=None, barrier=False, lr=0.01, momentum=0.5,
                                            batch_size=64, iterations=10**9, eval_every=10**9),
                          allocation=dict(n_samples=64, workers=2, batch_size=64,
                                          mode="uniform", seed=0))
    try:
        got = probe_capacity(server, clients=2, size=1000, seconds=0.5, transport=transport)
        status = server.status()
    finally:
        server.kill()
    assert got["clients"] == 2 and got["pushes_per_s"] > 10
    assert (got["pair_connect_ms"] is not None) == (transport == "gloo")
    assert got["server_cpu_ms_per_push"] > 0 and got["client_cpu_ms_per_push"] > 0
    assert status.iterations >= got["pushes_per_s"] * 0.5  # every push was applied


def test_memory_probes_stream_at_once(ray_local):
    from hetsync.bench.capacity import _server_args
    from hetsync.cluster.probes import together_gb_per_s

    sizes = []

    def server(n):
        sizes.append(n)
        return _server_args(n, 1)["server"]

    assert together_gb_per_s(10_000, processes=2, seconds=0.2) > 0
    assert together_gb_per_s(10_001, processes=2, seconds=0.2, server=server) > 0
    assert sizes == [5001]  # each process streams its shard's share


def test_ddp_with_batches_in_proportion_to_speed_trains_the_same_global_batch():
    s = ddp_train(TrainConfig.from_flat(**{**PEER, "speeds": (1, 4)}), proportional=True)
    assert s["iterations"] == 200 and s["final_val_accuracy"] >= 0.95
    assert 0 < s["time_to_target_s"] <= s["wall_time_s"]
