"""The benchmark machinery without runs: the report's statistics say what the rows say."""

from dataclasses import replace

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


def test_a_round_trips_memory_passes_run_against_a_server_in_process(monkeypatch):
    import numpy as np

    from hetsync.bench.capacity import _server_args
    from hetsync.cluster import probes

    trips = []
    monkeypatch.setattr(probes, "_per_second", lambda step, start_at, seconds: trips.append(
        [step() for _ in range(3)]) or 2.0)  # 2 round trips a second
    copies = []
    copy = np.copyto
    monkeypatch.setattr(probes.np, "copyto", lambda dst, src: copies.append(
        (dst, np.array(src))) or copy(dst, src))
    gb_per_s = probes.MemoryProbe().run_round_trips(_server_args(1000, 1)["server"], 0.0, 1.0)
    assert gb_per_s == 2.0 * 2 * 4 * 1000 / 1e9 and len(trips) == 1
    assert len(copies) == 3 * 3  # a round trip: the gradient in, the weights out, the landing
    grad, weights, landed = (c for _, c in copies[-3:])
    assert np.all(grad == np.float32(1e-7)) and np.all(landed == weights)
    assert np.all(weights < 0) and np.all(weights < copies[-5][1])  # each trip stepped


def test_the_shard_measurements_come_in_rounds_side_by_side(tmp_path, monkeypatch):
    from hetsync.bench import capacity
    from hetsync.bench.harness import _bench

    order = []

    def trip(size, calls, transport, shards, with_update):
        assert not with_update  # the rounds use no update timed in-process
        order.append(f"K={shards}")
        return {"push_pull_gb_per_s": {1: 5.0, 2: 6.5 + len(order) / 10, 4: 5.5}[shards]}

    def together(size, processes, seconds, server=None):
        order.append(("passes" if server else "copies") + f" {processes}")
        return {1: 10.0, 2: 13.0}[processes] * (0.5 if server else 1.0)

    monkeypatch.setattr(capacity, "round_trip", trip)
    monkeypatch.setattr(capacity, "together_gb_per_s", together)
    b = _bench("capacity", tmp_path, None, quick=False, settings={})
    rounds = capacity._by_shards(b, calls=1, seconds=0.1)
    assert len(rounds) == capacity.SHARD_ROUNDS[1] == 4
    assert order[:7] == ["K=1", "K=2", "K=4", "copies 1", "passes 1", "copies 2", "passes 2"]
    assert order[7] == "K=1"  # the next round measures every K again
    assert rounds[0] == {"push_pull_gb_per_s_11m_k1": 5.0, "push_pull_gb_per_s_11m_k2": 6.7,
                         "push_pull_gb_per_s_11m_k4": 5.5,
                         "memcpy_sustained_gb_per_s_1_process": 10.0,
                         "round_trip_passes_gb_per_s_11m_k1": 5.0,
                         "memcpy_sustained_gb_per_s_2_processes": 13.0,
                         "round_trip_passes_gb_per_s_11m_k2": 6.5}
    assert [r["push_pull_gb_per_s_11m_k2"] for r in rounds] == [6.7, 7.4, 8.1, 8.8]
    assert sum(r["part"] == "11m by shards" for r in b.rows) == 4 * 7


def test_a_suite_takes_its_run_settings_from_a_file_and_refuses_the_others():
    import pytest

    from hetsync.bench.harness import suite_settings
    from hetsync.errors import ConfigError

    given = suite_settings("peers", {"update": {"lr": 0.05}, "training": {"iterations": 200},
                                     "data": {"dataset": "synthetic"}})
    assert given == {"lr": 0.05, "iterations": 200, "dataset": "synthetic"}
    with pytest.raises(ConfigError, match="bench peers does not take 'sync' from --config"):
        suite_settings("peers", {"consistency": {"sync": "bsp"}})
    with pytest.raises(ConfigError, match="bench capacity takes no run settings .got 'lr'."):
        suite_settings("capacity", {"update": {"lr": 0.05}})
    with pytest.raises(ConfigError, match="unknown setting 'lrate' in .update."):
        suite_settings("paper", {"update": {"lrate": 0.05}})
    with pytest.raises(ConfigError, match="--lr must be a finite number > 0"):
        suite_settings("heterogeneous", {"update": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="bench overhead does not take 'target_accuracy'"):
        suite_settings("overhead", {"output": {"target_accuracy": 0.5}})


def test_the_file_settings_reach_every_run_under_the_runs_own(tmp_path):
    import pytest

    from hetsync.bench.harness import _bench
    from hetsync.bench.overhead import base_config

    settings = {"lr": 0.05, "iterations": 200, "dataset": "synthetic", "batch_size": 16}
    b = _bench("heterogeneous", tmp_path, None, quick=True, settings=settings)
    assert b.budget.iterations == 200 and b.budget.target == 0.95  # the quick target kept
    cfg = b.config(workers=4, sync="bsp", seed=1)
    assert (cfg.update.lr, cfg.training.iterations, cfg.data.dataset, cfg.training.batch_size,
            cfg.consistency.sync, cfg.training.seed) == (0.05, 200, "synthetic", 16, "bsp", 1)
    assert cfg.output.eval_every == 200 // 60 and cfg.output.defer_eval
    assert (tmp_path / "calibration.json").exists()  # measured on the file's model and batch
    with pytest.warns(UserWarning, match="some runs set lr = 0.1 themselves, over --config's"):
        assert b.config(lr=0.1, update="agwu").update.lr == 0.1
    assert "run settings from --config: lr = 0.05" in b.header("t")
    assert "Measured by `hetsync bench heterogeneous --quick` on" in b.header("t")
    two = _bench("heterogeneous", tmp_path, None, quick=True, settings=settings, sweep_seeds=2)
    assert "Measured by `hetsync bench heterogeneous --quick --sweep-seeds 2` on" in two.header("t")
    one = base_config(_bench("overhead", tmp_path, None, quick=True, settings=settings))
    assert (one.training.workers, one.training.iterations, one.update.lr) == (1, 200, 0.05)


def test_bench_print_config_fed_back_with_config_gives_the_same_settings(tmp_path, capsys):
    from hetsync.cli import main

    assert main(["bench", "paper", "--quick", "--print-config"]) == 0
    toml = capsys.readouterr().out
    assert "iterations = 192" in toml and "[consistency]" not in toml
    (tmp_path / "b.toml").write_text(toml)
    assert main(["bench", "paper", "--config", str(tmp_path / "b.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out.replace(" --quick", "") == toml.replace(" --quick", "")
    (tmp_path / "c.toml").write_text('[update]\nlr = 0.05\n[data]\ndata_dir = "/from/file"\n')
    assert main(["bench", "peers", "--config", str(tmp_path / "c.toml"), "--data-dir", "/typed",
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "lr = 0.05" in out and 'data_dir = "/typed"' in out  # the flag over the file
    (tmp_path / "d.toml").write_text('[allocation]\nmode = "idpa"\n')
    assert main(["bench", "peers", "--config", str(tmp_path / "d.toml"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bench peers does not take 'allocation'" in err[0]
    assert not (tmp_path / "o").exists()  # refused before anything ran
    assert main(["bench", "peers"]) == 2
    assert "bench needs --out DIR" in capsys.readouterr().err


def test_every_suite_names_settings_that_exist_and_none_that_tell_its_runs_apart():
    import importlib

    from hetsync.cli import BENCH_SUITES
    from hetsync.config import FLAT

    for suite in BENCH_SUITES:
        takes = importlib.import_module(f"hetsync.bench.{suite}").RUN_SETTINGS
        assert set(takes) <= set(FLAT), suite
        assert not set(takes) & {"sync", "staleness", "workers", "speeds", "allocation",
                                 "update", "seed", "out", "calibration"}, suite


def test_every_system_gets_the_best_point_of_the_same_sweep(tmp_path):
    from hetsync.bench.harness import SWEEP_QUICK, SWEEP_SEED, _bench
    from hetsync.errors import DivergedError

    settings = {"iterations": 500, "dataset": "synthetic", "batch_size": 16}
    b = _bench("heterogeneous", tmp_path, None, quick=True, settings=settings)
    seen = []

    def run(cfg):
        seen.append((cfg.update.lr, cfg.update.momentum, cfg.training.iterations,
                     cfg.training.seed))
        if cfg.update.lr == 0.1:
            raise DivergedError("the training loss became nan")
        return {"final_val_accuracy": 0.9 + cfg.update.lr, "wall_time_s": 1.0}

    assert b.tune("a system", run, workers=2) == {"lr": 0.03, "momentum": 0.5}
    assert [(lr, m) for lr, m, _, _ in seen] == [(round(step * (1 - m), 10), m)
                                                 for step in SWEEP_QUICK[0]
                                                 for m in SWEEP_QUICK[1]]
    assert [lr for lr, _, _, _ in seen] == [0.01, 0.03, 0.1]
    # the suite's budget, on a seed that no measured run takes
    assert {(it, seed) for _, _, it, seed in seen} == {(500, SWEEP_SEED)}
    assert "| **a system** | **0.03** | **0.5** | **not reached** | **not reached** | **0.93** |" \
        in b.sweep_table()
    assert "| a system | 0.1 | 0.5 | not reached | not reached | 0 |" in b.sweep_table()
    (tmp_path / "p").mkdir()
    pinned = _bench("heterogeneous", tmp_path / "p", None, quick=True,
                    settings={**settings, "lr": 0.02})
    seen.clear()
    assert pinned.tune("b", run)["lr"] == 0.02 and not seen  # --config fixes it: no sweep


def test_the_sweep_chooses_the_fewest_samples_to_target_then_the_gentler_step(tmp_path):
    """A point that gets to the target on fewer samples wins over one that ends higher later,
    and one that never gets there loses to both; where two get there at the same snapshot
    (their samples a few apart, as under IDPA), the gentler step lr / (1 - momentum) wins,
    whatever their times."""
    from hetsync.bench.harness import _bench

    settings = {"iterations": 500, "dataset": "synthetic", "batch_size": 16}
    b = _bench("heterogeneous", tmp_path, None, quick=False, settings=settings)
    # snapshots every 8 iterations of 16 samples: 4000, 4030 and 3990 are one snapshot's
    outcome = {(0.01, 0.5): (0.99, 9000, 9.0), (0.03, 0.5): (0.97, 4030, 4.1),
               (0.2, 0.0): (0.97, 4000, 4.2), (0.006, 0.9): (0.97, 3990, 3.9),
               (0.06, 0.0): (0.97, 3995, 4.4), (0.02, 0.9): (0.999, None, None)}

    def run(cfg):
        acc, samples, ttt = outcome.get((cfg.update.lr, cfg.update.momentum), (0.5, None, None))
        return {"final_val_accuracy": acc, "samples_to_target": samples,
                "time_to_target_s": ttt, "wall_time_s": 10.0}

    # step 0.06 against 0.2; at 0.06, momentum 0 before 0.5 and 0.9
    assert b.tune("s", run) == {"lr": 0.06, "momentum": 0.0}
    assert b.untried == {"s": [0.6]}  # 0.2 reached it at the same snapshot: no better
    table = b.sweep_table()
    assert "| **s** | **0.06** | **0** | **3995** | **4.4** | **0.97** | **10** |" in table
    assert "| s | 0.02 | 0.9 | not reached | not reached | 0.999 | 10 |" in table


def test_the_sweep_tries_every_momentum_at_the_same_steps():
    from hetsync.bench.harness import SWEEP, sweep_key, sweep_points

    points = sweep_points(*SWEEP)
    assert len(points) == 12 and {m for _, m in points} == {0.0, 0.5, 0.9}
    assert sorted({round(lr / (1 - m), 9) for lr, m in points}) == [0.02, 0.06, 0.2, 0.6]
    assert (0.002, 0.9) in points and (0.1, 0.5) in points and (0.2, 0.0) in points
    assert (0.06, 0.9) in points and (0.3, 0.5) in points and (0.6, 0.0) in points
    # what --config fixes is kept: an lr is tried at every momentum, a momentum at every step
    assert sweep_points(*SWEEP, lr=0.05) == [(0.05, 0.0), (0.05, 0.5), (0.05, 0.9)]
    assert sweep_points(*SWEEP, momentum=0.9) == [(0.002, 0.9), (0.006, 0.9), (0.02, 0.9),
                                                  (0.06, 0.9)]
    assert sweep_points(*SWEEP, lr=0.05, momentum=0.9) == [(0.05, 0.9)]
    # one step is one step, whatever the float error of lr / (1 - momentum)
    row = {"samples_to_target": 4000}
    assert sweep_key(row, 0.006, 0.9, 1000) == sweep_key(row, 0.06, 0.0, 1000)


def test_the_sweep_stops_at_the_first_step_that_ranks_no_higher_than_a_gentler_one(tmp_path):
    """Steps from the gentlest up, every momentum of one before the next: a step none of
    whose points ranks above the best so far ends the sweep, and the report names the steps
    left untried; a system that still gains at a bolder step goes on to it."""
    from hetsync.bench.harness import SWEEP, _bench, step_of

    settings = {"iterations": 500, "dataset": "synthetic", "batch_size": 16}
    b = _bench("heterogeneous", tmp_path, None, quick=False, settings=settings, sweep_seeds=2)
    seen = {"falls": [], "climbs": [], "last momentum": [], "early": []}

    def run_for(case, accuracy_by_step):
        def run(cfg):
            step = step_of(cfg.update.lr, cfg.update.momentum)
            seen[case].append(step)
            accuracy = accuracy_by_step.get((step, cfg.update.momentum),
                                            accuracy_by_step.get(step))
            return {"final_val_accuracy": accuracy, "wall_time_s": 1.0}
        return run

    # best at 0.06; 0.2 ends lower at every momentum, so 0.6 is never run
    falls = b.tune("falls", run_for("falls", {0.02: 0.9, 0.06: 0.95, 0.2: 0.5, 0.6: 0.99}))
    assert falls == {"lr": 0.06, "momentum": 0.0}
    assert seen["falls"] == [s for s in SWEEP[0][:3] for _ in SWEEP[1] for _ in range(2)]
    # higher at every step: all four tried, the boldest chosen
    climbs = b.tune("climbs", run_for("climbs", {0.02: 0.9, 0.06: 0.92, 0.2: 0.94, 0.6: 0.96}))
    assert climbs == {"lr": 0.6, "momentum": 0.0}
    assert sorted(set(seen["climbs"])) == list(SWEEP[0])
    # one momentum of a step above the best is enough (AGWU's 0.06, 0.9 in the eleventh)
    last = b.tune("last momentum", run_for("last momentum", {
        0.02: 0.9, 0.06: 0.95, 0.2: 0.5, (0.2, 0.9): 0.96, 0.6: 0.5, (0.6, 0.9): 0.97}))
    assert last == {"lr": 0.06, "momentum": 0.9} and set(seen["last momentum"]) == set(SWEEP[0])
    # a gentlest step that no bolder one beats leaves both bolder steps untried
    early = b.tune("early", run_for("early", {0.02: 0.95, 0.06: 0.9, 0.2: 0.99, 0.6: 0.99}))
    assert early == {"lr": 0.02, "momentum": 0.0} and set(seen["early"]) == {0.02, 0.06}
    assert b.untried == {"falls": [0.6], "early": [0.2, 0.6]}
    assert "Not tried, since no point of the step before them ranked above the gentler " \
        "steps' best: falls steps 0.6; early steps 0.2, 0.6." in b.sweep_table()


def test_with_several_sweep_seeds_a_point_is_ranked_by_its_worst_run(tmp_path):
    """lr 0.02, momentum 0.9 reaches the target first on seed 1000 and not at all on 1001;
    lr 0.03, momentum 0.5 reaches it on both, later: the second is chosen."""
    from hetsync.bench.harness import SWEEP, SWEEP_SEED, _bench

    settings = {"iterations": 500, "dataset": "synthetic", "batch_size": 16}
    b = _bench("heterogeneous", tmp_path, None, quick=False, settings=settings, sweep_seeds=2)
    outcome = {(0.02, 0.9, SWEEP_SEED): 2000, (0.03, 0.5, SWEEP_SEED): 6000,
               (0.03, 0.5, SWEEP_SEED + 1): 7000}
    seen = []

    def run(cfg):
        key = (cfg.update.lr, cfg.update.momentum, cfg.training.seed)
        seen.append(key)
        samples = outcome.get(key)
        return {"final_val_accuracy": 0.97 if samples else 0.9, "samples_to_target": samples,
                "time_to_target_s": samples and samples / 1000, "wall_time_s": 10.0}

    assert b.tune("s", run) == {"lr": 0.03, "momentum": 0.5}
    # every point of steps 0.02, 0.06 and 0.2 on both seeds; 0.2 ranked below 0.06: 0.6 untried
    assert sorted(seen) == sorted((round(step * (1 - m), 10), m, seed) for step in SWEEP[0][:3]
                                  for m in SWEEP[1] for seed in (SWEEP_SEED, SWEEP_SEED + 1))
    table = b.sweep_table()
    assert "2 run(s) of the budget per point (seeds from 1000), a point ranked by its worst" \
        in table
    assert table.count("| **s** | **0.03** | **0.5** |") == 2  # both runs of the chosen point


def test_the_heterogeneous_summary_is_the_mean_over_seeds(tmp_path):
    """Several seeds per system: summary.json holds the means, a time to target only where
    every seed reached the target, and how many did; the report lists each seed's ratio to
    the ceiling measured in its round (each seed's runs follow a ceiling of their own)."""
    from hetsync.bench import heterogeneous as het
    from hetsync.bench.harness import _bench

    b = _bench("heterogeneous", tmp_path, None, quick=True,
               settings={"iterations": 200, "dataset": "synthetic", "batch_size": 16})
    b.budget = replace(b.budget, seeds=2)
    for seed, rate in enumerate((1000.0, 800.0)):
        b.record(het.CEILING, "emulated nodes alone", seed,
                 {"throughput_samples_per_s": rate, "ideal_throughput_samples_per_s": 1100.0})
    runs = {"ssp_idpa": [(900.0, 0.96, 5.0), (800.0, 0.98, 7.0)],
            "bsp_uniform": [(400.0, 0.97, 20.0), (500.0, 0.95, None)]}
    for name in (*het.CONFIGS, *het.PEERS):
        for seed, (rate, acc, ttt) in enumerate(runs.get(name, [(600.0, 0.9, None)] * 2)):
            b.record(het.MAIN, name, seed, {"throughput_samples_per_s": rate,
                                            "final_val_accuracy": acc, "time_to_target_s": ttt,
                                            "samples_to_target": ttt and ttt * rate},
                     wait_fraction=0.02 if name in het.CONFIGS else None,
                     coarse_time_to_target_s=ttt and ttt * 1.5,
                     coarse_samples_to_target=ttt and ttt * rate * 2)
    s = het.summarize(b)
    assert list(s)[:len(het.KEYS)] == list(het.KEYS)
    assert s["ssp_idpa_samples_per_s"] == 850.0 and s["ssp_idpa_final_accuracy"] == 0.97
    assert s["ssp_idpa_time_to_target_s"] == 6.0 and s["ssp_idpa_runs_reaching_target"] == 2
    assert s["bsp_uniform_time_to_target_s"] is None  # one of two seeds did not reach it
    assert s["bsp_uniform_runs_reaching_target"] == 1 and s["seeds"] == 2
    report = het._report(b, s)
    assert s["ceiling_samples_per_s"] == 900.0 and s["ideal_samples_per_s"] == 1100.0
    assert "- ssp_idpa: mean throughput / ceiling 0.95x (per seed: 0.900, 1.000)" in report
    assert "waiting 2.0% of the run; 2 of 2 run(s) reached 0.95" in report
    assert "- plain_async_ps: mean throughput / ceiling 0.68x (per seed: 0.600, 0.750), / " \
           "ideal 0.55x; 0 of 2 run(s)" in report
    assert "bsp_uniform / ssp_idpa = n/a (a run did not reach the target) (per seed: 4.00x, " \
           "n/a)" in report
    assert s["ssp_idpa_samples_to_target"] == 5050.0 and "samples trained" not in report
    assert ("- the same runs read at 15 snapshots a run, as the invocations before the "
            "eleventh: bsp_uniform / ssp_idpa = n/a (a run did not reach the target) (per seed: "
            "4.00x, n/a); samples to 0.95 so read (means of the runs that reached it): "
            "bsp_uniform 16000, ssp_idpa 10100") in report
    late = next(r for r in b.rows if r["case"] == "bsp_uniform" and r["seed"] == 1)
    late.update(time_to_target_s=12.0, samples_to_target=6000.0, coarse_time_to_target_s=18.0,
                coarse_samples_to_target=14000.0)
    s = het.summarize(b)
    report = het._report(b, s)
    assert ("- samples trained to 0.95 (means of the seeds): bsp_uniform 7000, ssp_idpa 5050 "
            "(ssp_idpa / bsp_uniform 0.72x); throughput over the whole runs, ssp_idpa / "
            "bsp_uniform 1.89x") in report
    assert s["ssp_idpa_coarse_time_to_target_s"] == 9.0
    assert ("- the same runs read at 15 snapshots a run, as the invocations before the "
            "eleventh: bsp_uniform / ssp_idpa = 2.67x (per seed: 4.00x, 1.71x); samples to 0.95 "
            "so read (means of the runs that reached it): bsp_uniform 15000, ssp_idpa 10100") \
        in report
    # a run whose loss diverged is a row (accuracy 0, no throughput), not the end of the suite
    from hetsync.bench.harness import attempt
    from hetsync.errors import DivergedError

    def diverges(cfg):
        raise DivergedError("the training loss became nan")

    b.rows = [r for r in b.rows if not (r["case"] == "ddp_proportional" and r["seed"] == 1)]
    b.record(het.MAIN, "ddp_proportional", 1, attempt(diverges, None))
    assert "- ddp_proportional: mean throughput / ceiling 0.60x (per seed: 0.600, diverged)" \
           in het._report(b, het.summarize(b))


def test_a_time_to_target_read_at_a_coarser_grid_takes_the_snapshots_that_grid_would():
    from hetsync.run.evaluation import reached

    def readings(marks, accs):
        return [{"iterations": it, "wall_time_s": it / 10, "samples": 64 * it, "val_accuracy": a}
                for it, a in zip(marks, accs, strict=True)]

    # BSP's rounds of 4 pushes: snapshots every 50 iterations fall at 52, 100, 152, 200, ...
    bsp = readings((52, 100, 152, 200, 252, 300, 352, 400), (0.5, 0.9, 0.97, 0.96, 0.98, 0.99,
                                                              0.99, 0.99))
    assert reached(bsp, 0.97) == {"time_to_target_s": 15.2, "samples_to_target": 64 * 152}
    assert reached(bsp, 0.97, every=100) == {"time_to_target_s": 30.0, "samples_to_target": 64 * 300}
    assert reached(bsp, 0.97, every=200)["samples_to_target"] == 64 * 400
    assert reached(bsp, 0.995, every=200) == {"time_to_target_s": None, "samples_to_target": None}
    # a push that spans several of the coarse grid's marks still yields one snapshot of it
    jumps = readings((4, 8, 12, 16), (0.97, 0.5, 0.97, 0.99))
    assert reached(jumps, 0.97, every=6)["samples_to_target"] == 64 * 12  # 8 and 12 count, 4 not
    assert reached(jumps, 0.98, every=6)["time_to_target_s"] is None  # 16 is no new mark of 6
    assert reached(None, 0.97)["samples_to_target"] is None  # a diverged run has no readings


def test_a_full_sweep_runs_two_seeds_a_point_unless_told_otherwise(tmp_path):
    from hetsync.bench.harness import _bench

    def seeds(suite, quick, given=None):
        return _bench(suite, tmp_path, None, quick=quick, settings={}, sweep_seeds=given)

    assert seeds("heterogeneous", quick=False).sweep_seeds == 2
    assert seeds("peers", quick=False).sweep_seeds == 2
    assert seeds("peers", quick=True).sweep_seeds == 1
    assert seeds("peers", quick=False, given=1).sweep_seeds == 1
    assert seeds("paper", quick=False).sweep_seeds == 1  # no sweep
    # the report's command says how many, so that it repeats the run whatever the default
    header = seeds("peers", quick=False).header("t")
    assert "Measured by `hetsync bench peers --sweep-seeds 2` on" in header
