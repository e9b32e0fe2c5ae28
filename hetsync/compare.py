"""`hetsync compare RUN_DIR...`: finished runs side by side. What differs in their settings,
throughput and its fraction of the emulated cluster's ideal, time to target, final accuracy
and waiting; with a warning where the runs are not like for like (other calibrations of the
machine, other budgets or targets). Reads only the files a run wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hetsync.config import FLAT
from hetsync.errors import DataError

FLAT_NAME = {f"{section}.{name}": flat for flat, (section, name) in FLAT.items()}

# What must agree for two runs to be compared like for like, and what to call it.
LIKE_FOR_LIKE = {"reference_s_per_sample": "calibrations of the machine",
                 "iterations": "budgets", "target_accuracy": "targets"}


def read_summary(run: Path) -> dict[str, Any]:
    """A finished run's summary.json; `DataError` if it is missing (the run did not finish) or
    corrupt."""
    try:
        return json.loads((run / "summary.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{run} is not a finished hetsync run: summary.json is missing") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{run} holds a corrupt summary.json: {e}") from e


def _settings(summary: dict) -> dict[str, Any]:
    """The run's settings by `section.field`, without where it wrote or read files."""
    skip = {"output.out", "output.overwrite", "faults.resume", "data.data_dir",
            "output.progress", "emulation.calibration"}
    return {f"{section}.{name}": value for section, fields in summary["config"].items()
            for name, value in fields.items() if f"{section}.{name}" not in skip}


def compare(runs: list[Path]) -> tuple[str, list[str]]:
    """(a Markdown table of the runs, warnings where they are not like for like)."""
    summaries = [read_summary(run) for run in runs]
    settings = [_settings(s) for s in summaries]
    keys = list(dict.fromkeys(k for st in settings for k in st))
    differ = [k for k in keys if len({json.dumps(s.get(k)) for s in settings}) > 1]
    target = summaries[0].get("target_accuracy")
    head = (["run", *(FLAT_NAME.get(k, k) for k in differ), "samples/s", "/ ideal",
             f"time to {target} (s)", "final acc.", "wait fraction"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, s, st in zip(runs, summaries, settings, strict=True):
        ideal = s.get("ideal_throughput_samples_per_s")
        t = s.get("time_to_target_s")
        cells = [run.name, *(str(st.get(k)) for k in differ),
                 f"{s['throughput_samples_per_s']:.0f}",
                 f"{s['throughput_samples_per_s'] / ideal:.2f}" if ideal else "n/a",
                 "not reached" if t is None else f"{t:.1f}", f"{s['final_val_accuracy']:.4g}",
                 f"{s['wait_fraction']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    warnings = [f"the runs' {what} differ ({', '.join(str(s.get(key)) for s in summaries)}): "
                "they are not like for like"
                for key, what in LIKE_FOR_LIKE.items()
                if len({json.dumps(s.get(key)) for s in summaries}) > 1]
    return "\n".join(lines) + "\n", warnings
