"""The command line's one-line errors for impossible settings and bad data."""

import subprocess
import sys

import pytest

from hetsync.cli import build_parser, config_from_args, main
from hetsync.config import TrainConfig, section_fields
from hetsync.errors import ConfigError


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--staleness", "-1"], "--staleness must be a non-negative integer"),
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--sync", "eventual"], "--sync must be one of bsp, ssp, asp"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--iterations", "0"], "--iterations must be at least 1"),
    (["--workers", "2", "--speeds", "1,2,3"], "--speeds has 3 values for 2 workers"),
    (["--workers", "2", "--speeds", "1,-2"], "--speeds must all be finite and > 0"),
    (["--allocation", "random"], "--allocation must be one of uniform, idpa"),
    (["--update", "adam"], "--update must be one of sgd, agwu"),
    (["--lr-schedule", "linear"], "--lr-schedule must be one of cosine, constant"),
    (["--delay-compensation", "-1"], "--delay-compensation must be a finite number >= 0"),
    (["--sync", "bsp", "--delay-compensation", "4"], "--delay-compensation corrects stale"),
    (["--update", "agwu", "--delay-compensation", "4"], "--delay-compensation corrects stale"),
    (["--interference", "0@oops"], "--interference entry"),
    (["--workers", "2", "--kill-worker", "x@3"], "--kill-worker must be W@ITERATION"),
    (["--workers", "2", "--kill-worker", "5@3"], "--kill-worker names a worker outside 0..1"),
    (["--workers", "1", "--kill-worker", "0@3"], "--kill-worker would kill every worker"),
    (["--workers", "2", "--device", "cuda", "--worker-gpus", "0,1"],
     "--device cuda, but --worker-gpus gives worker 0 no GPU"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    (["--max-restarts", "-2"], "--max-restarts must be >= 0"),
    (["--kill-server", "7"], "--kill-server must be @ITERATION"),
    (["--kill-server", "@7", "--checkpoint-every", "0"],
     "--kill-server needs --out and --checkpoint-every"),
    (["--resume", "/tmp/x", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--resume", "/tmp/x", "--out", "/tmp/y"], "--resume /tmp/x continues that folder"),
    (["--dataset", "synthetic", "--resume", "/nonexistent/run"],
     "there is no checkpoint.pt to resume from"),
    (["--resume", "/nonexistent/run"], "there is no checkpoint.pt to resume from"),
    (["--dataset", "synthetic", "--address", "127.0.0.1:1"],
     "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--dataset", "mnist-10k", "--data-dir", "/nonexistent/mnist"], "does not exist"),
    (["--dataset", "mnist-10k"], "needs --data-dir"),
    (["--dataset", "idx"], "dataset 'idx' needs --data-dir (the folder with the IDX files)"),
    (["--dataset", "idx", "--data-dir", "/nonexistent/idx"], "does not exist"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--dataset", "cifar10"], "needs --data-dir (the folder with the CIFAR-10 binary files)"),
    (["--dataset", "folder"], "needs --data-dir (the folder with one sub-folder of images per "
                              "class)"),
    (["--image-size", "4"], "--image-size must be >= 8 (got 4)"),
    (["--image-mode", "cmyk"], "--image-mode must be one of auto, rgb, grey"),
    (["--dataset", "synthetic", "--synthetic-samples", "64", "--workers", "4",
      "--batch-size", "32"], "larger than a worker's share of the data"),
])
def test_impossible_settings_get_one_line_errors(args, message, capsys):
    assert main(["train", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hetsync: error: ") and message in err[0]


def test_an_output_folder_with_another_run_is_refused(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert main(["train", "--quiet", "--dataset", "synthetic", "--out", str(tmp_path)]) == 2
    assert "holds another run; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "summary.json").read_text() == "{}"  # saved work untouched


def test_resuming_a_corrupt_checkpoint_without_saved_settings_names_the_checkpoint(tmp_path,
                                                                                  capsys):
    """An older run's folder (no config.json): the corrupt checkpoint is the error, not a
    flag the defaults lack (the default dataset's --data-dir), and the file stays."""
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["train", "--quiet", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt is corrupt or not a weights file" in err[0]
    assert "weights_only" not in err[0]  # torch's advice to unpickle it anyway is not passed on
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"garbage"


def test_error_exit_without_traceback_in_a_real_process(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(8))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(8))
    proc = subprocess.run([sys.executable, "-m", "hetsync.cli", "train", "--dataset", "mnist-10k",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "magic number 2049, expected 2051" in proc.stderr


def test_plot_of_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a finished hetsync run: summary.json is missing" in err[0]


def test_bench_refuses_to_overwrite_results_or_write_into_a_file(tmp_path, capsys):
    (tmp_path / "report.md").write_text("earlier")
    assert main(["bench", "overhead", "--out", str(tmp_path)]) == 2
    assert "holds earlier benchmark results" in capsys.readouterr().err
    assert (tmp_path / "report.md").read_text() == "earlier"
    assert main(["bench", "overhead", "--out", str(tmp_path / "report.md" / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create --out" in err[0]


def test_the_train_flags_are_the_config_fields_with_their_defaults_and_help():
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    flags = {a.dest: a for a in train._actions
             if a.dest not in ("help", "config", "print_config")}  # the two file options
    settings = {f.metadata.get("flat") or f.name: f for _, _, f in section_fields()
                if f.metadata["cli"]}
    assert set(flags) == set(settings)
    assert all(flags[k].help and settings[k].metadata["help"] in flags[k].help for k in flags)
    assert config_from_args(parser.parse_args(["train"])) == TrainConfig()
    cfg = config_from_args(parser.parse_args(["train", "--allocation", "idpa", "--quiet",
                                              "--speeds", "1,1,2,4", "--timeout", "9"]))
    assert (cfg.allocation.mode, cfg.output.progress, cfg.emulation.speeds,
            cfg.cluster.timeout_s) == ("idpa", False, (1.0, 1.0, 2.0, 4.0), 9.0)


def test_the_flat_keywords_round_trip_and_unknown_ones_are_refused():
    cfg = TrainConfig.from_flat(workers=2, sync="bsp", update="agwu", timeout_s=5.0)
    assert TrainConfig.from_flat(**cfg.flat()) == cfg
    with pytest.raises(ConfigError, match="unknown setting 'wokers'"):
        TrainConfig.from_flat(wokers=2)


def test_a_validation_set_for_a_registered_dataset_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="val_dataset goes with a dataset passed as an object"):
        TrainConfig.from_flat(dataset="synthetic", val_dataset=[(0, 0)])


def test_sweep_seeds_is_refused_where_there_is_no_sweep_or_no_run(tmp_path, capsys):
    from hetsync.cli import main

    assert main(["bench", "capacity", "--sweep-seeds", "2", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "bench capacity has no sweep; --sweep-seeds is for peers and heterogeneous" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["bench", "peers", "--sweep-seeds", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--sweep-seeds must be at least 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_importing_the_cli_loads_neither_matplotlib_nor_the_bench():
    code = ("import sys, hetsync.cli; hetsync.cli.build_parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'matplotlib' "
            "or m.startswith('hetsync.bench') or m.startswith('hetsync.run')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_an_out_that_is_a_file_or_a_folder_of_other_files_is_refused(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("mine")
    assert main(["train", "--quiet", "--dataset", "synthetic", "--out", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]
    assert main(["train", "--quiet", "--dataset", "synthetic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds files that are not a run's (README.md)" in err[0]
    assert readme.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md"]


def test_a_module_instance_instead_of_a_factory_is_one_clear_error():
    from hetsync.models import LeNet5

    with pytest.raises(ConfigError, match="nn.Module instance .LeNet5.; pass a factory"):
        TrainConfig.from_flat(model=LeNet5())


def test_debug_is_accepted_anywhere_and_shows_the_traceback():
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        main(["train", "--workers", "0", "--debug"])


def test_a_warning_is_one_line_before_the_error():
    import os

    workers = 2 * (os.cpu_count() or 1) + 1
    proc = subprocess.run([sys.executable, "-m", "hetsync.cli", "train", "--quiet", "--dataset",
                           "synthetic", "--workers", str(workers), "--synthetic-samples",
                           str(32 * workers), "--batch-size", "32", "--address", "127.0.0.1:1"],
                          capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 2, err
    assert err[0].startswith("hetsync: warning: ") and "share the cores" in err[0]
    assert err[1].startswith("hetsync: error: cannot reach the Ray cluster")


def test_a_stored_config_round_trips_and_flags_typed_with_resume_go_on_top(tmp_path):
    cfg = TrainConfig.from_flat(dataset="synthetic", workers=2, speeds=(1, 4), sync="bsp",
                                out=str(tmp_path), kill_worker="1@5", max_restarts=1)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    import json

    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    argv = ["train", "--resume", str(tmp_path), "--timeout", "42"]
    resumed = config_from_args(build_parser().parse_args(argv), argv)
    assert resumed.emulation.speeds == (1.0, 4.0) and resumed.consistency.sync == "bsp"
    assert resumed.cluster.timeout_s == 42.0 and resumed.output.out == str(tmp_path)
    assert resumed.faults.kill_worker == ""  # it fired in the saved run: not again


def test_print_config_fed_back_with_config_gives_the_same_settings(tmp_path, capsys):
    argv = ["train", "--dataset", "synthetic", "--workers", "2", "--speeds", "1,4",
            "--allocation", "idpa", "--sync", "bsp", "--print-config"]
    assert main(argv) == 0
    toml = capsys.readouterr().out
    (tmp_path / "run.toml").write_text(toml)
    again = ["train", "--config", str(tmp_path / "run.toml"), "--print-config"]
    assert main(again) == 0 and capsys.readouterr().out == toml
    first = config_from_args(build_parser().parse_args(argv), argv)
    from_file = config_from_args(build_parser().parse_args(again), again)
    assert from_file == first
    over = ["train", "--config", str(tmp_path / "run.toml"), "--workers", "4", "--speeds",
            "1,1,2,4"]
    cfg = config_from_args(build_parser().parse_args(over), over)
    assert cfg.training.workers == 4 and cfg.allocation.mode == "idpa"  # flags on top
    (tmp_path / "bad.toml").write_text("[training]\nwokers = 2\n")
    assert main(["train", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "unknown setting 'wokers' in [training]" in capsys.readouterr().err


def test_the_cli_page_is_the_programs_own_help():
    from pathlib import Path

    from hetsync.cli import help_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert page.read_text() == help_markdown(), "run: hetsync cli-docs > docs/cli.md"


def test_the_example_configs_are_config_files_the_cli_reads(capsys):
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        argv = ["train", "--config", str(path), "--data-dir", "somewhere", "--print-config"]
        assert main(argv) == 0, capsys.readouterr().err
        cfg = config_from_args(build_parser().parse_args(argv), argv)
        assert cfg.data.data_dir == "somewhere"  # flags on top of the file
    assert (cfg.training.model, cfg.data.dataset, cfg.emulation.speeds, cfg.allocation.mode) \
        == ("resnet-small", "cifar10", (1.0, 2.0), "idpa")  # cifar10-heterogeneous.toml


@pytest.mark.parametrize("dataset", ["cifar10", "folder", "idx"])
def test_a_bad_file_of_each_new_format_is_one_line_on_the_command_line(tmp_path, capsys,
                                                                        dataset):
    tmp_path = tmp_path / "data"  # not the working folder, where the run's runs/ goes
    tmp_path.mkdir()
    if dataset == "cifar10":
        for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
            (tmp_path / name).write_bytes(bytes(3073))
        (tmp_path / "data_batch_2.bin").write_bytes(bytes(3000))
        bad = "data_batch_2.bin has the wrong size"
    elif dataset == "folder":
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "1.png").write_bytes(b"not a png")
        bad = "a/1.png is not a readable image"
    else:
        (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(8))
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(8))
        bad = "train-images-idx3-ubyte has magic number 2049, expected 2051"
    assert main(["train", "--quiet", "--dataset", dataset, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hetsync: error: ") and bad in err[0], err
