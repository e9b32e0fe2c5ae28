"""`hetsync compare` on an IDPA run and a uniform one (their files as a run writes them)."""

import json

from hetsync.cli import main
from hetsync.config import TrainConfig


def _run(folder, allocation, reference, throughput, ttt):
    folder.mkdir()
    cfg = TrainConfig.from_flat(dataset="synthetic", workers=4, speeds=(1, 1, 2, 4),
                                allocation=allocation, out=str(folder))
    summary = {"config": cfg.to_dict(), "throughput_samples_per_s": throughput,
               "ideal_throughput_samples_per_s": 10000.0, "time_to_target_s": ttt,
               "final_val_accuracy": 0.975, "wait_fraction": 0.1, "iterations": 3000,
               "target_accuracy": 0.97, "reference_s_per_sample": reference}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(
        json.dumps({"kind": "eval", "wall_time_s": 1.0, "val_accuracy": 0.9}) + "\n"
        + json.dumps({"kind": "final", "wall_time_s": 2.0, "val_accuracy": 0.975}) + "\n")
    return folder


def test_compare_shows_what_differs_and_warns_when_calibrations_differ(tmp_path, capsys):
    idpa = _run(tmp_path / "idpa", "idpa", 1e-4, 7000.0, 9.5)
    uniform = _run(tmp_path / "uniform", "uniform", 1e-4, 4000.0, None)
    assert main(["compare", str(idpa), str(uniform), "--out", str(tmp_path / "c")]) == 0
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()
    assert rows[0] == ("| run | allocation | samples/s | / ideal | time to 0.97 (s) | "
                       "final acc. | wait fraction |")
    assert rows[2] == "| idpa | idpa | 7000 | 0.70 | 9.5 | 0.975 | 0.10 |"
    assert rows[3] == "| uniform | uniform | 4000 | 0.40 | not reached | 0.975 | 0.10 |"
    assert "warning" not in err and (tmp_path / "c" / "compare.png").stat().st_size > 10_000
    other = _run(tmp_path / "other", "idpa", 2e-4, 7000.0, 9.5)
    assert main(["compare", str(idpa), str(other)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hetsync: warning: the runs' calibrations of the machine differ (0.0001, "
                   "0.0002): they are not like for like"]
    assert main(["compare", str(tmp_path / "nothing")]) == 2
