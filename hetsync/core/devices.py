"""Which device a worker computes on, how many GPUs it asks Ray for, and how a process that
trains is set up (`compute_process`).

Ray's GPU resources decide placement: a worker that asks for GPUs (`--worker-gpus`) is placed
where they are, and Ray makes only those visible to its process. The worker then computes on
`cuda` if it was given one and this PyTorch can use it, else on the CPU; `--device` says
whether that choice is free (`auto`) or required (`cpu`, `cuda`). Mixed clusters, some
workers on GPUs and some on CPUs, are the heterogeneous case hetsync is for. Whatever the
device, what travels stays flat CPU vectors (`core/wire.py`). Plain functions, no Ray: the
worker actor passes in what Ray gave it.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import torch

from hetsync.errors import ClusterError, ConfigError

DEVICES = ("auto", "cpu", "cuda")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def compute_process(threads: int) -> None:
    """Set up a process that trains (a worker, a peer's rank, an emulated node): `threads`
    PyTorch intra-op threads, and glibc's malloc told to keep freed memory for the next step.

    By default glibc maps blocks above a moving threshold afresh and hands the heap's free top
    back to the kernel, so a step's activations can cost hundreds of page faults: in a worker
    of a 4-worker run here, a third of its CPU went to the kernel and its forward and backward
    passes took 155 against 110 microseconds per sample. PyTorch's CPU tuning guide advises an
    allocator that reuses memory (jemalloc, tcmalloc) for the same reason; these two settings
    get that from glibc. Where the C library is not glibc, threads only."""
    torch.set_num_threads(threads)
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest; fixing it stops the moving one
    mallopt(M_TRIM_THRESHOLD, 256 << 20)


def parse_gpus(text: str | float | Sequence[float] | None) -> tuple[float, ...] | None:
    """`--worker-gpus`: "1", "0,0,1,1" or "0.5" (a fraction shares a GPU: Ray places two
    workers of 0.5 on one GPU), or from Python a number or a sequence of them; None if
    empty."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = (text,)
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise ConfigError(f"--worker-gpus must be numbers, e.g. 1 or 0,0,1,1 (got {text!r})"
                          ) from None
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        # A worker computes on one device: more than one GPU would be reserved and left idle.
        raise ConfigError(f"--worker-gpus values must be in [0, 1] (got {text!r})")
    return values


def gpus_per_worker(device: str, gpus: tuple[float, ...] | None, workers: int
                    ) -> tuple[float, ...]:
    """What each worker asks Ray for: the `--worker-gpus` values (one value: for every
    worker); none given, 1 each under `--device cuda` and 0 otherwise. Refuses what could
    only fail or idle: GPUs under `--device cpu`, a worker without one under `cuda`."""
    if gpus is None:
        gpus = (1.0 if device == "cuda" else 0.0,)
    if len(gpus) not in (1, workers):
        raise ConfigError(f"--worker-gpus has {len(gpus)} values for {workers} workers (give "
                          "one for all, or one per worker)")
    per = gpus * workers if len(gpus) == 1 else gpus
    if device == "cpu" and any(per):
        raise ConfigError("--worker-gpus gives workers GPUs, but --device cpu computes on the "
                          "CPU; use --device auto (or cuda) to compute on them")
    if device == "cuda" and not all(per):
        idle = [w for w, g in enumerate(per) if not g]
        raise ConfigError(f"--device cuda, but --worker-gpus gives worker {idle[0]} no GPU; use "
                          "--device auto to mix CPU and GPU workers")
    return per


def choose_device(requested: str, gpu_ids: Sequence, cuda_available: bool,
                  worker: int = 0) -> torch.device:
    """The device a worker computes on, from what it asked for (`requested`), the GPUs Ray
    gave its process (`gpu_ids`, from ray.get_gpu_ids()) and whether PyTorch can use CUDA:
    `auto` takes cuda where both hold and the CPU otherwise; `cuda` without both is an error
    that names the missing part."""
    if requested not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)} (got {requested!r})")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not gpu_ids:
            raise ClusterError(f"--device cuda, but Ray gave worker {worker} no GPU")
        if not cuda_available:
            raise ClusterError(f"--device cuda: Ray gave worker {worker} GPU "
                               f"{','.join(map(str, gpu_ids))}, but its PyTorch cannot use CUDA "
                               f"(torch {torch.__version__}; a CPU-only build?)")
    return torch.device("cuda" if gpu_ids and cuda_available else "cpu")
