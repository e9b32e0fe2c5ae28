"""Devices through Ray: GPUs the cluster lacks are one line at start; on a cluster that
declares GPUs (this machine has none: Ray is told it has one), workers that ask for them are
placed, and a PyTorch that cannot use CUDA computes on the CPU under auto and is a one-line
error under cuda."""

import json
import subprocess
import sys

import pytest

import hetsync

pytestmark = pytest.mark.ray


def test_cuda_on_a_cluster_without_gpus_is_one_line_at_start(ray_local, small):
    with pytest.raises(hetsync.ClusterError, match="the workers ask for 2 GPUs .* but the Ray "
                                                   "cluster has 0; use --device cpu or auto"):
        hetsync.train(workers=2, device="cuda", sync="asp", **small)


DECLARED_GPU = """
import json, hetsync, ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
small = dict(dataset="synthetic", synthetic_samples=256, batch_size=32, iterations=40,
             eval_every=40, sync="asp", workers=2, progress=False)
# two workers share the declared GPU (0.5 each): placed by Ray, computing on the CPU
res = hetsync.train(device="auto", worker_gpus=0.5, **small)
print(json.dumps([w["device"] for w in res.summary["per_worker"]]))
try:
    hetsync.train(device="cuda", worker_gpus=(0.5, 0.5), **small)
except hetsync.HetsyncError as e:
    print(type(e).__name__, e)
"""


def test_workers_given_a_gpu_by_ray_use_it_only_where_pytorch_can(tmp_path):
    proc = subprocess.run([sys.executable, "-c", DECLARED_GPU], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    devices, error = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(devices) == ["cpu", "cpu"]
    assert error.startswith("ClusterError --device cuda: Ray gave worker ")
    assert "GPU 0, but its PyTorch cannot use CUDA" in error
