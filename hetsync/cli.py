"""Command line: `hetsync train|plot|compare|bench|cli-docs`. The flags of `train` are
generated from the config's fields (`hetsync.config`): one source for names, defaults and
help."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import MISSING

from hetsync.config import SECTIONS, TrainConfig, flat_name, section_fields
from hetsync.errors import ClusterError, ConfigError, HetsyncError

BENCH_SUITES = ("paper", "peers", "overhead", "heterogeneous", "capacity")
BENCH_DATA_DIR = "../shared/datasets/mnist"


def _add_setting(group, f, given_only: bool = False) -> None:
    """One flag for one config field; with `given_only` it has no default, so that parsing
    yields only the flags the user typed."""
    meta = f.metadata
    flat = flat_name(f)
    flag = meta.get("flag") or "--" + flat.replace("_", "-")
    default = f.default if f.default is not MISSING else None
    values = meta.get("values")
    help_text = meta["help"] + (" (default: %(default)s)" if default not in (None, "") else "")
    if isinstance(default, bool):
        group.add_argument(flag, dest=flat, action="store_false" if default else "store_true",
                           help=meta["help"], **({"default": argparse.SUPPRESS}
                                                 if given_only else {}))
        return
    kind = type(default) if isinstance(default, (int, float)) else str
    metavar = ("{" + ",".join(values) + "}" if values else meta.get("metavar")
               or {int: "N", float: "X"}.get(kind, "TEXT"))
    group.add_argument(flag, dest=flat, type=kind, metavar=metavar, help=help_text,
                       default=argparse.SUPPRESS if given_only else default)


def _train_parser(sub, given_only: bool = False) -> None:
    p = sub.add_parser("train", help="train a model (starts a local Ray instance by default)",
                       description="Train a model. Every flag is a field of hetsync.config. "
                                   "`--resume DIR` alone continues the run saved in DIR with "
                                   "its own settings.")
    groups = {name: p.add_argument_group(f"{name} ({cls.__doc__.strip().rstrip('.')})")
              for name, cls in SECTIONS.items()}
    for section, _, f in section_fields():
        if f.metadata.get("cli", True):
            _add_setting(groups[section], f, given_only)
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS if given_only else None,
                   help="read settings from this TOML file (sections as in --print-config); "
                        "flags typed here go on top")
    p.add_argument("--print-config", action="store_true",
                   default=argparse.SUPPRESS if given_only else False,
                   help="print the effective settings as TOML and stop (feed them back with "
                        "--config)")


def _plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="charts of finished runs: accuracy over time, worker "
                                    "timelines, staleness histograms")
    p.add_argument("runs", nargs="+", help="run folders written by `hetsync train --out`")
    p.add_argument("--out", default="plots", help="folder for the PNG files")


def _compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="finished runs side by side: what differs, throughput, "
                                       "time to target, accuracy, waiting")
    p.add_argument("runs", nargs="+", help="run folders written by `hetsync train`")
    p.add_argument("--out", default=None, help="also write compare.md and compare.png here")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="measured comparisons: results.csv, PNG charts, report.md",
                       description="Run a benchmark suite. `--config FILE` sets what every run "
                                   "of the suite shares (paper, peers, heterogeneous: model, "
                                   "data, batch size, iterations, learning rate and schedule, "
                                   "momentum, target accuracy, reference slowdown, timeout; "
                                   "overhead: the one-worker runs' model, data, batch, "
                                   "iterations, optimizer and threads; capacity: none); each "
                                   "run still sets what tells it apart. A setting the suite "
                                   "does not take is refused.")
    p.add_argument("suite", choices=BENCH_SUITES)
    p.add_argument("--out", help="folder for the results (required, except with --print-config)")
    p.add_argument("--data-dir", default=None,
                   help=f"folder with the MNIST IDX files (mnist-10k); over --config's "
                        f"data_dir (default: {BENCH_DATA_DIR})")
    p.add_argument("--quick", action="store_true",
                   help="smaller budgets: minutes, not an hour (on 2 cores heterogeneous took "
                        "7.5 min, peers 14 min, with their sweeps)")
    p.add_argument("--config", metavar="FILE", help="read the suite's run settings from this "
                   "TOML file (sections as in --print-config)")
    p.add_argument("--sweep-seeds", type=int, default=None, metavar="N",
                   help="peers, heterogeneous: runs of the full budget per point of the lr and "
                        "momentum sweep, on seeds 1000, 1001, ...; a point is ranked by its "
                        "worst run (default: 2, with --quick 1)")
    p.add_argument("--print-config", action="store_true",
                   help="print the run settings the suite's runs start from as TOML and stop "
                        "(feed them back with --config)")


def help_markdown() -> str:
    """docs/cli.md: every subcommand's --help as the program prints it (at 100 columns), so
    that the page cannot drift from the code; `hetsync cli-docs > docs/cli.md` rewrites it."""
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"COLUMNS": "100"}):
        parser = build_parser()
        subs = parser._subparsers._group_actions[0].choices  # argparse keeps them only here
        page = ["# Command line\n", "Generated by `hetsync cli-docs > docs/cli.md` from the "
                "parsers themselves; `tests/unit/test_cli.py` fails when this page differs.\n",
                "## hetsync\n", "```", parser.format_help().rstrip(), "```\n"]
        for name, sub in subs.items():
            if name != "cli-docs":
                page += [f"## hetsync {name}\n", "```", sub.format_help().rstrip(), "```\n"]
    return "\n".join(page)


def build_parser(given_only: bool = False) -> argparse.ArgumentParser:
    """The `hetsync` parser. With `given_only`, train's flags have no defaults, so that parsing
    yields only the flags typed (what goes on top of a stored config)."""
    parser = argparse.ArgumentParser(prog="hetsync", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors "
                                                             "(anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, given_only)
    _plot_parser(sub)
    _compare_parser(sub)
    _bench_parser(sub)
    sub.add_parser("cli-docs", help="print docs/cli.md (every subcommand's --help)")
    return parser


def _settings(args: argparse.Namespace) -> dict:
    """The config settings among parsed arguments (not the command or the file options)."""
    return {k: v for k, v in vars(args).items()
            if k not in ("command", "debug", "config", "print_config")}


def config_from_args(args: argparse.Namespace,
                     argv: Sequence[str] | None = None) -> TrainConfig:
    """The flags as a config. `--resume DIR` starts from the settings the run saved in DIR
    (config.json), with the flags typed here on top: those that define the run must match
    the checkpoint's (`run.checkpoint.load_checkpoint` refuses them otherwise)."""
    settings = _settings(args)
    argv = sys.argv[1:] if argv is None else argv
    if getattr(args, "config", None):
        stored = _read_config(args.config)
        return TrainConfig.from_dict(stored, **_settings(
            build_parser(given_only=True).parse_args(argv)))
    if args.resume:
        from pathlib import Path

        from hetsync.run.checkpoint import stored_config

        stored = stored_config(Path(args.resume))
        if stored is not None:
            given = _settings(build_parser(given_only=True).parse_args(argv))
            # injected faults fired in the saved run; they come back only if typed again
            return TrainConfig.from_dict(stored, **{"out": None, "overwrite": False,
                                                    "kill_worker": "", "kill_server": "",
                                                    **given})
    return TrainConfig.from_flat(**settings)


def _read_config(path: str) -> dict:
    """A --config file's sections, or a one-line error naming the file."""
    import tomllib
    from pathlib import Path

    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"--config {path}: {e}") from None


def _resume_hint(args: argparse.Namespace) -> str:
    """Where an interrupted or failed run can be continued from, if it saved a checkpoint."""
    out = getattr(args, "resume", None) or getattr(args, "out", None)
    if not out:
        return ""
    from pathlib import Path

    from hetsync.run.checkpoint import saved_iterations

    at = saved_iterations(Path(out))
    return ("" if at is None else f"; the checkpoint at iteration {at} is saved: continue with "
            f"`hetsync train --resume {out}`")


def _fresh_run_folder(root: str = "runs") -> str:
    """runs/run-N, N one more than any there: where a run without --out writes."""
    from pathlib import Path

    taken = [int(p.name[4:]) for p in Path(root).glob("run-*") if p.name[4:].isdigit()]
    n = max(taken, default=0) + 1
    while True:  # made here, so that two runs started together do not share one
        try:
            (Path(root) / f"run-{n}").mkdir(parents=True)
            return str(Path(root) / f"run-{n}")
        except FileExistsError:
            n += 1


def _train(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    from hetsync.run.train import train

    if args.print_config:
        print(config_from_args(args, argv).to_toml(), end="")
        return 0
    cfg = config_from_args(args, argv)
    if not cfg.output.out:  # every CLI run leaves its results somewhere
        cfg = TrainConfig.from_dict(cfg.to_dict(), out=_fresh_run_folder())
    result = train(cfg)
    s = result.summary
    keys = ("sync", "staleness", "allocation", "update", "speeds", "workers", "iterations",
            "wall_time_s", "final_val_accuracy", "target_accuracy", "time_to_target_s",
            "max_staleness_observed", "max_version_lag", "throughput_samples_per_s",
            "ideal_throughput_samples_per_s", "wait_fraction")
    print(json.dumps({k: s[k] for k in keys}, indent=2))
    out = Path(s["config"]["output"]["out"])
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    print(f"hetsync: wrote {out}/{{{','.join(written)}}}", file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hetsync.plots import plot_runs

    for path in plot_runs([Path(r) for r in args.runs], Path(args.out)):
        print(path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hetsync.compare import compare

    runs = [Path(r) for r in args.runs]
    table, notes = compare(runs)
    for note in notes:
        print(f"hetsync: warning: {note}", file=sys.stderr)
    print(table, end="")
    if args.out:
        from hetsync.plots import plot_comparison

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(table + "".join(f"\nWarning: {n}.\n" for n in notes))
        print(plot_comparison(runs, out / "compare.png"), file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hetsync.bench.harness import run_suite, suite_settings, suite_toml

    settings = suite_settings(args.suite, _read_config(args.config) if args.config else {})
    data_dir = args.data_dir or settings.get("data_dir") or BENCH_DATA_DIR
    if "data_dir" in settings:  # the flag typed goes on top of the file
        settings["data_dir"] = data_dir
    if args.print_config:
        print(suite_toml(args.suite, data_dir, args.quick, settings), end="")
        return 0
    if not args.out:
        raise ConfigError("bench needs --out DIR, a folder for the results")
    for path in run_suite(args.suite, Path(args.out), data_dir, args.quick, settings,
                          args.sweep_seeds):
        print(path)
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"hetsync: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """The `hetsync` command; returns the exit status: 2 after a hetsync error (one line, or the
    traceback with --debug), 130 on Ctrl-C. Any other exception propagates."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the command line
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    args.debug = debug
    if not debug:  # one line per warning, once, as errors are
        warnings.formatwarning = _one_line_warning
        warnings.simplefilter("once", UserWarning)
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "cli-docs":
            print(help_markdown(), end="")
            return 0
        return {"plot": _plot, "compare": _compare, "bench": _bench}[args.command](args)
    except HetsyncError as e:
        if args.debug:
            raise
        hint = _resume_hint(args) if isinstance(e, ClusterError) else ""
        print(f"hetsync: error: {e}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hetsync: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
