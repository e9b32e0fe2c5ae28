"""Starting or joining Ray. The only module that decides how Ray is brought up.

The embedded default is a local instance bound to loopback with Ray's token authentication on;
`address` joins an existing cluster instead (the cluster's token must be available to this
process: docs/security.md).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray._private import ray_constants

from hetsync.errors import ClusterError


def set_cluster_mode(enabled: bool) -> None:
    """With cluster mode off, Ray resolves this node's address to 127.0.0.1 and every server of
    a local instance listens on loopback only. The environment variable carries the choice to
    the processes Ray starts; the constant is what this (already importing) process reads."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1" if enabled else "0"
    ray_constants.ENABLE_RAY_CLUSTER = enabled


def _is_loopback(address: str) -> bool:
    """Whether a cluster address ("auto" or host:port) points at this machine's loopback, as
    a cluster started with `ray start --head --node-ip-address 127.0.0.1` does; the driver
    must then also use 127.0.0.1, or it waits for a node that never registers."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        address = canonicalize_bootstrap_address(address) or ""
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds with one line, where Ray itself would retry for minutes."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: "
                           f"{getattr(e, 'strerror', None) or e}") from e


@contextmanager
def ray_session(address: str | None, cpus: int) -> Iterator[None]:
    """Use the Ray instance already initialised by the caller, or start/join one for the
    duration of the block. `cpus` is the logical CPU count a local instance advertises: workers
    reserve their threads, and we oversubscribe (with a warning from the engine) rather than
    leave actors unscheduled. An instance the caller started is used only where it can host
    the run: otherwise `address` or `cpus` would be silently ignored."""
    if ray.is_initialized():
        if address:
            raise ClusterError(f"Ray is already initialised in this process, so address "
                               f"{address!r} cannot be joined; drop it or call ray.shutdown()")
        have = ray.cluster_resources().get("CPU", 0)
        if have < cpus:
            raise ClusterError(f"the Ray instance already running has {have:g} CPUs; this run "
                               f"needs {cpus} (workers x threads per worker)")
        yield
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            set_cluster_mode(not _is_loopback(address))
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        else:
            set_cluster_mode(False)
            ray.init(num_cpus=max(os.cpu_count() or 1, cpus), include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=True,
                     _system_config={"max_direct_call_object_size": 4 << 20,
                                     "task_rpc_inlined_bytes_limit": 16 << 20})
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ClusterError(f"cannot start or reach {where}: {str(e).splitlines()[0]}") from e
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def multi_node_session(cpus: tuple[int, ...] = (1, 2, 2)) -> Iterator[int]:
    """Several Ray nodes on this machine (a head and workers, each a raylet with its own
    CPUs), joined by the driver as a cluster; yields the node count. For measuring a run
    across nodes where only one machine is at hand."""
    from ray.cluster_utils import Cluster

    set_cluster_mode(False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus[0]})
    try:
        for c in cpus[1:]:
            cluster.add_node(num_cpus=c)
        ray.init(address=cluster.address)
        try:
            yield len(cpus)
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
