"""summary.json: what a finished run reports, assembled from the server's counters, the
workers' reports and the driver's records."""

from __future__ import annotations

from typing import Any

from hetsync.core.wire import Status
from hetsync.core.worker import WorkerReport
from hetsync.run.evaluation import reached


def build_summary(cfg, status: Status, reports: list[WorkerReport], wall: float,
                  final: tuple[float, float], best: float | None,
                  time_to_target: float | None, cluster, records: list[dict],
                  run: dict[str, Any]) -> dict[str, Any]:
    """`run` carries the driver's own figures: membership, restarts, losses, start time."""
    busy = sum(r.total_s for r in reports)
    final_loss, final_acc = final
    return {
        "sync": cfg.consistency.sync,
        "staleness": cfg.consistency.bound,
        "workers": cfg.training.workers,
        "iterations": status.iterations,
        "updates": status.updates,
        "samples": status.samples,
        "wall_time_s": wall,
        "final_val_accuracy": final_acc,
        "final_val_loss": final_loss,
        "best_val_accuracy": best,
        "target_accuracy": cfg.output.target_accuracy,
        "time_to_target_s": time_to_target,
        # the samples trained by the first snapshot at the target: time to target over
        # throughput, what the consistency model costs in statistical efficiency
        "samples_to_target": reached([r for r in records if r["kind"] == "eval"],
                                     cfg.output.target_accuracy)["samples_to_target"],
        "max_staleness_observed": status.max_staleness_observed,
        "max_version_lag": status.max_version_lag,
        "throughput_samples_per_s": status.samples / wall if wall > 0 else 0.0,
        "wait_fraction": sum(r.wait_s for r in reports) / busy if busy > 0 else 0.0,
        "ideal_throughput_samples_per_s": cluster.mean_ideal_samples_per_s(wall),
        "speeds": list(cluster.speeds) if cluster.speeds else None,
        "reference_s_per_sample": cluster.reference_s_per_sample,
        "allocation": cfg.allocation.mode,
        "update": cfg.update.rule,
        "allocation_changes": sum(r["kind"] == "allocation" for r in records),
        "staleness_histogram": status.staleness_histogram,
        "version_lag_histogram": status.version_lag_histogram,
        "per_worker": [
            {"worker": r.worker, "iterations": r.iterations, "samples": r.samples,
             "compute_s": r.compute_s, "comm_s": r.comm_s, "wait_s": r.wait_s,
             "total_s": r.total_s, "device": r.device}
            for r in reports
        ],
        **run,
        "config": cfg.to_dict(),
    }
