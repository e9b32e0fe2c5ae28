"""Command line: `hetsync train|plot|bench`. The flags of `train` are generated from the
config's fields (`hetsync.config`): one source for names, defaults and help."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import MISSING

from hetsync.config import SECTIONS, TrainConfig, flat_name, section_fields
from hetsync.errors import ClusterError, HetsyncError

BENCH_SUITES = ("paper", "peers", "overhead", "heterogeneous", "capacity")


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
    p = sub.add_parser("bench", help="measured comparisons: results.csv, PNG charts, report.md")
    p.add_argument("suite", choices=BENCH_SUITES)
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--data-dir", default="../shared/datasets/mnist",
                   help="folder with the MNIST IDX files (mnist-10k)")
    p.add_argument("--quick", action="store_true", help="smaller budgets: within 10 minutes")


def build_parser(given_only: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hetsync", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors "
                                                             "(anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, given_only)
    _plot_parser(sub)
    _compare_parser(sub)
    _bench_parser(sub)
    return parser


def config_from_args(args: argparse.Namespace,
                     argv: Sequence[str] | None = None) -> TrainConfig:
    """The flags as a config. `--resume DIR` starts from the settings the run saved in DIR
    (config.json), with the flags typed here on top: those that define the run must match
    the checkpoint's (`run.checkpoint.load_checkpoint` refuses them otherwise)."""
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "debug")}
    if args.resume:
        from pathlib import Path

        from hetsync.run.checkpoint import stored_config

        stored = stored_config(Path(args.resume))
        if stored is not None:
            argv = sys.argv[1:] if argv is None else argv
            given = vars(build_parser(given_only=True).parse_args(argv))
            given = {k: v for k, v in given.items() if k not in ("command", "debug")}
            # injected faults fired in the saved run; they come back only if typed again
            return TrainConfig.from_dict(stored, **{"out": None, "overwrite": False,
                                                    "kill_worker": "", "kill_server": "",
                                                    **given})
    return TrainConfig.from_flat(**settings)


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

    if not args.out and not args.resume:  # every CLI run leaves its results somewhere
        args.out = _fresh_run_folder()
    result = train(config_from_args(args, argv))
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

    from hetsync.bench.harness import run_suite

    for path in run_suite(args.suite, Path(args.out), args.data_dir, args.quick):
        print(path)
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"hetsync: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
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
