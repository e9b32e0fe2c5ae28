"""Charts of finished runs: validation accuracy against wall time (several runs on one chart),
each run's per-worker timeline (compute, communication, waiting), and its histogram of
observed staleness. Reads only the files a run wrote (metrics.jsonl, summary.json,
timeline.json)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from hetsync.errors import DataError  # noqa: E402

COLORS = {"compute": "tab:green", "comm": "tab:blue", "wait": "tab:red"}


def _read_run(run: Path) -> tuple[dict, list[dict]]:
    try:
        summary = json.loads((run / "summary.json").read_text())
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    except FileNotFoundError as e:
        raise DataError(f"{run} is not a finished hetsync run: {Path(e.filename).name} "
                        "is missing") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{run} holds a corrupt summary.json or metrics.jsonl: {e}") from e
    return summary, records


def _label(run: Path, summary: dict) -> str:
    sync = summary.get("sync", "?")
    extra = f" S={summary['staleness']}" if sync == "ssp" else ""
    return f"{run.name}: {sync}{extra}, {summary.get('workers', '?')} workers"


def plot_runs(runs: list[Path], out: Path) -> list[Path]:
    """Write the charts for `runs` into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    loaded = [(run, *_read_run(run)) for run in runs]
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for run, summary, records in loaded:
        points = [(r["wall_time_s"], r["val_accuracy"]) for r in records
                  if r["kind"] in ("eval", "final")]
        points.sort()
        ax.plot([t for t, _ in points], [a for _, a in points], marker=".",
                label=_label(run, summary))
    target = loaded[0][1].get("target_accuracy")
    if target:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set(title="Validation accuracy over training time", xlabel="wall time (s)",
           ylabel="validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    written.append(_save(fig, out / "accuracy.png"))

    for run, summary, _ in loaded:
        timeline = run / "timeline.json"
        if timeline.exists():
            written.append(_timeline(json.loads(timeline.read_text()), run, summary, out))
        hist = {int(k): v for k, v in summary.get("staleness_histogram", {}).items()}
        if hist:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.bar(list(hist), list(hist.values()), color="tab:purple")
            ax.set(title=f"Observed staleness, {_label(run, summary)}",
                   xlabel="staleness of an applied update (iterations ahead of the slowest)",
                   ylabel="applied updates")
            ax.set_yscale("log")
            written.append(_save(fig, out / f"staleness-{run.name}.png"))
    return written


def plot_comparison(runs: list[Path], path: Path) -> Path:
    """Validation accuracy against wall time of several runs, and their throughput."""
    loaded = [(run, *_read_run(run)) for run in runs]
    fig, (acc, thr) = plt.subplots(1, 2, figsize=(12, 4.5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    for run, _, records in loaded:
        points = sorted((r["wall_time_s"], r["val_accuracy"]) for r in records
                        if r["kind"] in ("eval", "final"))
        acc.plot([t for t, _ in points], [a for _, a in points], marker=".", label=run.name)
    finals = [a for _, s, _ in loaded for a in [s.get("final_val_accuracy")] if a is not None]
    if finals:  # zoom on where the runs differ, not on the climb from chance
        acc.set_ylim(max(0.0, min(finals) - 0.1), 1.0)
    acc.set(xlabel="wall time (s)", ylabel="validation accuracy",
            title="accuracy over training time")
    acc.grid(alpha=0.3)
    acc.legend(fontsize=8, loc="lower right")
    thr.barh([run.name for run, _, _ in loaded],
             [s["throughput_samples_per_s"] for _, s, _ in loaded], color="tab:blue")
    thr.set(xlabel="samples/s", title="throughput")
    return _save(fig, path)


def _timeline(timeline: dict, run: Path, summary: dict, out: Path) -> Path:
    """Gantt-style chart: one row per worker, a bar per compute / comm / wait interval."""
    workers = sorted(timeline, key=int)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.6 * len(workers)))
    for row, worker in enumerate(workers):
        for kind in COLORS:
            spans = [(start, end - start) for k, start, end in timeline[worker] if k == kind]
            ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=COLORS[kind])
    ax.set_yticks(range(len(workers)), [f"worker {w}" for w in workers])
    ax.set(title=f"Worker timeline, {_label(run, summary)}", xlabel="wall time (s)")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()],
              labels=["compute", "communication", "waiting (consistency)"],
              loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=8)
    return _save(fig, out / f"timeline-{run.name}.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
