"""The device a worker computes on and the GPUs it asks Ray for: plain functions, fed what
Ray and PyTorch would report. (This project's machines have no GPU: the CPU path is what runs
here; the cuda choices are checked as decisions, not as computation.)"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from hetsync.config import TrainConfig
from hetsync.core.devices import choose_device, gpus_per_worker, parse_gpus
from hetsync.core.partitioning import Allocator
from hetsync.core.server import ParameterServer
from hetsync.core.wire import FlatModel, params_to_vector
from hetsync.core.worker import PushPolicy, Worker, run_worker
from hetsync.data import synthetic
from hetsync.errors import ClusterError, ConfigError
from hetsync.models import LeNet5, build_model

from ..fakes import LocalAllocatorClient, LocalServerClient


@pytest.mark.parametrize("requested,gpu_ids,cuda,expected", [
    ("cpu", [], False, "cpu"),
    ("cpu", [0], True, "cpu"),  # asked for the CPU: a GPU it was given stays unused
    ("auto", [], True, "cpu"),  # Ray gave it no GPU
    ("auto", [0], False, "cpu"),  # a GPU, but a PyTorch that cannot use it
    ("auto", [0], True, "cuda"),
    ("auto", ["1"], True, "cuda"),  # Ray may report ids as strings
    ("cuda", [0], True, "cuda"),
])
def test_the_device_follows_the_request_the_gpus_ray_gave_and_cuda(requested, gpu_ids, cuda,
                                                                    expected):
    assert choose_device(requested, gpu_ids, cuda) == torch.device(expected)


def test_cuda_that_cannot_be_had_names_the_missing_part():
    with pytest.raises(ClusterError, match="Ray gave worker 3 no GPU"):
        choose_device("cuda", [], True, worker=3)
    with pytest.raises(ClusterError, match="GPU 0, but its PyTorch cannot use CUDA"):
        choose_device("cuda", [0], False)
    with pytest.raises(ConfigError, match="--device must be one of auto, cpu, cuda"):
        choose_device("tpu", [], False)


def test_each_worker_asks_ray_for_its_gpus():
    assert gpus_per_worker("auto", None, 3) == (0, 0, 0)  # auto without GPUs: the CPU
    assert gpus_per_worker("cuda", None, 2) == (1, 1)
    assert gpus_per_worker("auto", parse_gpus("0,0,1,1"), 4) == (0, 0, 1, 1)  # mixed
    assert gpus_per_worker("cuda", parse_gpus("0.5"), 4) == (0.5,) * 4  # two per GPU
    assert parse_gpus("") is None and parse_gpus((0, 1)) == (0.0, 1.0)
    assert parse_gpus(0.5) == (0.5,)  # from Python, one number for every worker


@pytest.mark.parametrize("settings,message", [
    (dict(device="cpu", worker_gpus="1"), "--device cpu computes on the CPU"),
    (dict(device="cuda", worker_gpus="0,1"), "gives worker 0 no GPU; use --device auto"),
    (dict(worker_gpus="1,1,1"), "--worker-gpus has 3 values for 2 workers"),
    (dict(worker_gpus="2"), "--worker-gpus values must be in [0, 1]"),
    (dict(worker_gpus="one"), "--worker-gpus must be numbers"),
    (dict(device="gpu"), "--device must be one of auto, cpu, cuda"),
])
def test_impossible_device_settings_are_refused_by_the_config(settings, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig.from_flat(workers=2, **settings)


def test_the_device_settings_round_trip_through_a_stored_config():
    cfg = TrainConfig.from_flat(workers=4, device="auto", worker_gpus="0,0,1,1")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and cfg.gpus == (0, 0, 1, 1)


def test_a_worker_on_the_cpu_sends_its_gradient_buffer_itself_and_reports_its_device():
    model = build_model(LeNet5, 0)
    flat = FlatModel(model)
    assert np.shares_memory(flat.grad_vector(), flat.grads.numpy())  # no copy on the CPU
    data = synthetic(256, seed=0)
    ps = ParameterServer(weights=params_to_vector(model), workers=1, bound=None, barrier=False,
                         lr=0.05, momentum=0.5, batch_size=32, iterations=16, eval_every=8,
                         update="agwu", steps_per_push=4)
    alloc = Allocator(256, workers=1, batch_size=32, mode="uniform", seed=0)
    worker = Worker(0, LeNet5, data, seed=0, device="cpu")
    report = run_worker(worker, LocalServerClient(ps), LocalAllocatorClient(alloc), None,
                        PushPolicy(local_steps=4))
    assert report.device == "cpu" and report.iterations == 16
    assert not np.array_equal(ps.weights(), params_to_vector(model))


STEPS = """
import resource, sys, torch
from hetsync.core.devices import compute_process
if sys.argv[1] == "set up":
    compute_process(1)
def step():  # activations written, then all freed, as a step's are: 96 MB, more than
    # twice glibc's largest moving threshold, so that its defaults always trim them
    tensors = [torch.empty(1 << 20).fill_(1.0) for _ in range(24)]
    del tensors
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_compute_process_reuses_freed_memory_instead_of_faulting_it_in_again():
    """A step's activations, freed and allocated again every step, come from memory kept in a
    process that `compute_process` set up. Under glibc's defaults the same steps usually
    fault every page in again (24,544 faults a step measured here), but not in every process:
    whether glibc trims depends on what it was asked for before, so only the set-up side is
    asserted."""
    faults = float(subprocess.run([sys.executable, "-c", STEPS, "set up"], check=True,
                                  capture_output=True, text=True).stdout)
    assert faults <= 1, faults
