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
import numpy as np  # noqa: E402

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
    """What sets runs apart: sync mode and bound, allocation, update rule, workers."""
    sync = summary.get("sync", "?")
    extra = f" S={summary['staleness']}" if sync == "ssp" else ""
    return (f"{run.name}: {sync}{extra}, {summary.get('allocation', '?')}, "
            f"{summary.get('update', '?')}, {summary.get('workers', '?')} workers")


def _accuracy(ax, loaded: list, label=_label) -> None:
    """Validation accuracy against wall time, zoomed on where the runs differ (the climb
    from chance flattens the last points, where runs are told apart)."""
    for run, summary, records in loaded:
        points = sorted((r["wall_time_s"], r["val_accuracy"]) for r in records
                        if r["kind"] in ("eval", "final"))
        ax.plot([t for t, _ in points], [a for _, a in points], marker=".",
                label=label(run, summary))
    finals = [s["final_val_accuracy"] for _, s, _ in loaded if s.get("final_val_accuracy")]
    target = loaded[0][1].get("target_accuracy")
    if target:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    if finals:
        top = max([*finals, target or 0.0, *(a for _, _, rs in loaded for r in rs
                                              if r["kind"] in ("eval", "final")
                                              for a in [r["val_accuracy"]])])
        low = min([*finals, target or 1.0]) - 0.1
        ax.set_ylim(max(0.0, low), min(1.0, top + 0.02))
    ax.set(xlabel="wall time (s)", ylabel="validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_runs(runs: list[Path], out: Path) -> list[Path]:
    """Write the charts for `runs` into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    loaded = [(run, *_read_run(run)) for run in runs]
    fig, ax = plt.subplots(figsize=(9, 5))
    _accuracy(ax, loaded)
    ax.set_title("Validation accuracy over training time (zoomed where the runs differ)")
    full = ax.inset_axes([0.45, 0.3, 0.3, 0.3])  # the whole climb, for scale
    for line in ax.get_lines()[:len(loaded)]:
        full.plot(*line.get_data(), color=line.get_color(), linewidth=1)
    full.set_ylim(0, 1)
    full.set_title("full range", fontsize=7)
    full.tick_params(labelsize=6)
    written = [_save(fig, out / "accuracy.png")]
    for run, summary, _ in loaded:
        timeline = run / "timeline.json"
        if timeline.exists():
            written.append(_timeline(json.loads(timeline.read_text()), run, summary, out))
        if summary.get("staleness_histogram"):
            written.append(_histograms(summary, run, out))
    return written


def _histograms(summary: dict, run: Path, out: Path) -> Path:
    """Staleness and version lag of the applied updates: integer bins, linear counts from 0."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, what in zip(axes, ("staleness_histogram", "version_lag_histogram"),
                             ("staleness (iterations ahead of the slowest worker)",
                              "version lag (updates between pull and apply)"), strict=True):
        hist = {int(k): v for k, v in summary.get(key, {}).items()}
        if not hist:
            continue
        top = max(hist)
        xs = range(0, top + 1)
        ax.bar(list(xs), [hist.get(x, 0) for x in xs], width=0.8, color="tab:purple")
        ax.set_xlim(-0.6, top + 0.6)
        ax.set_ylim(0, None)
        step = max(1, (top + 1) // 15)
        ax.set_xticks(range(0, top + 1, step))
        ax.set(xlabel=what, ylabel="applied updates")
    fig.suptitle(f"Staleness and lag, {_label(run, summary)}")
    return _save(fig, out / f"staleness-{run.name}.png")


def plot_comparison(runs: list[Path], path: Path) -> Path:
    """Validation accuracy against wall time of several runs, and their throughput."""
    loaded = [(run, *_read_run(run)) for run in runs]
    fig, (acc, thr) = plt.subplots(1, 2, figsize=(12, 4.5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    _accuracy(acc, loaded, label=lambda run, _: run.name)
    acc.set_title("accuracy over training time")
    thr.barh([run.name for run, _, _ in loaded],
             [s["throughput_samples_per_s"] for _, s, _ in loaded], color="tab:blue")
    thr.set(xlabel="samples/s", title="throughput")
    return _save(fig, path)


def _timeline(timeline: dict, run: Path, summary: dict, out: Path, bins: int = 60) -> Path:
    """Each worker's time in bins: the share spent computing, communicating and waiting in
    each, stacked (thousands of single intervals would be a barcode)."""
    workers = sorted(timeline, key=int)
    end = max((t1 for w in workers for _, _, t1 in timeline[w]), default=1.0) or 1.0
    edges = np.linspace(0.0, end, bins + 1)
    fig, axes = plt.subplots(len(workers), 1, figsize=(11, 1.2 + 1.1 * len(workers)),
                             sharex=True, squeeze=False)
    for ax, worker in zip(axes[:, 0], workers, strict=True):
        share = {kind: np.zeros(bins) for kind in COLORS}
        for kind, t0, t1 in timeline[worker]:
            if kind in share:  # overlap of [t0, t1] with each bin
                share[kind] += np.clip(np.minimum(edges[1:], t1) - np.maximum(edges[:-1], t0),
                                       0, None)
        width = np.diff(edges)
        ax.stackplot(edges[:-1] + width / 2, *[share[k] / width for k in COLORS],
                     colors=list(COLORS.values()))
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"worker {worker}", rotation=0, ha="right", va="center")
        ax.set_yticks([0, 1])
    axes[-1, 0].set_xlabel("wall time (s)")
    fig.suptitle(f"Share of each worker's time, {_label(run, summary)}")
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()],
               labels=["compute", "communication", "waiting (consistency)"],
               loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(out / f"timeline-{run.name}.png", dpi=110)
    plt.close(fig)
    return out / f"timeline-{run.name}.png"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
