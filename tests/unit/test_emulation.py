"""Speed emulation and interference windows."""

import time

import pytest

from hetsync.config import TrainConfig
from hetsync.emulation import CpuHog, EmulatedCluster, StepPacer, parse_interference
from hetsync.errors import ConfigError


def test_interference_parsing():
    (w,) = parse_interference("3@10s-20s:4")
    assert (w.worker, w.start, w.end, w.factor, w.unit) == (3, 10.0, 20.0, 4.0, "s")
    assert w.active(15, 0) and not w.active(20, 0) and not w.active(5, 0)
    (w,) = parse_interference("1@500:2")
    assert w.unit == "it" and w.end is None and w.active(0, 500)
    for bad in ("x@1:2", "1@5s-2s:3", "1@5s-9:3", "1@5:0"):
        with pytest.raises(ConfigError):
            parse_interference(bad)


def test_config_checks_speeds_and_interference():
    with pytest.raises(ConfigError, match="3 values for 4 workers"):
        TrainConfig.from_flat(workers=4, speeds="1,2,3")
    with pytest.raises(ConfigError, match="finite and > 0"):
        TrainConfig.from_flat(workers=2, speeds=(1, 0))
    with pytest.raises(ConfigError, match="names worker 5"):
        TrainConfig.from_flat(workers=2, interference="5@1s:2")
    assert TrainConfig.from_flat(workers=2, speeds="1,4").emulation.speeds == (1.0, 4.0)


def test_pacer_stretches_steps_by_speed_and_slowdown():
    pacer = StepPacer(0, speed=2.0, reference_s_per_sample=0.001,
                      interference=parse_interference("0@1:3"))
    t0 = time.time()
    pacer.pace(t0, samples=10, iteration=0)  # 10 * 1 ms * 2 = 20 ms
    t1 = time.time()
    pacer.pace(t1, samples=10, iteration=1)  # 3x slower from iteration 1: 60 ms
    t2 = time.time()
    # lower bounds only: a busy machine may sleep longer, never shorter
    assert t1 - t0 >= 0.019 and t2 - t1 >= 0.059


def test_cpu_hog_runs_pinned_beside_the_worker_and_stops():
    import os

    before = os.sched_getaffinity(0)
    try:
        with CpuHog(0) as hog:
            assert hog.proc.poll() is None
            assert os.sched_getaffinity(hog.proc.pid) == {hog.core} == os.sched_getaffinity(0)
        assert hog.proc.poll() is not None
    finally:
        os.sched_setaffinity(0, before)


def test_ideal_throughput_follows_speeds_and_time_windows():
    cluster = EmulatedCluster((1.0, 2.0), 0.001, parse_interference("1@10s-20s:4"))
    assert cluster.ideal_samples_per_s() == pytest.approx(1000 + 500)
    assert cluster.ideal_samples_per_s(15.0) == pytest.approx(1000 + 125)
    # a 30 s run spends a third of its time in the window
    assert cluster.mean_ideal_samples_per_s(30.0) == pytest.approx((2 * 1500 + 1125) / 3,
                                                                   rel=1e-3)
    assert EmulatedCluster(None, None, ()).pacer(0) is None


def test_loopback_addresses_are_recognised():
    from hetsync.cluster.runtime import _is_loopback

    assert _is_loopback("127.0.0.1:6379") and _is_loopback("localhost:1")
    assert _is_loopback("[::1]:6379")
    assert not _is_loopback("10.1.2.3:6379")


def test_a_stored_calibration_is_reused_and_a_bad_one_refused(tmp_path):
    from hetsync.data import synthetic
    from hetsync.emulation import emulated_cluster, read_calibration, write_calibration
    from hetsync.models import LeNet5, build_model

    path = tmp_path / "calibration.json"
    cfg = TrainConfig.from_flat(workers=2, speeds=(1, 2), calibration=str(path), progress=False)
    write_calibration(path, 1.5e-4, cfg)
    cluster = emulated_cluster(cfg, build_model(LeNet5, 0), synthetic(64))
    assert cluster.real_s_per_sample == 1.5e-4
    assert cluster.reference_s_per_sample == pytest.approx(3e-4)  # x reference_slowdown 2
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a calibration file a run wrote"):
        read_calibration(tmp_path / "bad.json", cfg)
    other = TrainConfig.from_flat(workers=2, speeds=(1, 2), batch_size=32, progress=False)
    with pytest.raises(ConfigError, match="was measured with .*'batch_size': 64"):
        read_calibration(path, other)
