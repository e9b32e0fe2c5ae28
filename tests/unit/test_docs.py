"""Figures in the docs come from committed files that a named command wrote
(docs/runs/README.md, docs/benchmarks-*/): here they are read back from those files, so a
figure that is edited by hand or left behind by a new measurement fails."""

import csv
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _text(name: str) -> str:
    return (ROOT / name).read_text()


def test_no_figure_is_left_to_fill():
    assert not [p.name for p in DOCS if "FIGURE-TODO" in p.read_text()]


@pytest.mark.parametrize("mode", ["ssp", "bsp", "asp"])
def test_the_main_command_figures_are_those_of_the_committed_runs(mode):
    s = json.loads(_text(f"docs/runs/main-{mode}.summary.json"))
    assert s["sync"] == mode and s["iterations"] == 3000 and s["workers"] == 4
    accuracy = f"{s['final_val_accuracy']:.4g}"
    for doc in ("README.md", "docs/consistency.md"):
        assert accuracy in _text(doc), (doc, mode, accuracy)
    if mode == "ssp":
        assert f"{s['wall_time_s']:.1f} s of training" in _text("README.md")


def test_the_heterogeneous_table_is_that_of_the_committed_report():
    h = json.loads(_text("docs/benchmarks-heterogeneous/summary.json"))
    rows = list(csv.DictReader((ROOT / "docs/benchmarks-heterogeneous/results.csv").open()))
    ideal = h["ideal_samples_per_s"]
    readme, allocation = _text("README.md"), _text("docs/allocation.md")

    def row(key):
        """The docs' row: means over the seeds; the time to target of the runs that reached it,
        with how many did where not all."""
        runs = [r for r in rows if r["part"] == "speeds 1,1,2,4" and r["case"] == key]
        times = [float(r["time_to_target_s"]) for r in runs if r["time_to_target_s"]]
        assert len(runs) == h["seeds"] and len(times) == h[key + "_runs_reaching_target"]
        mean = sum(times) / len(times) if times else None
        reached = ("not reached" if mean is None else f"{mean:.1f}" if len(times) == len(runs)
                   else f"{mean:.1f} ({len(times)} of {len(runs)} runs)")
        return (f"| {h[key + '_samples_per_s']:.0f} | {h[key + '_samples_per_s'] / ideal:.2f} | "
                f"{h[key + '_final_accuracy']:.4g} | {reached} |")

    for key in ("ssp_idpa", "bsp_idpa", "bsp_uniform", "agwu_idpa", "plain_async_ps",
                "ddp_proportional"):
        assert row(key) in readme, (key, row(key))
        assert row(key) in allocation, (key, row(key))
    assert f"| {h['ceiling_samples_per_s']:.0f} | {h['ceiling_samples_per_s'] / ideal:.2f} |" \
           in readme
    loaded = {r["case"]: r for r in rows if "3@9s" in r["part"]}
    r = loaded["ssp_idpa"]
    assert f"{float(r['throughput_samples_per_s']):.0f}" in allocation
    assert f"IDPA rebalanced {r['allocation_changes']} times" in allocation


def test_every_committed_report_names_the_command_that_wrote_it():
    for report in sorted((ROOT / "docs").glob("benchmarks-*/report.md")):
        assert "Measured by `hetsync bench " in report.read_text(), report


def test_the_capacity_figures_are_those_of_the_committed_report():
    c = json.loads(_text("docs/benchmarks-capacity/summary.json"))
    readme, bench = _text("README.md"), _text("docs/benchmarks.md")
    for text in (readme, bench):
        assert f"{c['round_trip_ms_lenet5']:.2f} ms" in text
        assert f"{c['pushes_per_s_one_shard_lenet5']:.0f} pushes" in text
    assert f"{c['server_update_gb_per_s_11m']:.1f} GB/s" in bench


def test_the_like_for_like_comparison_is_compare_of_the_committed_runs():
    from hetsync.compare import compare

    table, warnings = compare([ROOT / "docs/runs/ssp-idpa", ROOT / "docs/runs/ssp-uniform"])
    assert not warnings and table in _text("README.md")


def test_the_idx_against_mnist_10k_figures_are_those_of_the_committed_runs():
    runs = ROOT / "docs/runs/idx-vs-mnist10k"
    data = _text("docs/data.md")
    for dataset in ("mnist-10k", "idx"):
        summaries = [json.loads((runs / f"{dataset}-{n}.summary.json").read_text())
                     for n in (1, 2, 3)]
        assert all(s["config"]["data"]["dataset"] == dataset and s["iterations"] == 600
                   and s["workers"] == 2 and s["config"]["training"]["seed"] == 0
                   for s in summaries)
        accuracies = [s["final_val_accuracy"] for s in summaries]
        mean = sum(accuracies) / 3
        row = f"| {dataset} | {', '.join(f'{a:.4g}' for a in accuracies)} | {mean:.4f} |"
        assert row in data, row
    idx = json.loads((runs / "idx-1.summary.json").read_text())["data"]
    assert f"mean {idx['mean'][0]} and deviation {idx['std'][0]}" in data
