"""The sharded parameter server end to end (`--server-shards K`): the same training as one
server, the staleness bound across shards, a lost shard, and a checkpoint that resumes on
another number of shards."""

import json

import pytest
import torch

import hetsync
from hetsync.run.checkpoint import load_weights

pytestmark = pytest.mark.ray


def _weights(result):
    return torch.nn.utils.parameters_to_vector(result.model.parameters())


def _evals(result):
    return [(r["iterations"], r["val_loss"]) for r in result.metrics if r["kind"] == "eval"]


def test_bsp_on_two_shards_equals_one_server_step_for_step(ray_local, small):
    # One worker: with several, which worker draws which data depends on timing, on one
    # server as on two (tests/unit/core/test_sharding.py covers several workers' rounds).
    runs = {k: hetsync.train(sync="bsp", workers=1, server_shards=k,
                             **{**small, "iterations": 60, "eval_every": 10})
            for k in (1, 2)}
    assert torch.equal(_weights(runs[1]), _weights(runs[2]))
    assert _evals(runs[1]) == _evals(runs[2]) and len(_evals(runs[1])) >= 6


def test_ssp_on_two_shards_keeps_the_bound_and_trains(ray_local, small):
    s = hetsync.train(sync="ssp", staleness=1, workers=3, server_shards=2, **small).summary
    assert s["iterations"] == 300 and s["max_staleness_observed"] <= 1
    assert s["final_val_accuracy"] >= 0.98  # as one server: 1.0 in the fault tests' runs


def test_a_lost_shard_restarts_the_server_from_the_checkpoint(ray_local, tmp_path, small):
    s = hetsync.train(sync="ssp", staleness=2, workers=2, server_shards=2,
                      checkpoint_every=100, kill_server="@150", out=str(tmp_path),
                      **small).summary
    assert s["server_restarts"] == 1 and s["iterations"] == 300
    assert s["final_val_accuracy"] >= 0.98
    events = [json.loads(x)["event"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "membership"]
    assert events == ["server_lost", "server_restarted"]
    # one state for the whole vector: the checkpoint resumes on any number of shards
    assert load_weights(tmp_path / "checkpoint.pt")["server"]["weights"].numel() == 61_706


def test_shards_need_the_gloo_transport():
    with pytest.raises(hetsync.ConfigError, match="--server-shards 2 needs a gloo transport"):
        hetsync.TrainConfig.from_flat(server_shards=2, transport="ray")
